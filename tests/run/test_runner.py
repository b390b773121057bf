from __future__ import annotations

import concurrent.futures as cf
import functools
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from experiments import (
    count_calls,
    fail_on_three,
    flaky,
    misbehave,
    multiply,
    record_and_return,
    resumable,
    sleepy,
)

from memento import (
    AggregateException,
    CacheMiss,
    Config,
    Context,
    Memento,
    MemoryUsage,
    Result,
)
from memento.exceptions import ExperimentTimeout, UnencodableValue

EXECUTORS = ["process", "thread", "inline"]
GRID = {"parameters": {"a": [1, 2, 3], "b": [10, 20]}, "settings": {"s": 1}}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_results_come_back_in_matrix_order_and_are_cached(executor: str, store_path: Path) -> None:
    memento = Memento(multiply, executor=executor, num_workers=2, progress=False)
    results = memento.run(GRID, cache_path=store_path)
    assert results is not None
    assert [r.inner for r in results] == [10, 20, 20, 40, 30, 60]
    assert [r.config.asdict() for r in results] == [
        {"a": a, "b": b} for a in (1, 2, 3) for b in (10, 20)
    ]
    assert not any(r.was_cached for r in results)
    again = memento.run(GRID, cache_path=store_path)
    assert again is not None
    assert [r.inner for r in again] == [10, 20, 20, 40, 30, 60]
    assert all(r.was_cached for r in again)


@pytest.mark.timeout(120)
def test_result_fields(store_path: Path) -> None:
    results = Memento(record_and_return, progress=False).run(
        {"parameters": {"a": [1, 2]}}, cache_path=store_path
    )
    assert results is not None
    r = results[0]
    assert isinstance(r, Result)
    assert r.inner == {"a": 1, "twice": 2}
    assert isinstance(r.config, Config) and r.config.a == 1
    assert len(r.key) == 32
    assert list(r.metrics["loss"]["y"]) == [1.0, 0.5, 1.0 / 3]
    assert list(r.metrics["acc"]["x"]) == [0, 1, 2]
    # With pandas installed each metric is a DataFrame with columns x and y, as in 1.2.
    assert type(r.metrics["acc"]).__name__ == "DataFrame"
    assert list(r.metrics["acc"].columns) == ["x", "y"]
    assert r.start_time is not None and r.runtime is not None and r.cpu_time is not None
    assert r.runtime.total_seconds() >= 0
    assert isinstance(r.memory, MemoryUsage) and r.memory.hardware_peak > 1_000_000
    cached = Memento(record_and_return, progress=False).run(
        {"parameters": {"a": [1, 2]}}, cache_path=store_path
    )
    assert cached is not None
    assert cached[0].was_cached and list(cached[0].metrics["loss"]["y"]) == [1.0, 0.5, 1.0 / 3]
    assert cached[0].runtime == r.runtime and cached[0].memory == r.memory


@pytest.mark.timeout(120)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_failures_are_raised_together_after_the_rest_is_stored(
    executor: str, store_path: Path
) -> None:
    matrix = {"parameters": {"a": [1, 2, 3, 4]}}
    with pytest.raises(AggregateException) as info:
        Memento(fail_on_three, executor=executor, progress=False).run(matrix, cache_path=store_path)
    error = info.value
    assert len(error.exceptions) == 1
    exc = error.exceptions[0]
    assert isinstance(exc, ValueError) and str(exc) == "a is 3"
    assert exc.config == Config(a=3)  # type: ignore[attr-defined]
    assert "fail_on_three" in exc.traceback and "ValueError: a is 3" in exc.traceback  # type: ignore[attr-defined]
    assert "a=3" in str(error) and "ValueError: a is 3" in str(error)
    with sqlite3.connect(store_path) as conn:
        rows = dict(conn.execute("SELECT status, count(*) FROM results GROUP BY status").fetchall())
        failure = conn.execute(
            "SELECT error_type, error_message, traceback, attempts, host, start_time, end_time "
            "FROM results WHERE status = 'failed'"
        ).fetchone()
    assert rows == {"done": 3, "failed": 1}
    assert failure[0] == "ValueError" and failure[1] == "a is 3" and "Traceback" in failure[2]
    assert failure[3] == 1 and failure[4] and failure[5] <= failure[6]


