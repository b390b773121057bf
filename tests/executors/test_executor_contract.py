"""One contract, every executor: local processes, threads, inline, Dask, Ray and Slurm.

Each test runs a small grid through ``Memento(executor=...)`` on a real engine. Cluster
parameters skip, with the reason, when their engine is not installed or no cluster answers
(see ``clusters.py`` and ``.ci/clusters.sh``). A new executor joins by adding a parameter.
"""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path
from typing import Any

import pytest
from clusters import (
    EXECUTORS,
    HANGS,
    IN_PROCESS,
    TIMEOUTS,
    checkpointed,
    dask_client,
    make_executor,
    nap,
    product_logged,
    ray_local,
    record_or_fail,
    slurm_folder,
)
from experiments import fail_on_three, misbehave

from memento import AggregateException, Memento
from memento.exceptions import ExperimentTimeout, WorkerDied
from memento.executors import Executor, Workspace
from memento.notifications import FileSystemNotificationProvider
from memento.store.sqlite import Store, side_directory
from memento.worker.task import run_job
from memento.worker.wire import Job, Outcome

__all__ = ["dask_client", "ray_local", "slurm_folder"]  # fixtures used through make_executor

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(
    params=[pytest.param(n, marks=pytest.mark.slurm) if n == "slurm" else n for n in EXECUTORS]
)
def executor(request: pytest.FixtureRequest) -> Any:
    return make_executor(request.param, request)


def _name(executor: Any) -> str:
    return executor if isinstance(executor, str) else str(executor.name)


def _memento(func: Any, executor: Any, **options: Any) -> Memento:
    return Memento(func, executor=executor, num_workers=2, progress=False, **options)


def test_results_come_back_in_matrix_order_and_a_rerun_reads_the_cache(
    executor: Any, store_path: Path, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    grid = {"parameters": {"a": [1, 2, 3], "b": [10, 20]}, "settings": {"log": str(log)}}
    results = _memento(product_logged, executor).run(grid, cache_path=store_path)
    assert results is not None
    assert [r.inner for r in results] == [10, 20, 20, 40, 30, 60]
    assert [r.config.asdict() for r in results] == [
        {"a": a, "b": b} for a in (1, 2, 3) for b in (10, 20)
    ]
    again = _memento(product_logged, executor).run(grid, cache_path=store_path)
    assert again is not None
    assert [r.inner for r in again] == [10, 20, 20, 40, 30, 60]
    assert all(r.was_cached for r in again)
    assert len(log.read_text().splitlines()) == 6  # each config ran exactly once


def test_a_failure_is_isolated_and_reported_with_its_traceback(
    executor: Any, store_path: Path
) -> None:
    grid = {"parameters": {"a": [1, 2, 3, 4]}}
    with pytest.raises(AggregateException) as info:
        _memento(fail_on_three, executor).run(grid, cache_path=store_path)
    (error,) = info.value.exceptions
    assert isinstance(error, ValueError) and str(error) == "a is 3"
    assert error.config.a == 3  # type: ignore[attr-defined]
    assert "fail_on_three" in error.traceback  # type: ignore[attr-defined]
    assert "ValueError: a is 3" in error.traceback  # type: ignore[attr-defined]
    results = _memento(fail_on_three, executor).run(
        grid, cache_path=store_path, raise_on_failure=False
    )
    assert results is not None
    assert [r.inner for r in results if r.ok] == [1, 2, 4]
    assert all(r.was_cached for r in results if r.ok)


def test_a_timeout_fails_that_experiment_and_the_rest_finish(
    executor: Any, store_path: Path
) -> None:
    name = _name(executor)
    hang = HANGS.get(name, 600.0)
    grid = {"parameters": {"seconds": [0.0, hang, 0.1]}}
    results = _memento(nap, executor, timeout=TIMEOUTS[name]).run(
        grid, cache_path=store_path, raise_on_failure=False
    )
    assert results is not None
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, ExperimentTimeout)
    assert "timeout" in str(results[1].error)


def test_a_crashing_experiment_fails_alone_with_worker_died(
    executor: Any, store_path: Path
) -> None:
    if _name(executor) in IN_PROCESS:
        pytest.skip("runs in the test's own process: a crash would take pytest down")
    grid = {"parameters": {"how": ["segfault", "ok", "exit"]}}
    results = _memento(misbehave, executor).run(grid, cache_path=store_path, raise_on_failure=False)
    assert results is not None
    assert [r.ok for r in results] == [False, True, False]
    assert results[1].inner == "ok"
    for crashed in (results[0], results[2]):
        assert isinstance(crashed.error, WorkerDied), repr(crashed.error)


