"""Isolation between experiments, on real worker processes: an experiment's broken exception,
``sys.exit()`` or ``KeyboardInterrupt`` fails only its own cell, and never the run."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from memento import Memento
from memento.executors.local import ProcessExecutor
from memento.worker.wire import FunctionRef, Job, Task

pytestmark = pytest.mark.timeout(120)


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class TwoArgs(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(a)  # only one of two required args: unpickling fails
        self.b = b


class Locked(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()  # cannot be pickled at all


def misbehaving(context: Any, config: Any) -> Any:
    kind = config.kind
    if kind == "badstr":
        raise BadStr()
    if kind == "two":
        raise TwoArgs("a", "b")
    if kind == "lock":
        raise Locked("locked")
    if kind == "exit":
        sys.exit()
    if kind == "exit3":
        raise SystemExit(3)
    if kind == "interrupt":
        raise KeyboardInterrupt
    return kind


def logged(context: Any, config: Any) -> int:
    with open(config.settings["log"], "a") as f:
        f.write(f"{config.a}\n")
    if config.a == 150:
        raise BadStr()
    return int(config.a)


def _run(kinds: list[str], executor: str, store: Path) -> dict[str, Any]:
    memento = Memento(misbehaving, executor=executor, num_workers=2, progress=False)
    grid = {"parameters": {"kind": kinds}}
    results = memento.run(grid, cache_path=store, raise_on_failure=False)
    return {r.config.kind: r for r in results}


@pytest.mark.parametrize("executor", ["process", "thread", "inline"])
def test_broken_exceptions_are_recorded_under_their_own_type(
    executor: str, store_path: Path
) -> None:
    by_kind = _run(["ok", "badstr", "two", "lock", "ok2"], executor, store_path)
    assert by_kind["ok"].inner == "ok" and by_kind["ok2"].inner == "ok2"
    for kind, name, line in [
        ("badstr", "BadStr", "raise BadStr()"),
        ("two", "TwoArgs", 'raise TwoArgs("a", "b")'),
        ("lock", "Locked", 'raise Locked("locked")'),
    ]:
        error = by_kind[kind].error
        if type(error).__name__ == name:
            # It came back whole: possible for TwoArgs when tblib's pickling support is
            # installed in this process (dask.distributed installs it), which rebuilds
            # exceptions without calling __init__.
            assert kind == "two", (kind, error)
        else:
            assert error.exc_type == name, (kind, error)
            assert str(error).startswith(f"{name}: ")  # str() works, and names the type
        assert line in error.traceback and "test_isolation.py" in error.traceback


def test_a_batched_job_keeps_its_other_outcomes() -> None:
    tasks = [Task(f"k{i}", _config(kind), 1) for i, kind in enumerate(["ok", "badstr", "ok2"])]
    job = Job(FunctionRef(misbehaving, "digest-batched"), tasks, checkpoint_dir="/nonexistent")
    with ProcessExecutor(1) as executor:
        outcomes = executor.result(executor.submit(job))
    assert [(o.key, o.ok, o.error_type) for o in outcomes] == [
        ("k0", True, None),
        ("k1", False, "BadStr"),
        ("k2", True, None),
    ]
    assert "no str for you" in (outcomes[1].error_message or "")


def test_no_experiment_of_a_batch_runs_twice(store_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    grid = {"parameters": {"a": list(range(300))}, "settings": {"log": str(log)}}
    memento = Memento(logged, executor="process", num_workers=2, progress=False)
    results = memento.run(grid, cache_path=store_path, raise_on_failure=False)
    assert [r.ok for r in results].count(False) == 1
    calls = log.read_text().split()
    assert len(calls) == 300 and len(set(calls)) == 300  # nothing ran twice


@pytest.mark.parametrize("executor", ["process", "thread", "inline"])
def test_sys_exit_fails_only_its_cell(executor: str, store_path: Path) -> None:
    by_kind = _run(["ok", "exit", "exit3", "ok2"], executor, store_path)
    assert by_kind["ok"].ok and by_kind["ok2"].ok
    for kind, code in [("exit", None), ("exit3", 3)]:
        error = by_kind[kind].error
        assert isinstance(error, SystemExit) and error.code == code
        assert "test_isolation.py" in error.traceback


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_a_keyboard_interrupt_raised_by_a_worker_fails_its_cell(
    executor: str, store_path: Path
) -> None:
    by_kind = _run(["ok", "interrupt", "ok2"], executor, store_path)
    assert by_kind["ok"].ok and by_kind["ok2"].ok
    assert isinstance(by_kind["interrupt"].error, KeyboardInterrupt)


def _config(kind: str) -> Any:
    from memento.matrix.configs import Config

    return Config._make({"kind": kind}, {})


def leaky(context: Any, config: Any) -> dict[str, Any]:
    import os

    seen = {
        "cwd": os.getcwd(),
        "x": os.environ.get("MEMENTO_TEST_LEAK"),
        "home": os.environ.get("HOME"),
        "list": list(config.settings["list"]),
    }
    os.chdir("/")
    os.environ["MEMENTO_TEST_LEAK"] = str(config.a)
    os.environ.pop("HOME", None)
    config.settings["list"].append(config.a)
    return seen


@pytest.mark.parametrize("executor", ["process", "inline", "thread"])
def test_each_experiment_starts_from_the_workers_directory_environment_and_settings(
    executor: str, store_path: Path
) -> None:
    import os

    cwd, home = os.getcwd(), os.environ.get("HOME")
    grid = {"parameters": {"a": list(range(40))}, "settings": {"list": []}}
    memento = Memento(leaky, executor=executor, num_workers=1, progress=False)
    try:
        seen = [r.inner for r in memento.run(grid, cache_path=store_path)]
    finally:
        os.chdir(cwd)
        os.environ.pop("MEMENTO_TEST_LEAK", None)
        if home is not None:
            os.environ["HOME"] = home
    assert all(s["list"] == [] for s in seen)  # one worker ran them all, some in one batch
    if executor == "process":
        assert {s["cwd"] for s in seen} == {cwd}
        assert {s["x"] for s in seen} == {None} and {s["home"] for s in seen} == {home}


def pid(context: Any, config: Any) -> int:
    import os

    return os.getpid()


def test_max_tasks_1_gives_each_experiment_a_fresh_process(store_path: Path) -> None:
    executor = ProcessExecutor(2, max_tasks=1)
    memento = Memento(pid, executor=executor, progress=False)
    pids = [
        r.inner for r in memento.run({"parameters": {"a": list(range(40))}}, cache_path=store_path)
    ]
    assert len(set(pids)) == 40


def spawns_and_hangs(context: Any, config: Any) -> None:
    import subprocess
    import time

    child = subprocess.Popen(["sleep", "60"])
    Path(config.settings["pidfile"]).write_text(str(child.pid))
    time.sleep(60)


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited: only its parent has yet to reap it
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_timeout_kills_the_experiments_children(store_path: Path, tmp_path: Path) -> None:
    import time

    pidfile = tmp_path / "child.pid"
    grid = {"parameters": {"a": [1]}, "settings": {"pidfile": str(pidfile)}}
    memento = Memento(spawns_and_hangs, num_workers=1, timeout=2, progress=False)
    [result] = memento.run(grid, cache_path=store_path, raise_on_failure=False)
    assert result.error is not None and "timeout" in str(result.error)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), f"the experiment's child {child} survived its timeout"


SCRIPT = """\
from memento import Memento


