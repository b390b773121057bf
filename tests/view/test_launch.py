"""``memento run TARGET``: grids launched from the command line and from YAML/JSON matrix files.

The command runs in real subprocesses (``python -m memento run``) on real scripts written to
``tmp_path``; the matrix loader and the ``-p``/``-s`` parsing are also tested in-process.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from memento import Memento, open_results
from memento.matrix.sampling import choice, loguniform, randint, uniform
from memento.view.launch import (
    build_matrix,
    load_matrix,
    parse_parameter,
    parse_setting,
    resolve_reference,
    split_items,
)

pytestmark = pytest.mark.timeout(180)

TRAIN = """\
    import os
    import sys
    from collections import OrderedDict

    from memento import Memento


    class MLP:
        pass


    def experiment(context, config):
        if config.model == "boom":
            raise RuntimeError("boom")
        model = config.model
        name = model if isinstance(model, str) else model.__qualname__
        return {"model": name, "lr": config.lr, "settings": config.settings}


    def slow(context, config):
        open(os.environ["STARTED"], "w").close()
        import time
        time.sleep(120)


    MATRIX = {
        "parameters": {"model": [MLP, OrderedDict], "lr": [0.1, 0.01]},
        "settings": {"epochs": 3},
    }

    if __name__ == "__main__":
        results = Memento(experiment, progress=False, version=os.environ.get("VERSION")).run(
            MATRIX, cache_path=sys.argv[1]
        )
        print(f"cached {sum(r.was_cached for r in results)} of {len(results)}")
"""

#: The same grid as train.py's MATRIX, as a file.
GRID_YAML = """\
    parameters:
      model: [!py train:MLP, !py collections.OrderedDict]
      lr: [0.1, 1e-2]
    settings:
      epochs: 3
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text(textwrap.dedent(TRAIN))
    (folder / "grid.yaml").write_text(textwrap.dedent(GRID_YAML))
    (folder / "bad_signature.py").write_text("def experiment(config):\n    return 1\n")
    (folder / "broken.py").write_text("import no_such_module_anywhere\n")
    return folder


