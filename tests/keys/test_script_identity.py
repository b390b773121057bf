"""An experiment defined in a script is identified by the script, as the module its file would
be imported as: two scripts never share results; one script keeps its results however it is
run or imported. Functions with no file (``python -c``, a notebook) are identified by their
code. Tried as a user would: real scripts run in new interpreters, sharing one store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from processes import run_notebook

# Each execution of the experiment appends the script's tag to the marker file, so a test can
# count what ran; `square` rides in the parameters, so values defined in the script are keyed
# by the script too.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    from memento import Memento
    from memento.keys.encoding import experiment_name

    def square(x):
        return x * x

    def experiment(context, config):
        with open(config.settings["marker"], "a") as marker:
            marker.write("{tag}\\n")
        return "{tag}", config.f(config.a)

    def run(store, marker, executor="inline"):
        matrix = {{"parameters": {{"a": [1, 2], "f": [square]}}, "settings": {{"marker": marker}}}}
        results = Memento(experiment, executor=executor, progress=False).run(
            matrix, cache_path=store)
        print(json.dumps({{"name": experiment_name(experiment),
                          "values": [r.inner for r in results],
                          "cached": [r.was_cached for r in results]}}))

    if __name__ == "__main__":
        run(*sys.argv[1:])
    """
)

#: Imports the experiment's script as a module (``a`` or ``pkg.a``) and runs it from there.
IMPORTING_DRIVER = textwrap.dedent(
    """
    import importlib, sys
    sys.path.insert(0, sys.argv[1])
    importlib.import_module(sys.argv[2]).run(*sys.argv[3:])
    """
)