def experiment(context, config):
    raise ValueError("boom")  # line 5


if __name__ == "__main__":
    import sys
    [result] = Memento(experiment, num_workers=1, progress=False).run(
        {"parameters": {"a": [1]}}, cache_path=sys.argv[1], raise_on_failure=False
    )
    print(result.error.traceback)
"""


def test_a_scripts_traceback_names_its_file_and_line(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    import subprocess

    script = tmp_path / "my_script.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "s.sqlite")],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert f'File "{script}", line 5, in experiment' in out
    assert 'raise ValueError("boom")' in out and "<dynamic-code>" not in out


@pytest.mark.timeout(240)
def test_a_notebooks_traceback_names_its_cell(tmp_path: Path) -> None:
    from processes import run_notebook

    cells = [
        "from memento import Memento\n"
        "def experiment(context, config):\n"
        "    raise ValueError('boom')\n",
        f"[r] = Memento(experiment, num_workers=1, progress=False).run("
        f"{{'parameters': {{'a': [1]}}}}, cache_path={str(tmp_path / 'nb.sqlite')!r}, "
        "raise_on_failure=False)\n"
        "import sys\n"
        "print(experiment.__code__.co_filename)\n"
        "print(r.error.traceback)",
    ]
    outputs = run_notebook(cells, timeout=180)
    cell_name, _, traceback = outputs[1].partition("\n")
    assert "<dynamic-code>" not in traceback
    assert f'File "{cell_name}", line 3, in experiment' in traceback


def test_a_cancel_kills_the_experiments_children(tmp_path: Path) -> None:
    import time

    from memento.matrix.configs import Config

    pidfile = tmp_path / "child.pid"
    config = Config._make({"a": 1}, {"pidfile": str(pidfile)})
    job = Job(FunctionRef(spawns_and_hangs, "digest-cancel"), [Task("k", config)], str(tmp_path))
    executor = ProcessExecutor(1)
    executor.submit(job)
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the experiment never started its child"
        time.sleep(0.05)
    child = int(pidfile.read_text())
    executor.shutdown(wait=False, cancel=True)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), f"the experiment's child {child} survived the cancel"