@pytest.mark.timeout(120)
def test_raise_on_failure_false_returns_successes_and_failures(store_path: Path) -> None:
    results = Memento(fail_on_three, progress=False).run(
        {"parameters": {"a": [1, 2, 3]}}, cache_path=store_path, raise_on_failure=False
    )
    assert results is not None
    assert [r.ok for r in results] == [True, True, False]
    assert [r.inner for r in results.successes] == [1, 2]
    assert isinstance(results.failures[0].error, ValueError)


@pytest.mark.timeout(120)
def test_failed_configs_run_again_and_successes_do_not(tmp_path: Path, store_path: Path) -> None:
    log = tmp_path / "calls.log"
    matrix = {"parameters": {"a": [1, 2]}, "settings": {"log": str(log)}}
    Memento(count_calls, progress=False).run(matrix, cache_path=store_path)
    Memento(count_calls, progress=False).run(matrix, cache_path=store_path)
    assert sorted(log.read_text().split()) == ["1", "2"]
    with pytest.raises(AggregateException):
        Memento(fail_on_three, progress=False).run(
            {"parameters": {"a": [3]}}, cache_path=store_path
        )
    with pytest.raises(AggregateException) as info:
        Memento(fail_on_three, progress=False).run(
            {"parameters": {"a": [3]}}, cache_path=store_path
        )
    assert info.value.results[0].was_cached is False  # type: ignore[attr-defined]


@pytest.mark.timeout(120)
def test_larger_grid_reuses_cells(tmp_path: Path, store_path: Path) -> None:
    log = tmp_path / "calls.log"
    small = {"parameters": {"a": [1, 2]}, "settings": {"log": str(log)}}
    large = {"parameters": {"a": [1, 2, 3, 4]}, "settings": {"log": str(log)}}
    Memento(count_calls, progress=False).run(small, cache_path=store_path)
    results = Memento(count_calls, progress=False).run(large, cache_path=store_path)
    assert results is not None
    assert [r.was_cached for r in results] == [True, True, False, False]
    assert sorted(log.read_text().split()) == ["1", "2", "3", "4"]


@pytest.mark.timeout(120)
def test_force_run_and_force_cache(tmp_path: Path, store_path: Path) -> None:
    log = tmp_path / "calls.log"
    matrix = {"parameters": {"a": [1, 2]}, "settings": {"log": str(log)}}
    with pytest.raises(CacheMiss, match="a=1"):
        Memento(count_calls, progress=False).run(matrix, cache_path=store_path, force_cache=True)
    assert not log.exists()
    Memento(count_calls, progress=False).run(matrix, cache_path=store_path)
    results = Memento(count_calls, progress=False).run(
        matrix, cache_path=store_path, force_cache=True
    )
    assert results is not None and all(r.was_cached for r in results)
    results = Memento(count_calls, progress=False).run(
        matrix, cache_path=store_path, force_run=True
    )
    assert results is not None and not any(r.was_cached for r in results)
    assert len(log.read_text().split()) == 4


def test_dry_run_prints_the_plan_runs_nothing_and_creates_no_store(
    capsys: pytest.CaptureFixture[str], store_path: Path
) -> None:
    memento = Memento(multiply, progress=False)
    assert memento.run(GRID, dry_run=True, cache_path=store_path) is None
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == "Exiting due to dry run"
    assert out.count("[          new]") == 6
    assert not store_path.exists() and not store_path.parent.exists()


@pytest.mark.timeout(120)
def test_dry_run_shows_cached_and_failed_states(
    capsys: pytest.CaptureFixture[str], store_path: Path
) -> None:
    with pytest.raises(AggregateException):
        Memento(fail_on_three, progress=False).run(
            {"parameters": {"a": [1, 3]}}, cache_path=store_path
        )
    capsys.readouterr()
    Memento(fail_on_three, progress=False).run(
        {"parameters": {"a": [1, 3, 5]}}, cache_path=store_path, dry_run=True
    )
    lines = capsys.readouterr().out.splitlines()
    assert "[       cached] a=1" in lines[1]
    assert "[failed before] a=3" in lines[2]
    assert "[          new] a=5" in lines[3]


