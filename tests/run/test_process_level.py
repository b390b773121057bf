"""Whole-process behaviour: kill -9 of the driver, Ctrl-C, worker output, notebooks."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from processes import run_notebook

DRIVER = textwrap.dedent(
    """
    import sys
    from memento import Memento
    from experiments import slow_count
    matrix = {"parameters": {"a": list(range(int(sys.argv[2])))},
              "settings": {"sleep": float(sys.argv[3])}}
    results = Memento(slow_count, num_workers=2, progress=False).run(matrix, cache_path=sys.argv[1])
    print("cached", sum(r.was_cached for r in results), "total", len(results))
    """
)


def _count_done(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
            return int(
                conn.execute("SELECT count(*) FROM results WHERE status='done'").fetchone()[0]
            )
    except sqlite3.OperationalError:
        return 0


def _wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _python(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a new interpreter; it must succeed."""
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out


def _alive(pid: int) -> bool:
    """A process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


@pytest.mark.timeout(180)
def test_kill_9_of_the_driver_then_resume(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    store = tmp_path / "grid.sqlite"
    cmd = [sys.executable, "-c", DRIVER, str(store), "40", "0.1"]
    proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: _count_done(store) >= 4)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = _count_done(store)
    assert 4 <= stored < 40
    # Workers die with the driver: no orphan keeps computing.
    _wait_for(lambda: not any(_alive(p) for p in workers), timeout=30)
    out = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cached = int(out.stdout.split()[1])
    assert cached >= stored and out.stdout.split()[3] == "40"


@pytest.mark.timeout(180)
def test_ctrl_c_stops_promptly_keeps_what_finished(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    store = tmp_path / "grid.sqlite"
    cmd = [sys.executable, "-c", DRIVER, str(store), "200", "0.2"]
    proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: _count_done(store) >= 4)
    workers = _children(proc.pid)
    assert workers
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the driver did not stop within 20 s of Ctrl-C") from None
    assert proc.returncode != 0 and b"stopped by Ctrl-C" in err and b"Traceback" not in err
    _wait_for(lambda: not any(_alive(p) for p in workers), timeout=30)
    stored = _count_done(store)
    assert stored >= 4
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT state FROM runs").fetchone()[0] == "interrupted"


@pytest.mark.timeout(120)
def test_worker_output_is_prefixed_whole_lines_on_stderr(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    script = textwrap.dedent(
        f"""
        from memento import Memento
        from experiments import chatty
        Memento(chatty, num_workers=2, progress=False).run(
            {{"parameters": {{"a": [1, 2, 3]}}}}, cache_path={str(tmp_path / "s.sqlite")!r})
        print("done")
        """
    )
    first = _python(script, subprocess_env)
    err = first.stderr.splitlines()
    for a in (1, 2, 3):
        assert f"[a={a}] line one from {a}" in err
        assert f"[a={a}] partial line" in err
        assert f"[a={a}] to stderr {a}" in err
    second = _python(script, subprocess_env)
    # stdout belongs to the user's program: the same bytes whether results were cached or not.
    assert first.stdout == second.stdout == "done\n"


@pytest.mark.timeout(120)
def test_logging_from_workers_is_prefixed(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    script = textwrap.dedent(
        f"""
        import logging
        logging.basicConfig(format="%(levelname)s %(message)s")
        from memento import Memento
        from experiments import logs
        Memento(logs, num_workers=2, progress=False).run(
            {{"parameters": {{"a": [1, 2]}}}}, cache_path={str(tmp_path / "s.sqlite")!r})
        """
    )
    out = _python(script, subprocess_env)
    assert "[a=1] WARNING logged by 1" in out.stderr.splitlines()
    assert "[a=2] WARNING logged by 2" in out.stderr.splitlines()


@pytest.mark.timeout(120)
def test_thread_executor_timeout_reports_and_does_not_wait(store_path: Path) -> None:
    from experiments import sleepy

    from memento import AggregateException, Memento
    from memento.exceptions import ExperimentTimeout

    started = time.monotonic()
    with pytest.raises(AggregateException) as info:
        Memento(sleepy, executor="thread", timeout=0.5, progress=False).run(
            {"parameters": {"seconds": [0.0, 12.0]}}, cache_path=store_path
        )
    assert isinstance(info.value.exceptions[0], ExperimentTimeout)
    assert time.monotonic() - started < 10  # the abandoned thread was not waited for


@pytest.mark.timeout(120)
def test_classes_defined_in_the_users_script(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """memento-ml 1.2 crashed on the first run of a script like this one."""
    script = textwrap.dedent(
        f"""
        from memento import Memento

        class Model:
            def __init__(self, depth):
                self.depth = depth

        class Score:
            def __init__(self, value):
                self.value = value

        def experiment(context, config):
            return Score(config.model.depth * config.k)

        if __name__ == "__main__":
            matrix = {{"parameters": {{"model": [Model(2), Model(3)], "k": [10]}}}}
            for _ in range(2):
                results = Memento(experiment, num_workers=2, progress=False).run(
                    matrix, cache_path={str(tmp_path / "s.sqlite")!r})
                print([r.inner.value for r in results], [r.was_cached for r in results])
        """
    )
    path = tmp_path / "script.py"
    path.write_text(script)
    out = subprocess.run([sys.executable, str(path)], env=subprocess_env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[20, 30] [False, False]", "[20, 30] [True, True]"]


NOTEBOOK_CELLS = [
    "import os, sys\nfrom memento import Memento",
    "class Scale:\n    def __init__(self, k):\n        self.k = k\n",
    "def experiment(context, config):\n"
    "    context.record({'v': config.x * config.scale.k})\n"
    "    return config.x * config.scale.k",
    "results = Memento(experiment, executor='process', num_workers=2, progress=False).run(\n"
    "    {'parameters': {'x': [1, 2, 3], 'scale': [Scale(10)]}}, cache_path=STORE)\n"
    "print([r.inner for r in results], [r.was_cached for r in results])",
    "again = Memento(experiment, num_workers=2, progress=False).run(\n"
    "    {'parameters': {'x': [1, 2, 3], 'scale': [Scale(10)]}}, cache_path=STORE)\n"
    "print([r.inner for r in again], [r.was_cached for r in again])",
]


@pytest.mark.timeout(240)
def test_notebook_functions_run_on_the_process_executor(tmp_path: Path) -> None:
    store = tmp_path / "nb.sqlite"
    outputs = run_notebook([f"STORE = {str(store)!r}", *NOTEBOOK_CELLS], timeout=180)
    assert outputs[4] == "[10, 20, 30] [False, False, False]"
    assert outputs[5] == "[10, 20, 30] [True, True, True]"
