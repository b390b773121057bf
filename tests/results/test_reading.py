"""Reading stores without the experiment's code; results as tables; code fingerprints."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stores import GRID, XSS, Linear, load, make_store, trainer, write_module

from memento import Memento, MissingExtra, open_results
from memento.keys.fingerprint import code_fingerprint, is_stale
from memento.results.reading import Text, flat_records, parse_where, value_matches
from memento.results.result import ResultList


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "store" / "grid.sqlite")


# -- open_results ---------------------------------------------------------------------------------
def test_open_results_gives_records_without_the_code(store: Path) -> None:
    records = open_results(store)
    assert len(records) == 12
    done = [r for r in records if r["status"] == "done"]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(done) == 8 and len(failed) == 4
    r = next(r for r in done if r["params"] == {"model": "Linear", "lr": 0.2, "tag": "plain"})
    assert r["experiment"].endswith(":trainer")
    assert r["inner"] == {"score": 2.0, "model_name": "Linear"}
    assert r["note"] is None
    assert r["metrics"] == {"loss": pytest.approx(0.2), "accuracy": pytest.approx(0.7)}
    assert r["series"]["loss"][0] == [0, pytest.approx(0.8)]
    assert r["runtime"] >= 0 and r["cpu_time"] >= 0 and r["peak_memory"] > 0
    assert r["stale"] is False and r["error"] is None and len(r["key"]) == 32
    f = failed[0]
    assert f["inner"] is None
    assert f["error"].startswith("ValueError: diverged with")
    assert "Traceback" in f["traceback"] and "diverged" in f["traceback"]


def test_filters_by_status_experiment_and_parameters(store: Path) -> None:
    assert len(open_results(store, status="failed")) == 4
    assert len(open_results(store, status="done")) == 8
    assert len(open_results(store, status="stale")) == 0
    assert len(open_results(store, experiment="trainer")) == 12
    full = open_results(store)[0]["experiment"]
    assert len(open_results(store, experiment=full)) == 12
    assert len(open_results(store, where={"model": Linear})) == 6  # a class, by its name
    assert len(open_results(store, where={"model": "Linear"})) == 6
    assert len(open_results(store, where={"model": Linear, "lr": 0.1})) == 2
    assert len(open_results(store, where={"tag": XSS}, status="failed")) == 2
    assert len(open_results(store, where={"lr": Text("0.1")})) == 4
    assert len(open_results(store, where={"lr": 0.5})) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "broken"}, "status must be one of"),
        ({"experiment": "nope"}, "No experiment 'nope'"),
        ({"where": {"lrr": 1}}, "No parameter named 'lrr'; the parameters are: lr, model, tag"),
    ],
)
def test_bad_filters_name_the_problem(store: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_results(store, **kwargs)


@pytest.mark.parametrize(
    ("stored", "wanted", "expected"),
    [
        (1, 1, True),
        (1, 1.0, True),  # numbers by value
        (1, True, False),  # but never a bool
        (True, True, True),
        (True, 1, False),
        ("1", 1, False),
        (None, None, True),
        (None, "None", False),
        ("SVC", Linear, False),
        ("Linear", Linear, True),
        (0.1, Text("0.1"), True),
        ("0.1", Text("0.1"), True),
        (True, Text("true"), True),
        (None, Text("null"), True),
        (3, Text("3.0"), True),
        (3, Text("x"), False),
    ],
)
def test_value_matching(stored: Any, wanted: Any, expected: bool) -> None:
    assert value_matches(stored, wanted) is expected


def test_parse_where() -> None:
    assert parse_where(["a=1", " model = SVC", "e=x=y"]) == {"a": "1", "model": " SVC", "e": "x=y"}
    with pytest.raises(ValueError, match="name=value"):
        parse_where(["oops"])


def test_records_to_dataframe(store: Path) -> None:
    frame = open_results(store).to_dataframe()
    assert len(frame) == 12
    assert list(frame.columns[:5]) == ["model", "lr", "tag", "score", "model_name"]
    for column in ("status", "stale", "runtime", "cpu_time", "peak_memory", "error"):
        assert column in frame.columns
    assert {"metric.loss", "metric.accuracy", "key", "experiment"} <= set(frame.columns)
    assert set(frame["model"]) == {"Linear", "Forest"}
    assert frame[frame.status == "failed"]["score"].isna().all()


def test_a_value_that_cannot_be_unpickled_gets_a_note(tmp_path: Path) -> None:
    """Results written by code this process cannot import are still readable."""
    code = tmp_path / "their_code"
    code.mkdir()
    write_module(
        code, "their_model", "class Model:\n    def __init__(self, a):\n        self.a = a\n"
    )
    store = tmp_path / "s.sqlite"
    script = textwrap.dedent(
        f"""
        from memento import Memento
        from their_model import Model
        def experiment(context, config):
            return Model(config.a)
        Memento(experiment, progress=False, executor="inline").run(
            {{"parameters": {{"a": [1, 2]}}}}, cache_path={str(store)!r})
        """
    )
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    records = open_results(store, load_values=True)
    assert [r["inner"] for r in records] == [None, None]
    assert "their_model" in records[0]["note"] and "could not be loaded" in records[0]["note"]
    # Not asked to load: shown by type, nothing imported.
    safe = open_results(store)[0]
    assert repr(safe["inner"]).startswith("<pickled their_model.Model, ")
    assert "not loaded" in safe["note"]


def test_missing_pandas_names_the_extra(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'memento-grid\[pandas\]'"):
        open_results(store).to_dataframe()
    with pytest.raises(MissingExtra, match=r"pip install 'memento-grid\[pandas\]'"):
        ResultList().to_dataframe()


# -- ResultList.to_dataframe ----------------------------------------------------------------------
def test_run_results_to_dataframe(tmp_path: Path) -> None:
    memento = Memento(trainer, progress=False, executor="thread")
    results = memento.run(GRID, cache_path=tmp_path / "s.sqlite", raise_on_failure=False)
    assert isinstance(results, ResultList)
    frame = results.to_dataframe()
    assert list(frame.columns) == [
        "model",
        "lr",
        "tag",
        "score",
        "model_name",
        "status",
        "was_cached",
        "runtime",
        "cpu_time",
        "peak_memory",
        "error",
        "kind",  # each failure's kind, None for a success
        "metric.loss",
        "metric.accuracy",
        "key",
        # the run's provenance (issue 13)
        "git_commit",
        "dirty",
        "python",
        "platform",
        "command",
    ]
    assert len(frame) == 12
    assert frame["python"].str.contains("Python").all()  # each row its run's record
    assert list(frame["model"][:2]) == ["Linear", "Linear"]  # classes by name
    assert not frame["was_cached"].any()
    failed = frame[frame.status == "failed"]
    assert len(failed) == 4 and failed["score"].isna().all()
    assert failed["error"].str.startswith("ValueError: diverged").all()
    assert frame["metric.loss"].tolist()[0] == pytest.approx(0.1)
    assert (frame["runtime"] >= 0).all() and (frame["peak_memory"] > 0).all()
    again = memento.run(GRID, cache_path=tmp_path / "s.sqlite", raise_on_failure=False)
    assert again is not None
    cached = again.to_dataframe()
    assert cached[cached.status == "done"]["was_cached"].all()
    assert cached[cached.status == "failed"]["was_cached"].sum() == 0


def mixed_returns(context: Any, config: Any) -> Any:
    return {"a": 1, "status": "clash"} if config.i == 0 else [config.i]


def dict_returns(context: Any, config: Any) -> Any:
    return {"i": config.i * 10, "status": "clash", "y": None}


def test_inner_columns(tmp_path: Path) -> None:
    mixed = Memento(mixed_returns, progress=False, executor="inline").run(
        {"parameters": {"i": [0, 1]}}, cache_path=tmp_path / "a.sqlite"
    )
    assert mixed is not None
    records = mixed.to_records()
    assert [r["inner"] for r in records] == [{"a": 1, "status": "clash"}, [1]]
    dicts = Memento(dict_returns, progress=False, executor="inline").run(
        {"parameters": {"i": [0, 1]}}, cache_path=tmp_path / "b.sqlite"
    )
    assert dicts is not None
    first = dicts.to_records()[0]
    assert first["inner.i"] == 0 and first["i"] == 0  # a clash with a parameter
    assert first["inner.status"] == "clash" and first["status"] == "done"
    assert first["y"] is None


# -- stale results and code fingerprints ----------------------------------------------------------
HELPERS_V1 = """
import json