def test_default_store_location_and_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Memento(multiply, executor="inline", progress=False).run({"parameters": {"a": [1], "b": [2]}})
    assert Path("memento.sqlite").is_file()
    env_store = tmp_path / "env" / "grid.sqlite"
    monkeypatch.setenv("MEMENTO_CACHE_PATH", str(env_store))
    Memento(multiply, executor="inline", progress=False).run({"parameters": {"a": [1], "b": [2]}})
    assert env_store.is_file()


@pytest.mark.timeout(120)
def test_nothing_but_the_store_is_written_to_the_working_directory(store_path: Path) -> None:
    before = set(os.listdir("."))
    Memento(resumable, progress=False).run(
        {
            "parameters": {"a": [1]},
            "settings": {"dir": str(store_path.parent.parent), "steps": 3, "die_at": -1},
        },
        cache_path=store_path,
    )
    assert set(os.listdir(".")) == before


@pytest.mark.timeout(120)
def test_timeout_fails_the_experiment_and_the_rest_continue(store_path: Path) -> None:
    matrix = {"parameters": {"seconds": [0.0, 60.0, 0.1]}}
    with pytest.raises(AggregateException) as info:
        Memento(sleepy, timeout=2, num_workers=2, progress=False).run(matrix, cache_path=store_path)
    (exc,) = info.value.exceptions
    assert isinstance(exc, ExperimentTimeout)
    assert exc.config == Config(seconds=60.0)  # type: ignore[attr-defined]
    assert [r.inner for r in info.value.results if r.ok] == [0.0, 0.1]  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
def test_inline_timeout_uses_an_alarm(store_path: Path) -> None:
    with pytest.raises(AggregateException) as info:
        Memento(sleepy, executor="inline", timeout=0.5, progress=False).run(
            {"parameters": {"seconds": [30.0]}}, cache_path=store_path
        )
    assert isinstance(info.value.exceptions[0], ExperimentTimeout)


@pytest.mark.timeout(120)
def test_retries_give_extra_attempts(tmp_path: Path, store_path: Path) -> None:
    matrix = {"parameters": {"a": [1, 2]}, "settings": {"dir": str(tmp_path)}}
    # flaky raises: an "error", which retries apply to only when retry_on names it (issue 12).
    results = Memento(flaky, retries=1, retry_on={"error"}, progress=False).run(
        matrix, cache_path=store_path
    )
    assert results is not None
    assert [r.inner for r in results] == [1, 2] and [r.attempts for r in results] == [2, 2]
    for p in tmp_path.glob("flaky-*"):
        p.unlink()
    with pytest.raises(AggregateException):
        Memento(flaky, retries=0, progress=False).run(matrix, cache_path=tmp_path / "other.sqlite")