def memento_run(
    project: Path, env: dict[str, str], *args: str, store: Path | None = None
) -> subprocess.CompletedProcess[str]:
    store_args = ["--store", str(store)] if store is not None else []
    return subprocess.run(
        [sys.executable, "-m", "memento", "run", *args, *store_args, "--no-progress"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def python_run(project: Path, env: dict[str, str], store: Path) -> str:
    done = subprocess.run(
        [sys.executable, "train.py", str(store)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def stored(store: Path) -> list[dict[str, Any]]:
    """Each stored result's parameters, and the settings its experiment saw."""
    return sorted(
        (r["params"] | {"settings": r["inner"]["settings"]} for r in open_results(store)),
        key=repr,
    )


# -- running --------------------------------------------------------------------------------------
def test_a_yaml_grid_runs_and_a_rerun_is_cached(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "grid.sqlite"
    first = memento_run(
        project, subprocess_env, "train.py:experiment", "-m", "grid.yaml", store=store
    )
    assert first.returncode == 0, first.stderr
    assert "4 result(s): 4 done, 0 cached, 0 failed" in first.stdout
    table = first.stdout.splitlines()
    assert table[0].split() == ["model", "lr", "status", "value"]
    assert sorted(line.split()[0] for line in table[2:6]) == [
        "MLP",
        "MLP",
        "OrderedDict",
        "OrderedDict",
    ]
    results = open_results(store)
    assert len(results) == 4
    assert {r["inner"]["model"] for r in results} == {"MLP", "OrderedDict"}
    assert {r["params"]["lr"] for r in results} == {0.1, 0.01}  # 1e-2 read as a float
    assert all(r["inner"]["settings"] == {"epochs": 3} for r in results)

    again = memento_run(
        project, subprocess_env, "train.py:experiment", "-m", "grid.yaml", store=store
    )
    assert again.returncode == 0, again.stderr
    assert "4 result(s): 0 done, 4 cached, 0 failed" in again.stdout


def test_p_and_s_override_the_file(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "grid.sqlite"
    done = memento_run(
        project,
        subprocess_env,
        "train.py:experiment",
        "--matrix",
        "grid.yaml",
        "-p",
        "model=mlp,cnn",
        "-p",
        "seed=range(2)",
        "-s",
        "epochs=20",
        "-s",
        "optimizer=adam",
        store=store,
    )
    assert done.returncode == 0, done.stderr
    rows = stored(store)
    assert len(rows) == 8
    assert {r["model"] for r in rows} == {"mlp", "cnn"}  # replaced the file's classes
    assert {r["lr"] for r in rows} == {0.1, 0.01}  # kept from the file
    assert {r["seed"] for r in rows} == {0, 1}  # added
    assert all(r["settings"] == {"epochs": 20, "optimizer": "adam"} for r in rows)


def test_no_matrix_file_only_p_and_s(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "grid.sqlite"
    args = ["train.py:experiment", "-p", "model=mlp", "-p", "lr=[1e-3, 0.5]", "-s", "epochs=1"]
    done = memento_run(project, subprocess_env, *args, store=store)
    assert done.returncode == 0, done.stderr
    assert sorted(r["params"]["lr"] for r in open_results(store)) == [0.001, 0.5]


def test_dry_run_prints_the_plan_and_creates_no_store(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "grid.sqlite"
    args = ["train.py:experiment", "-m", "grid.yaml", "--dry-run"]
    done = memento_run(project, subprocess_env, *args, store=store)
    assert done.returncode == 0, done.stderr
    assert "4 configs: 0 cached, 0 failed before, 0 stale, 4 new" in done.stdout
    assert "lr=0.01" in done.stdout and "Exiting due to dry run" in done.stdout
    assert not store.exists()

    assert memento_run(project, subprocess_env, *args[:-1], store=store).returncode == 0
    again = memento_run(project, subprocess_env, *args, store=store)
    assert "4 configs: 4 cached" in again.stdout


def test_a_sampled_and_repeated_grid_from_yaml_reruns_cached(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    (project / "sampled.yaml").write_text(
        textwrap.dedent("""\
            parameters: {model: [mlp, cnn]}
            sample: {lr: !loguniform [1e-4, 1e-1]}
            samples: 3
            seed: 0
            repeats: 2
        """)
    )
    store = tmp_path / "grid.sqlite"
    args = ["train.py:experiment", "-m", "sampled.yaml"]
    first = memento_run(project, subprocess_env, *args, store=store)
    assert first.returncode == 0, first.stderr
    assert "12 result(s): 12 done" in first.stdout
    lrs = {r["params"]["lr"] for r in open_results(store)}
    assert len(lrs) == 3 and all(1e-4 <= lr < 1e-1 for lr in lrs)
    again = memento_run(project, subprocess_env, *args, store=store)
    assert "12 result(s): 0 done, 12 cached" in again.stdout


# -- the same keys as a Python run ----------------------------------------------------------------
def test_a_cli_grid_is_cached_for_the_python_run(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "grid.sqlite"
    done = memento_run(
        project, subprocess_env, "train.py:experiment", "-m", "grid.yaml", store=store
    )
    assert done.returncode == 0, done.stderr
    assert python_run(project, subprocess_env, store).strip() == "cached 4 of 4"
    # And imported rather than run as a script, from another directory:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import train; from memento import Memento;"
        "r = Memento(train.experiment, progress=False).run(train.MATRIX, cache_path=sys.argv[2]);"
        "print(sum(x.was_cached for x in r))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code, str(project), str(store)],
        cwd=tmp_path,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "4"


def test_a_python_grid_is_cached_for_the_cli(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "grid.sqlite"
    assert python_run(project, subprocess_env, store).strip() == "cached 0 of 4"
    json_grid = {
        "parameters": {
            "model": [{"$py": "train:MLP"}, {"$py": "collections:OrderedDict"}],
            "lr": [0.1, 0.01],
        },
        "settings": {"epochs": 3},
    }
    (project / "grid.json").write_text(json.dumps(json_grid))
    for matrix in ("grid.yaml", "grid.json"):
        done = memento_run(
            project, subprocess_env, "train.py:experiment", "-m", matrix, store=store
        )
        assert done.returncode == 0, done.stderr
        assert "4 result(s): 0 done, 4 cached, 0 failed" in done.stdout, matrix


def test_version_is_the_experiments_version(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "grid.sqlite"
    args = ["train.py:experiment", "-m", "grid.yaml"]
    done = memento_run(project, subprocess_env, *args, "--version", "v2", store=store)
    assert done.returncode == 0, done.stderr
    env = subprocess_env | {"VERSION": "v2"}
    assert python_run(project, env, store).strip() == "cached 4 of 4"
    unversioned = memento_run(project, subprocess_env, *args, "--dry-run", store=store)
    assert "4 new" in unversioned.stdout
    program = subprocess.run(
        [sys.executable, "-m", "memento", "--version"], capture_output=True, text=True, timeout=60
    )
    assert program.returncode == 0 and program.stdout.startswith("memento, version ")


# -- failures and Ctrl-C --------------------------------------------------------------------------
def test_failed_experiments_give_exit_status_1(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "grid.sqlite"
    args = ["train.py:experiment", "-p", "model=ok,boom", "-p", "lr=0.1"]
    done = memento_run(project, subprocess_env, *args, store=store)
    assert done.returncode == 1
    assert "RuntimeError: boom" in done.stdout
    assert "2 result(s): 1 done, 0 cached, 1 failed" in done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("Error: 1 of 2 experiments failed")


def test_ctrl_c_stops_the_run_with_exit_status_130(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    started = tmp_path / "started"
    ctrl_c_args = ["--store", str(tmp_path / "grid.sqlite"), "--no-progress", "--workers", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "memento", "run", "train.py:slow", "-p", "lr=1", *ctrl_c_args],
        cwd=project,
        env=subprocess_env | {"STARTED": str(started)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the experiment never started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "stopped by Ctrl-C" in err
    assert "Traceback" not in err


# -- bad input: one line, before anything runs ----------------------------------------------------
BAD_INPUT = {
    "unknown executor": (["train.py:experiment", "-p", "lr=1", "--executor", "gpu"], "'gpu'"),
    "bad worker count": (["train.py:experiment", "-p", "lr=1", "--workers", "0"], "--workers"),
    "no function name": (["train.py", "-p", "lr=1"], "TARGET must be"),
    "missing script": (["nope.py:experiment", "-p", "lr=1"], "nope.py"),
    "module does not import": (["no_such_pkg.mod:f", "-p", "lr=1"], "No module named"),
    "script does not import": (["broken.py:f", "-p", "lr=1"], "no_such_module_anywhere"),
    "no such function": (["train.py:nothing", "-p", "lr=1"], "has no 'nothing'"),
    "wrong signature": (
        ["bad_signature.py:experiment", "-p", "lr=1"],
        "experiment(context, config)",
    ),
    "invalid yaml": (["train.py:experiment", "-m", "bad.yaml"], "bad.yaml is not valid YAML"),
    "invalid json": (["train.py:experiment", "-m", "bad.json"], "bad.json is not valid JSON"),
    "missing matrix file": (["train.py:experiment", "-m", "none.yaml"], "No matrix file"),
    "misspelt key": (["train.py:experiment", "-m", "typo.yaml"], "did you mean 'parameters'"),
    "bad reference": (["train.py:experiment", "-m", "badref.yaml"], "'no_such_pkg.Model'"),
    "unknown tag": (["train.py:experiment", "-m", "badtag.yaml"], "!pyy"),
    "-p without =": (["train.py:experiment", "-p", "lr"], "-p 'lr'"),
    "-p without a value": (["train.py:experiment", "-p", "lr="], "no value"),
    "bad range": (["train.py:experiment", "-p", "lr=range(1,x)"], "range(start, stop"),
    "zero step": (["train.py:experiment", "-p", "lr=range(0,4,0)"], "cannot be 0"),
    "-s without =": (["train.py:experiment", "-s", "epochs"], "-s 'epochs'"),
    "bad distribution": (["train.py:experiment", "-m", "baddist.yaml"], "positive bounds"),
    "unknown retry kind": (
        ["train.py:experiment", "-p", "lr=1", "--retries", "1", "--retry-on", "crash,bugs"],
        "unknown failure kind 'bugs'",
    ),
    "bad memory limit": (
        ["train.py:experiment", "-p", "lr=1", "--memory-limit", "lots"],
        "memory_limit='lots' is not a size",
    ),
    "bad thread count": (["train.py:experiment", "-p", "lr=1", "--threads", "many"], "--threads"),
    "bad gpu fraction": (
        ["train.py:experiment", "-p", "lr=1", "--gpus", "0.4"],
        "gpus_per_experiment",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_before_anything_runs(
    case: str, project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    (project / "bad.yaml").write_text("parameters:\n  lr: [0.1\n")
    (project / "bad.json").write_text('{"parameters": {"lr": [0.1,]}}')
    (project / "typo.yaml").write_text("paramters:\n  lr: [0.1]\n")
    (project / "badref.yaml").write_text("parameters:\n  model: [!py no_such_pkg.Model]\n")
    (project / "badtag.yaml").write_text("parameters:\n  model: [!pyy os.path]\n")
    (project / "baddist.yaml").write_text("parameters: {}\nsample: {lr: !loguniform [0, 1]}\n")
    args, expected = BAD_INPUT[case]
    store = tmp_path / "store" / "grid.sqlite"
    done = memento_run(project, subprocess_env, *args, store=store)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert expected in lines[0]
    assert done.stdout == ""
    assert not store.parent.exists() and not (project / "memento.sqlite").exists()


def test_an_unknown_option_is_a_usage_error(project: Path, subprocess_env: dict[str, str]) -> None:
    done = memento_run(project, subprocess_env, "train.py:experiment", "--bogus")
    assert done.returncode == 2
    assert "No such option: --bogus" in done.stderr or "No such option '--bogus'" in done.stderr
    assert not (project / "memento.sqlite").exists()


# -- the matrix file, in-process ------------------------------------------------------------------
def test_references_resolve_to_the_objects(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        textwrap.dedent("""\
            parameters:
              model: [!py collections.OrderedDict, !py "collections:OrderedDict"]
              join: [!py os.path.join, !py "os.path:join"]
              method: [!py collections.OrderedDict.fromkeys]
            settings:
              loss: !py json.dumps
        """)
    )
    matrix = load_matrix(grid)
    assert matrix["parameters"]["model"] == [collections.OrderedDict] * 2
    assert matrix["parameters"]["model"][0] is collections.OrderedDict
    assert matrix["parameters"]["join"] == [os.path.join, os.path.join]
    assert matrix["parameters"]["method"] == [collections.OrderedDict.fromkeys]
    assert matrix["settings"]["loss"] is json.dumps
    assert resolve_reference("memento:Memento") is Memento


def test_json_references_and_distributions(tmp_path: Path) -> None:
    grid = tmp_path / "grid.json"
    grid.write_text(
        json.dumps(
            {
                "parameters": {"model": [{"$py": "collections.OrderedDict"}]},
                "sample": {"lr": {"$loguniform": [1e-4, 0.1]}, "act": {"$choice": ["a", "b"]}},
                "samples": 4,
            }
        )
    )
    matrix = load_matrix(grid)
    assert matrix["parameters"]["model"] == [collections.OrderedDict]
    assert matrix["sample"] == {"lr": loguniform(1e-4, 0.1), "act": choice(["a", "b"])}
    bad = tmp_path / "bad.json"
    bad.write_text('{"parameters": {"m": [{"$py": "os", "x": 1}]}}')
    with pytest.raises(ValueError, match="that one key"):
        load_matrix(bad)
    bad.write_text('{"parameters": {"m": [{"$pie": "os"}]}}')
    with pytest.raises(ValueError, match="Unknown tag '\\$pie'"):
        load_matrix(bad)


def test_sampling_keys_pass_through_and_distributions_are_built(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        textwrap.dedent("""\
            parameters: {model: [mlp, cnn]}
            sample:
              lr: !loguniform [1e-4, 1e-1]
              dropout: !uniform {low: 0.0, high: 0.5}
              layers: !randint [1, 4]
              act: !choice [relu, tanh]
              model_class: !choice [!py collections.OrderedDict, !py collections.Counter]
            samples: 20
            seed: 0
            method: sobol
            repeats: 3
            exclude: [{model: cnn, act: tanh}]
            id: first
        """)
    )
    matrix = load_matrix(grid)
    assert matrix["sample"] == {
        "lr": loguniform(1e-4, 0.1),
        "dropout": uniform(0.0, 0.5),
        "layers": randint(1, 4),
        "act": choice(["relu", "tanh"]),
        "model_class": choice([collections.OrderedDict, collections.Counter]),
    }
    rest = {k: v for k, v in matrix.items() if k != "sample"}
    assert rest == {
        "parameters": {"model": ["mlp", "cnn"]},
        "samples": 20,
        "seed": 0,
        "method": "sobol",
        "repeats": 3,
        "exclude": [{"model": "cnn", "act": "tanh"}],
        "id": "first",
    }


def test_yaml_numbers_include_exponents(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("parameters: {x: [1e-3, 1.5E+2, -2e4, 3, 0.5, 1_000, '1e-3', 2001-01-01]}\n")
    values = load_matrix(grid)["parameters"]["x"]
    assert values[:6] == [0.001, 150.0, -20000.0, 3, 0.5, 1000]
    assert [type(v) for v in values[:6]] == [float, float, float, int, float, int]
    assert values[6] == "1e-3"  # quoted: a string


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping with a 'parameters' key"):
        load_matrix(grid)
    grid.write_text("")
    assert load_matrix(grid) == {}


# -- -p and -s, in-process ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("lr=0.1,0.01,1e-3", ("lr", [0.1, 0.01, 0.001])),
        ("n=1,2", ("n", [1, 2])),
        ("flag=true,false", ("flag", [True, False])),
        ("model=mlp,cnn", ("model", ["mlp", "cnn"])),
        ("x=null", ("x", [None])),
        ("seed=range(3)", ("seed", [0, 1, 2])),
        ("seed=range(1, 7, 2),10", ("seed", [1, 3, 5, 10])),
        ("seed=range(3,0,-1)", ("seed", [3, 2, 1])),
        ("name='a,b',c", ("name", ["a,b", "c"])),
        ('name="x=1"', ("name", ["x=1"])),
        ("lr=[0.1, 0.01]", ("lr", [0.1, 0.01])),
        ("shape=[1,2],[3]", ("shape", [[1, 2], [3]])),
        ("model=!py collections.OrderedDict", ("model", [collections.OrderedDict])),
        (" lr = 0.5 ", ("lr", [0.5])),
    ],
)
def test_parse_parameter(item: str, expected: tuple[str, list[Any]]) -> None:
    assert parse_parameter(item) == expected


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("lr", "write -p NAME=VALUE"),
        ("=1", "write -p NAME=VALUE"),
        ("lr=", "gives lr no value"),
        ("lr=1,,2", "empty value"),
        ("lr=range(a)", "with integers"),
        ("lr=range()", "with integers"),
        ("lr=range(1,2,3,4)", "with integers"),
        ("lr=range(0,3,0)", "cannot be 0"),
        ("lr=[1,2", "unclosed bracket"),
        ("lr='a", "unclosed '"),
    ],
)
def test_bad_parameters(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_parameter(item)
    assert "\n" not in str(info.value)


def test_parse_setting() -> None:
    assert parse_setting("epochs=20") == ("epochs", 20)
    assert parse_setting("name=a,b") == ("name", "a,b")
    assert parse_setting("layers=[64, 64]") == ("layers", [64, 64])
    assert parse_setting("seeds=range(2)") == ("seeds", [0, 1])
    with pytest.raises(ValueError, match="write -s NAME=VALUE"):
        parse_setting("epochs")


def test_split_items_respects_quotes_and_brackets() -> None:
    assert split_items("a, 'b,c', range(1,3), [1, 2], {k: v}") == [
        "a",
        "'b,c'",
        "range(1,3)",
        "[1, 2]",
        "{k: v}",
    ]


def test_build_matrix_overrides() -> None:
    given = {
        "parameters": {"model": ["a"], "lr": [1]},
        "settings": {"epochs": 1, "batch": 8},
        "sample": {"dropout": uniform(0, 1), "wd": uniform(0, 1)},
        "samples": 5,
    }
    out = build_matrix(given, [("lr", [2, 3]), ("dropout", [0.5])], [("epochs", 5)])
    assert out == {
        "parameters": {"model": ["a"], "lr": [2, 3], "dropout": [0.5]},
        "settings": {"epochs": 5, "batch": 8},
        "sample": {"wd": uniform(0, 1)},  # -p dropout takes it out of the sampled names
        "samples": 5,
    }
    assert given["parameters"] == {"model": ["a"], "lr": [1]}  # the file's matrix is kept
    assert build_matrix({}, [], []) == {"parameters": {}}


def test_force_cache_serves_stored_results_and_names_a_missing_one(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "cache.sqlite"
    args = ["train.py:experiment", "-p", "model=mlp", "-p", "lr=0.1,0.01"]
    assert memento_run(project, subprocess_env, *args, store=store).returncode == 0
    served = memento_run(project, subprocess_env, *args, "--force-cache", store=store)
    assert served.returncode == 0, served.stderr
    assert "2 cached" in served.stdout
    more = ["train.py:experiment", "-p", "model=mlp", "-p", "lr=0.1,0.5", "--force-cache"]
    missing = memento_run(project, subprocess_env, *more, store=store)
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: ") and missing.stderr.count("\n") == 1
    assert "lr=0.5" in missing.stderr


def test_lease_timeout_is_checked_and_taken(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    bad = memento_run(project, subprocess_env, "train.py:experiment", "--lease-timeout", "0")
    assert bad.returncode == 1 and "--lease-timeout" in bad.stderr
    store = tmp_path / "lease.sqlite"
    args = ["train.py:experiment", "-p", "model=mlp", "-p", "lr=0.1", "--lease-timeout", "5"]
    done = memento_run(project, subprocess_env, *args, store=store)
    assert done.returncode == 0, done.stderr