def scale(x):
    return x * 2

def unrelated():
    return 1
"""

EXPERIMENT = """
import helpers_mod

def experiment(context, config):
    return helpers_mod.scale(config.a)
"""


@pytest.fixture
def user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    code = tmp_path / "user_code"
    code.mkdir()
    monkeypatch.syspath_prepend(str(code))
    # Rewritten modules must be compiled again, never read from a same-second .pyc.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield code
    for name in ("helpers_mod", "experiment_mod", "chain_mod", "fakelib", "uses_fakelib"):
        sys.modules.pop(name, None)


def test_results_of_older_code_are_stale(user_code: Path, tmp_path: Path) -> None:
    write_module(user_code, "helpers_mod", HELPERS_V1)
    write_module(user_code, "experiment_mod", EXPERIMENT)
    load("helpers_mod")
    mod = load("experiment_mod")
    store = tmp_path / "s.sqlite"
    Memento(mod.experiment, progress=False, executor="inline").run(
        {"parameters": {"a": [1, 2]}}, cache_path=store
    )
    # The helper changes, not the experiment function: its results are stale all the same.
    write_module(user_code, "helpers_mod", HELPERS_V1.replace("x * 2", "x * 3"))
    load("helpers_mod")
    memento = Memento(mod.experiment, progress=False, executor="inline")
    plan = memento.plan({"parameters": {"a": [1, 2, 3]}}, cache_path=store)
    assert plan.states == ["stale", "stale", "new"]
    memento.run({"parameters": {"a": [3]}}, cache_path=store)
    stale = open_results(store, status="stale")
    assert sorted(r["params"]["a"] for r in stale) == [1, 2]
    assert [r["params"]["a"] for r in open_results(store, status="done") if not r["stale"]] == [3]


def fingerprint_of(module: str, attr: str = "experiment") -> str:
    return code_fingerprint(getattr(load(module), attr))


HELPERS_WITH_CLASS = (
    HELPERS_V1
    + """