@pytest.mark.timeout(120)
def test_checkpoint_restore_after_the_worker_dies(tmp_path: Path, store_path: Path) -> None:
    matrix = {"parameters": {"a": [1]}, "settings": {"dir": str(tmp_path), "steps": 5, "die_at": 3}}
    with pytest.raises(AggregateException):
        Memento(resumable, progress=False).run(matrix, cache_path=store_path)
    checkpoints = list((store_path.parent / "results.sqlite.d" / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) == 1  # written by the worker, survived its death
    results = Memento(resumable, progress=False).run(matrix, cache_path=store_path)
    assert results is not None
    assert results[0].inner == 2  # resumed from the checkpoint: a second start, not a first
    assert not checkpoints[0].exists()  # removed once the result was stored


def test_context_checkpoints_by_hand(tmp_path: Path) -> None:
    from memento.worker.context import FileCheckpoints

    context = Context("k1", FileCheckpoints(tmp_path))
    assert not context.checkpoint_exist()
    with pytest.raises(KeyError):
        context.restore()
    context.checkpoint({"epoch": 3})
    assert context.checkpoint_exist() and context.restore() == {"epoch": 3}
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.timeout(120)
def test_version_invalidates_on_purpose(tmp_path: Path, store_path: Path) -> None:
    log = tmp_path / "calls.log"
    matrix = {"parameters": {"a": [1]}, "settings": {"log": str(log)}}
    Memento(count_calls, progress=False).run(matrix, cache_path=store_path)
    Memento(count_calls, progress=False, version="2").run(matrix, cache_path=store_path)
    Memento(count_calls, progress=False, version="2").run(matrix, cache_path=store_path)
    assert log.read_text().split() == ["1", "1"]


@pytest.mark.timeout(120)
def test_lambdas_never_share_results(store_path: Path) -> None:
    matrix = {"parameters": {"a": [1]}}
    one = Memento(lambda c, x: "one", progress=False).run(matrix, cache_path=store_path)
    two = Memento(lambda c, x: "two", progress=False).run(matrix, cache_path=store_path)
    assert one is not None and two is not None
    assert (one[0].inner, two[0].inner) == ("one", "two")
    assert not two[0].was_cached


class Trainer:
    def __init__(self, scale: int) -> None:
        self.scale = scale

    def __call__(self, context: Any, config: Any) -> int:
        return int(config.a * self.scale)

    def method(self, context: Any, config: Any) -> int:
        return int(config.a + self.scale)


class ExperimentClass:
    def __init__(self, context: Any, config: Any) -> None:
        self.value = config.a


def add(context: Any, config: Any, offset: int) -> int:
    return int(config.a + offset)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (Trainer(10), [10, 20]),
        (Trainer(10).method, [11, 12]),
        (functools.partial(add, offset=100), [101, 102]),
        (ExperimentClass, [1, 2]),
    ],
)
def test_any_callable_is_an_experiment(func: Any, expected: list[int], store_path: Path) -> None:
    results = Memento(func, progress=False).run(
        {"parameters": {"a": [1, 2]}}, cache_path=store_path
    )
    assert results is not None
    values = [r.inner.value if isinstance(r.inner, ExperimentClass) else r.inner for r in results]
    assert values == expected


@pytest.mark.timeout(120)
def test_sets_as_parameters_hit_the_cache(tmp_path: Path, store_path: Path) -> None:
    log = tmp_path / "calls.log"
    matrix = {"parameters": {"a": [frozenset({"x", "y"}), {1, 2}]}, "settings": {"log": str(log)}}

    def record(context: Any, config: Any) -> int:
        with open(config.settings["log"], "a") as f:
            f.write("call\n")
        return len(config.a)

    Memento(record, progress=False).run(matrix, cache_path=store_path)
    results = Memento(record, progress=False).run(matrix, cache_path=store_path)
    assert results is not None and all(r.was_cached for r in results)
    assert len(log.read_text().split()) == 2


def test_unencodable_parameters_fail_before_anything_runs(store_path: Path) -> None:
    import threading

    with pytest.raises(UnencodableValue, match="Parameter 'lock'"):
        Memento(multiply, progress=False).run(
            {"parameters": {"lock": [threading.Lock()]}}, cache_path=store_path
        )
    assert not store_path.exists()


@pytest.mark.timeout(120)
def test_any_concurrent_futures_executor(store_path: Path) -> None:
    with cf.ProcessPoolExecutor(2) as pool:
        results = Memento(multiply, executor=pool, progress=False).run(GRID, cache_path=store_path)
    assert results is not None and [r.inner for r in results] == [10, 20, 20, 40, 30, 60]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"num_workers": 0}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"retries": -1}, ValueError),
        ({"executor": "gpu"}, ValueError),
        ({"version": 2}, TypeError),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Memento(multiply, **kwargs)
    with pytest.raises(TypeError):
        Memento(42)  # type: ignore[arg-type]


@pytest.mark.timeout(120)
def test_unpicklable_return_value_is_a_clear_failure(store_path: Path) -> None:
    import threading

    def returns_lock(context: Any, config: Any) -> Any:
        return threading.Lock()

    with pytest.raises(AggregateException) as info:
        Memento(returns_lock, progress=False).run({"parameters": {"a": [1]}}, cache_path=store_path)
    assert "cannot be pickled" in str(info.value.exceptions[0])