def test_an_interrupted_experiment_resumes_from_its_checkpoint(
    executor: Any, store_path: Path, tmp_path: Path
) -> None:
    how = "raise" if _name(executor) in IN_PROCESS else "exit"
    settings = {"dir": str(tmp_path), "steps": 5, "die_at": 3, "how": how}
    grid = {"parameters": {"a": [1, 2]}, "settings": settings}
    # In-process it raises (an "error", retried only when retry_on names it); elsewhere its
    # worker exits (a "crash", retried by default).
    results = _memento(checkpointed, executor, retries=1, retry_on={"error", "crash"}).run(
        grid, cache_path=store_path
    )
    assert results is not None
    assert [r.inner for r in results] == [{"i": 5, "starts": 2}] * 2
    assert [r.attempts for r in results] == [2, 2]
    checkpoints = Store(store_path).checkpoint_directory
    assert not list(checkpoints.glob("*.ckpt"))  # removed once the results were stored


def test_metrics_and_notifications(executor: Any, store_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "notifications.log"
    memento = _memento(
        record_or_fail, executor, notification_provider=FileSystemNotificationProvider(log)
    )
    results = memento.run(
        {"parameters": {"a": [1, 2, 3]}}, cache_path=store_path, raise_on_failure=False
    )
    assert results is not None
    assert [r.ok for r in results] == [True, False, True]
    assert list(results[0].metrics["loss"]["y"]) == [1.0, 0.5, 1.0 / 3]
    lines = log.read_text().splitlines()
    assert sorted(lines) == [
        "All tasks completed",
        "Task completed",
        "Task completed",
        "Task failed",
    ]
    assert lines[-1] == "All tasks completed"


# -- an executor of your own --------------------------------------------------------------------
class PoolOfMyOwn(Executor):
    """What a user writes: ``submit`` only, on a process pool the user keeps."""

    def __init__(self, pool: cf.Executor) -> None:
        self.pool = pool
        self.jobs: list[Job] = []

    def submit(self, job: Job, *, timeout: float | None = None) -> cf.Future[list[Outcome]]:
        self.jobs.append(job)
        return self.pool.submit(run_job, job)


class NamelessPool(PoolOfMyOwn):
    """The same, telling what the driver asks of it; the driver never asks its name."""

    @property
    def name(self) -> str:  # type: ignore[override]
        raise AssertionError("the driver asked the executor for its name")

    def prepare(self, workspace: Workspace) -> None:
        self.workspace = workspace


def test_an_executor_that_implements_only_submit_runs_a_grid(
    store_path: Path, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    grid = {"parameters": {"a": [1, 2, 3], "b": [10]}, "settings": {"log": str(log)}}
    with cf.ProcessPoolExecutor(2) as pool:
        executor = PoolOfMyOwn(pool)
        results = Memento(product_logged, executor=executor, progress=False).run(
            grid, cache_path=store_path
        )
        assert results is not None
        assert [r.inner for r in results] == [10, 20, 30]
        assert sorted(t.key for job in executor.jobs for t in job.tasks) == sorted(
            r.key for r in results
        )
        with pytest.raises(AggregateException) as info:
            Memento(fail_on_three, executor=executor, progress=False).run(
                {"parameters": {"a": [2, 3]}}, cache_path=store_path
            )
        (error,) = info.value.exceptions
        assert isinstance(error, ValueError) and "fail_on_three" in error.traceback  # type: ignore[attr-defined]
        again = Memento(product_logged, executor=executor, progress=False).run(
            grid, cache_path=store_path
        )
    assert again is not None and all(r.was_cached for r in again)
    assert len(log.read_text().splitlines()) == 3


def test_the_driver_hands_a_workspace_and_never_asks_for_a_name(store_path: Path) -> None:
    with cf.ThreadPoolExecutor(2) as pool:
        executor = NamelessPool(pool)
        results = Memento(fail_on_three, executor=executor, progress=False).run(
            {"parameters": {"a": [1, 3]}}, cache_path=store_path, raise_on_failure=False
        )
    assert results is not None
    assert [r.ok for r in results] == [True, False]
    assert executor.workspace.directory == side_directory(store_path.absolute())
    assert executor.workspace.checkpoint_directory == Store(store_path).checkpoint_directory


def test_one_envelope_carries_every_cluster_engines_result_home() -> None:
    from memento.exceptions import ExperimentError
    from memento.executors.envelope import seal, unseal

    assert unseal(seal(sum, [1, 2]), "The test task") == 3
    with pytest.raises(ExperimentError, match=r"^The test task failed: ZeroDivisionError") as info:
        unseal(seal(divmod, 1, 0), "The test task", lambda: "\n[its logs]")
    assert "ZeroDivisionError" in info.value.traceback and info.value.traceback.endswith("logs]")
    # memento's own verdicts from inside the node pass unchanged
    with pytest.raises(WorkerDied, match=r"^gone$"):
        unseal(("error", WorkerDied("gone"), "Traceback ..."), "The test task")