class Model:
    def fit(self):
        return scale(1)
"""
)

REFERENCES = {
    "module attribute": """
        import helpers_mod
        def experiment(c, k):
            return helpers_mod.scale(1)
        """,
    "from import": """
        from helpers_mod import scale
        def experiment(c, k):
            return scale(1)
        """,
    "alias in a comprehension": """
        import helpers_mod as h
        def experiment(c, k):
            return [h.scale(i) for i in k]
        """,
    "class": """
        from helpers_mod import Model
        def experiment(c, k):
            return Model().fit()
        """,
    "closure": """
        from helpers_mod import scale
        def make():
            f = scale
            def experiment(c, k):
                return f(1)
            return experiment
        experiment = make()
        """,
    "default argument": """
        from helpers_mod import scale
        def experiment(c, k, f=scale):
            return f(1)
        """,
    "decorated helper": """
        import functools
        from helpers_mod import scale
        @functools.lru_cache
        def cached(x):
            return scale(x)
        def experiment(c, k):
            return cached(1)
        """,
}


@pytest.mark.parametrize("kind", sorted(REFERENCES))
def test_fingerprint_covers_helpers_however_they_are_referred_to(
    kind: str, user_code: Path
) -> None:
    write_module(user_code, "helpers_mod", HELPERS_WITH_CLASS)
    load("helpers_mod")
    write_module(user_code, "experiment_mod", REFERENCES[kind])
    before = fingerprint_of("experiment_mod")
    assert before == fingerprint_of("experiment_mod")
    write_module(user_code, "helpers_mod", HELPERS_WITH_CLASS.replace("return 1", "return 2"))
    load("helpers_mod")
    assert fingerprint_of("experiment_mod") == before, "only unrelated code changed"
    write_module(user_code, "helpers_mod", HELPERS_WITH_CLASS.replace("x * 2", "x * 3"))
    load("helpers_mod")
    assert fingerprint_of("experiment_mod") != before, "a helper it uses changed"


def test_fingerprint_ignores_installed_packages_and_line_numbers(user_code: Path) -> None:
    site = user_code / "site-packages"
    site.mkdir()
    sys.path.insert(0, str(site))
    try:
        write_module(site, "fakelib", "def helper():\n    return 1\n")
        write_module(
            user_code,
            "uses_fakelib",
            "import fakelib\ndef experiment(c, k):\n    return fakelib.helper()\n",
        )
        load("fakelib")
        before = fingerprint_of("uses_fakelib")
        write_module(site, "fakelib", "def helper():\n    return 2\n")
        load("fakelib")
        assert fingerprint_of("uses_fakelib") == before
        write_module(
            user_code,
            "uses_fakelib",
            "\n\n\nimport fakelib\ndef experiment(c, k):\n    return fakelib.helper()\n",
        )
        assert fingerprint_of("uses_fakelib") == before  # moved down: same code
    finally:
        sys.path.remove(str(site))


def test_fingerprint_is_bounded_and_survives_cycles(user_code: Path) -> None:
    chain = ["def f0(c, k):\n    return f1()\n"]
    chain += [f"def f{i}():\n    return f{i + 1}()\n" for i in range(1, 9)]
    chain += ["def f9():\n    return f0(None, None)\n"]  # a cycle back to the start
    write_module(user_code, "chain_mod", "\n".join(chain))
    before = fingerprint_of("chain_mod", "f0")
    write_module(user_code, "chain_mod", "\n".join(chain).replace("return f3()", "return f3() + 0"))
    assert fingerprint_of("chain_mod", "f0") != before  # depth 2: covered
    write_module(user_code, "chain_mod", "\n".join(chain).replace("return f9()", "return f9() + 0"))
    assert fingerprint_of("chain_mod", "f0") == before  # depth 8: beyond the bound


def test_fingerprint_is_equal_across_processes(user_code: Path) -> None:
    write_module(user_code, "helpers_mod", HELPERS_V1)
    write_module(user_code, "experiment_mod", EXPERIMENT)
    here = fingerprint_of("experiment_mod")
    script = (
        "from memento.keys.fingerprint import code_fingerprint\nimport experiment_mod\n"
        "print(code_fingerprint(experiment_mod.experiment))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(user_code), "PYTHONHASHSEED": seed},
            timeout=120,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {here}
    assert here.startswith("v")


def test_flat_records_columns_are_the_same_for_every_record(store: Path) -> None:
    flat = flat_records(open_results(store))
    assert len({tuple(r) for r in flat}) == 1


@pytest.mark.parametrize(
    ("fingerprint", "latest", "stale"),
    [
        ("v1:aaa", "v1:bbb", True),
        ("v1:aaa", "v1:aaa", False),
        ("v1:aaa", "v2:bbb", False),  # another scheme: not comparable
        ("", "v1:bbb", False),
        ("v1:aaa", None, False),
    ],
)
def test_is_stale(fingerprint: str, latest: str | None, stale: bool) -> None:
    assert is_stale(fingerprint, latest) is stale