def _python(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[dict[str, object], str]:
    """Run ``python *args`` in ``cwd``; it must succeed. Its printed summary and its stderr."""
    out = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=150
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def _ran(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


@pytest.mark.timeout(300)
def test_two_scripts_defining_experiment_never_share_results(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    store, marker = str(tmp_path / "shared.sqlite"), tmp_path / "ran.txt"
    for tag in ("a", "b"):
        (tmp_path / f"{tag}.py").write_text(SCRIPT.format(tag=tag))

    first, _ = _python(["a.py", store, str(marker)], tmp_path, subprocess_env)
    assert first == {"name": "a:experiment", "values": [["a", 1], ["a", 4]],
                     "cached": [False, False]}  # fmt: skip
    other, err = _python(["b.py", store, str(marker)], tmp_path, subprocess_env)
    assert other == {"name": "b:experiment", "values": [["b", 1], ["b", 4]],
                     "cached": [False, False]}  # fmt: skip
    assert "older version" not in err, err
    again, err = _python(["a.py", store, str(marker)], tmp_path, subprocess_env)
    assert again["values"] == [["a", 1], ["a", 4]] and again["cached"] == [True, True]
    assert "older version" not in err, err
    assert _ran(marker) == ["a", "a", "b", "b"]

    status = subprocess.run(
        [sys.executable, "-m", "memento", "status", store],
        env=subprocess_env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.splitlines()  # fmt: skip
    names = [line.split()[0] for line in status if line.endswith(" 2")]  # the count columns
    assert names == ["a:experiment", "b:experiment"]


@pytest.mark.timeout(300)
def test_a_script_keeps_its_results_however_it_is_run_or_imported(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    project = tmp_path / "project"
    exps = project / "exps"
    exps.mkdir(parents=True)
    (exps / "a.py").write_text(SCRIPT.format(tag="a"))
    (tmp_path / "driver.py").write_text(IMPORTING_DRIVER)
    (tmp_path / "link").symlink_to(exps, target_is_directory=True)
    store, marker = str(tmp_path / "shared.sqlite"), tmp_path / "ran.txt"
    env = {**subprocess_env, "PYTHONDONTWRITEBYTECODE": "1"}

    first, _ = _python(["exps/a.py", store, str(marker)], project, env)
    assert first["name"] == "a:experiment" and first["cached"] == [False, False]
    ways = [
        (["a.py"], exps),  # from its own folder
        ([str(exps / "a.py")], tmp_path / "cwd"),  # by its absolute path, elsewhere
        (["../link/a.py"], project),  # through a symlinked folder, by a relative path
        ([str(tmp_path / "driver.py"), str(exps), "a"], tmp_path),  # imported as `a`
    ]
    for args, cwd in ways:
        summary, _ = _python([*args, store, str(marker)], cwd, env)
        assert summary == {**first, "cached": [True, True]}, (args, summary)
    assert _ran(marker) == ["a", "a"]

    # Inside a package, the script is named as the package's module, however it is run.
    (exps / "__init__.py").write_text("")
    packaged, _ = _python(["exps/a.py", store, str(marker)], project, env)
    assert packaged["name"] == "exps.a:experiment" and packaged["cached"] == [False, False]
    for args, cwd in [
        (["-m", "exps.a"], project),
        (["a.py"], exps),
        ([str(tmp_path / "driver.py"), str(project), "exps.a"], tmp_path),
    ]:
        summary, _ = _python([*args, store, str(marker)], cwd, env)
        assert summary == {**packaged, "cached": [True, True]}, (args, summary)
    assert _ran(marker) == ["a"] * 4


SHARED_EXPERIMENT = """
def experiment(context, config):
    return config.option.describe(), config.f()
"""

#: Runs the module's experiment with values the script defines.
WITH_SCRIPT_VALUES = textwrap.dedent(
    """
    import json, sys
    from dataclasses import dataclass
    from memento import Memento
    from shared import experiment

    @dataclass
    class Option:
        size: int

        def describe(self):
            return "{tag}", self.size

    def f():
        return "{tag}"

    results = Memento(experiment, executor="inline", progress=False).run(
        {{"parameters": {{"option": [Option(1)], "f": [f]}}}}, cache_path=sys.argv[1])
    print(json.dumps({{"values": [r.inner for r in results]}}))
    """
)


@pytest.mark.timeout(300)
def test_values_two_scripts_define_are_told_apart(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """A dataclass and a function each script defines, passed to one module's experiment."""
    (tmp_path / "shared.py").write_text(SHARED_EXPERIMENT)
    for tag in ("a", "b"):
        (tmp_path / f"{tag}.py").write_text(WITH_SCRIPT_VALUES.format(tag=tag))
    store = str(tmp_path / "shared.sqlite")
    for tag in ("a", "b", "a"):
        summary, err = _python([f"{tag}.py", store], tmp_path, subprocess_env)
        assert summary == {"values": [[[tag, 1], tag]]}, (tag, summary)
        assert "older version" not in err, err


@pytest.mark.timeout(300)
def test_importing_a_script_does_not_call_its_results_stale(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    (tmp_path / "a.py").write_text(SCRIPT.format(tag="a"))
    (tmp_path / "driver.py").write_text(IMPORTING_DRIVER)
    store, marker = str(tmp_path / "shared.sqlite"), str(tmp_path / "ran.txt")
    for args in (["a.py"], ["driver.py", str(tmp_path), "a"], ["a.py"]):
        _, err = _python([*args, store, marker], tmp_path, subprocess_env)
        assert "older version" not in err, (args, err)


CACHED_HELPER = textwrap.dedent(
    """
    import json, sys
    from memento import Cache, FileSystemCacheProvider, Memento
    from memento.executors import ProcessExecutor

    def slow(x, marker):
        with open(marker, "a") as ran:
            ran.write("slow\\n")
        return x + 100

    def experiment(context, config):
        cached = Cache(slow, FileSystemCacheProvider(filepath=config.settings["cache"]))
        return cached(1, config.settings["marker"]) + config.a

    if __name__ == "__main__":
        store, marker, executor, a, cache = sys.argv[1:]
        if executor == "spawn":
            executor = ProcessExecutor(2, start_method="spawn")
        settings = {"cache": cache, "marker": marker}
        results = Memento(experiment, executor=executor, progress=False).run(
            {"parameters": {"a": [int(a)]}, "settings": settings}, cache_path=store)
        print(json.dumps({"values": [r.inner for r in results]}))
    """
)


@pytest.mark.timeout(300)
def test_keys_computed_in_spawned_workers_name_the_script_too(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """A function of the script, cached from inside the experiment: the key the driver
    computes (inline) and the one a spawned worker computes (the script re-imported as
    ``__mp_main__``, the experiment shipped by value) are the same."""
    (tmp_path / "a.py").write_text(CACHED_HELPER)
    store, marker, cache = tmp_path / "s.sqlite", tmp_path / "ran.txt", tmp_path / "c.sqlite"
    common = ["a.py", str(store), str(marker)]
    first, _ = _python([*common, "inline", "1", str(cache)], tmp_path, subprocess_env)
    assert first == {"values": [102]}
    spawned, _ = _python([*common, "spawn", "2", str(cache)], tmp_path, subprocess_env)
    assert spawned == {"values": [103]}
    assert _ran(marker) == ["slow"]  # computed once, by the driver; the worker found it


NO_FILE = textwrap.dedent(
    """
    import json, sys
    from memento import Memento

    def experiment(context, config):
        return config.a * 2

    results = Memento(experiment, executor="inline", progress=False).run(
        {"parameters": {"a": [1, 2]}}, cache_path=sys.argv[1])
    print(json.dumps({"values": [r.inner for r in results],
                      "cached": [r.was_cached for r in results]}))
    """
)


@pytest.mark.timeout(300)
def test_functions_with_no_file_are_identified_by_their_code(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    store = str(tmp_path / "shared.sqlite")
    cwd = tmp_path / "cwd"
    first, _ = _python(["-c", NO_FILE, store], cwd, subprocess_env)
    assert first == {"values": [2, 4], "cached": [False, False]}
    again, _ = _python(["-c", NO_FILE, store], cwd, subprocess_env)
    assert again == {"values": [2, 4], "cached": [True, True]}
    edited, err = _python(["-c", NO_FILE.replace("config.a * 2", "config.a * 3"), store], cwd,
                          subprocess_env)  # fmt: skip
    assert edited == {"values": [3, 6], "cached": [False, False]}
    assert "older version" not in err, err
    # `exec` of the same code, inside a script: no file either, the same code, the same key.
    (tmp_path / "execs.py").write_text(
        f"import sys\nexec({NO_FILE!r}, {{'__name__': '__main__'}})\n"
    )
    execed, _ = _python(["execs.py", store], tmp_path, subprocess_env)
    assert execed == {"values": [2, 4], "cached": [True, True]}


NOTEBOOK_CELLS = [
    "from memento import Memento\n"
    "def run(experiment):\n"
    "    results = Memento(experiment, executor='inline', progress=False).run(\n"
    "        {'parameters': {'a': [1, 2]}}, cache_path=STORE)\n"
    "    return [(r.inner, r.was_cached) for r in results]",
    "def experiment(context, config):\n    return config.a * 2\nprint(run(experiment))",
    "def experiment(context, config):\n    return config.a * 3\nprint(run(experiment))",
    "def experiment(context, config):\n    return config.a * 2\nprint(run(experiment))",
]


@pytest.mark.timeout(300)
def test_a_notebook_function_is_identified_by_its_code(tmp_path: Path) -> None:
    store = tmp_path / "nb.sqlite"
    outputs = run_notebook([f"STORE = {str(store)!r}", *NOTEBOOK_CELLS], timeout=180)
    assert outputs[2:] == [
        "[(2, False), (4, False)]",
        "[(3, False), (6, False)]",  # redefined with another body: not the same experiment
        "[(2, True), (4, True)]",  # the first body again
    ]
    assert os.path.exists(store)