@pytest.mark.timeout(120)
def test_store_is_readable_with_plain_sql(store_path: Path) -> None:
    Memento(multiply, progress=False).run(GRID, cache_path=store_path)
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT params, status, fingerprint FROM results ORDER BY params"
    ).fetchall()
    assert len(rows) == 6 and rows[0][1] == "done" and rows[0][2].startswith("v3:")
    assert conn.execute("SELECT journal_mode FROM pragma_journal_mode").fetchone()[0] == "wal"


@pytest.mark.timeout(120)
def test_crashing_experiments_fail_alone(store_path: Path) -> None:
    matrix = {"parameters": {"how": ["ok1", "segfault", "exit", "sigkill", "raise", "ok2"]}}
    with pytest.raises(AggregateException) as info:
        Memento(misbehave, num_workers=2, progress=False).run(matrix, cache_path=store_path)
    by_how = {e.config.how: e for e in info.value.exceptions}  # type: ignore[attr-defined]
    assert set(by_how) == {"segfault", "exit", "sigkill", "raise"}
    assert "SIGSEGV" in str(by_how["segfault"])
    assert "exited with code 3" in str(by_how["exit"])
    assert "SIGKILL" in str(by_how["sigkill"])
    assert isinstance(by_how["raise"], RuntimeError)
    ok = [r.inner for r in info.value.results if r.ok]  # type: ignore[attr-defined]
    assert ok == ["ok1", "ok2"]


STALE_DRIVER = """
import sys
from memento import Memento
from stale_exp import experiment
policy = sys.argv[2]
kwargs = {} if policy == "default" else {"on_code_change": policy}
memento = Memento(experiment, progress=False, **kwargs)
if sys.argv[3] == "dry":
    memento.run({"parameters": {"a": [1, 2]}}, cache_path=sys.argv[1], dry_run=True)
else:
    results = memento.run({"parameters": {"a": [1, 2]}}, cache_path=sys.argv[1])
    print("inner", [r.inner for r in results], "cached", [r.was_cached for r in results])
"""


@pytest.mark.timeout(180)
def test_stale_results_follow_on_code_change(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    import subprocess
    import sys

    module = tmp_path / "stale_exp.py"
    store = tmp_path / "s.sqlite"
    env = dict(subprocess_env, PYTHONPATH=f"{tmp_path}:{subprocess_env['PYTHONPATH']}")

    def drive(policy: str, mode: str = "run") -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, "-c", STALE_DRIVER, str(store), policy, mode],
            env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out

    module.write_text("def experiment(context, config):\n    return config.a * 10\n")
    assert "cached [False, False]" in drive("default").stdout
    module.write_text("def experiment(context, config):\n    return config.a * 100\n")

    dry = drive("default", "dry").stdout
    assert "2 stale" in dry and dry.count("stale: reuse]") == 2
    assert drive("rerun", "dry").stdout.count("stale: rerun]") == 2

    warned = drive("default")
    assert "inner [10, 20] cached [True, True]" in warned.stdout
    assert "2 stored result(s)" in warned.stderr and "on_code_change='rerun'" in warned.stderr
    quiet = drive("ignore")
    assert "inner [10, 20]" in quiet.stdout and "stored result" not in quiet.stderr
    rerun = drive("rerun")
    assert "inner [100, 200] cached [False, False]" in rerun.stdout
    assert "stored result" not in drive("default").stderr  # fresh now


def test_on_code_change_is_validated() -> None:
    with pytest.raises(ValueError, match="on_code_change"):
        Memento(multiply, on_code_change="sometimes")  # type: ignore[arg-type]


def test_default_workers_respect_cpu_affinity(subprocess_env: dict[str, str]) -> None:
    import subprocess
    import sys

    script = (
        "import os\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from memento.executors import ProcessExecutor, available_cpus\n"
        "print(available_cpus(), ProcessExecutor().max_workers)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=subprocess_env, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert out.stdout.split() == ["1", "1"]


def test_timeouts_are_timeout_errors() -> None:
    assert issubclass(ExperimentTimeout, TimeoutError)
