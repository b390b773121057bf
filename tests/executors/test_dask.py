"""DaskExecutor beyond the contract: a CLI-started cluster, the shared-directory check, clients."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from clusters import (
    ROOT,
    alive,
    dask_address,
    dask_client,
    free_port,
    installed,
    process_group,
    sleeper_job,
    support_paths,
    wait_for,
)
from experiments import misbehave, multiply, resumable

from memento import Memento
from memento.exceptions import ExperimentTimeout, MissingExtra, StoreError, WorkerDied
from memento.store.sqlite import side_directory

__all__ = ["dask_address", "dask_client"]

pytestmark = pytest.mark.timeout(180)
needs_dask = pytest.mark.skipif(
    not installed("distributed"), reason="dask[distributed] is not installed"
)


def test_a_scheduler_and_a_worker_started_as_separate_processes(
    dask_address: str, store_path: Path
) -> None:
    from memento.executors import DaskExecutor

    grid = {"parameters": {"how": ["ok", "exit", "hang"]}}
    with DaskExecutor(dask_address) as executor:
        results = Memento(misbehave, executor=executor, timeout=5, progress=False).run(
            grid, cache_path=store_path, raise_on_failure=False
        )
        client = executor.client
        assert results is not None
        assert results[0].inner == "ok"
        assert isinstance(results[1].error, WorkerDied)
        assert isinstance(results[2].error, ExperimentTimeout)
        assert "Dask worker tcp://127.0.0.1:" in str(results[2].error)
    assert client.status == "closed"  # the executor made this client, so it closed it


def test_a_client_passed_in_is_left_open(dask_client: object, store_path: Path) -> None:
    from memento.executors import DaskExecutor

    executor = DaskExecutor(dask_client)
    Memento(multiply, executor=executor, progress=False).run(
        {"parameters": {"a": [2], "b": [3]}}, cache_path=store_path
    )
    executor.shutdown()
    assert dask_client.status == "running"  # type: ignore[attr-defined]


def test_without_isolation_a_crash_takes_its_worker_down_and_is_reported(
    dask_client: object, store_path: Path
) -> None:
    from memento.executors import DaskExecutor

    executor = DaskExecutor(dask_client, isolate=False)
    results = Memento(misbehave, executor=executor, progress=False).run(
        {"parameters": {"how": ["ok", "exit"]}}, cache_path=store_path, raise_on_failure=False
    )
    assert results is not None
    assert results[0].inner == "ok"
    assert isinstance(results[1].error, WorkerDied)
    dask_client.wait_for_workers(2, timeout=60)  # type: ignore[attr-defined]  # the nanny restarts it


def test_cancelling_kills_the_process_running_the_experiment(
    dask_client: object, tmp_path: Path
) -> None:
    from memento.executors import DaskExecutor

    executor = DaskExecutor(dask_client)
    pid_file = tmp_path / "pid"
    future = executor.submit(sleeper_job(str(pid_file), 600))
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the child's pid"))
    executor.shutdown(cancel=True)  # what the runner does on Ctrl-C
    assert future.cancelled()
    wait_for(lambda: not alive(pid), 30, "the child's death")
    processing = dask_client.processing  # type: ignore[attr-defined]
    wait_for(lambda: not any(processing().values()), 30, "an idle cluster")


def _can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


@needs_dask
@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare(1) for a private mount")
def test_a_worker_that_cannot_see_the_store_directory_fails_the_run_early(
    store_path: Path, tmp_path: Path
) -> None:
    """One worker sees an empty tmpfs where the store's directory is: as on another machine."""
    import dask
    from distributed import LocalCluster

    from memento.executors import DaskExecutor

    directory = side_directory(store_path)
    directory.mkdir(parents=True)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            host="127.0.0.1",
            n_workers=1,
            threads_per_worker=1,
            dashboard_address="127.0.0.1:0",
            scheduler_port=free_port(),
        ) as cluster,
    ):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([*support_paths(), str(ROOT / "src")]))
        dask = str(Path(sys.executable).with_name("dask"))
        worker = (
            f"mount -t tmpfs none {directory} && exec {dask} worker {cluster.scheduler_address} "
            "--host 127.0.0.1 --no-dashboard --dashboard-address 127.0.0.1:0 --nthreads 1 "
            f"--local-directory {tmp_path}"
        )
        args = ["unshare", "--mount", "--propagation", "private", "sh", "-c", worker]
        with (
            process_group(args, env, tmp_path / "worker.log"),
            DaskExecutor(cluster) as executor,  # a cluster object: its address
        ):
            wait_for(lambda: len(executor.client.nthreads()) == 2, 60, "two workers")
            with pytest.raises(StoreError, match=r"1 of 2 Dask worker\(s\) cannot use") as info:
                Memento(multiply, executor=executor, progress=False).run(
                    {"parameters": {"a": [1], "b": [2]}}, cache_path=store_path
                )
            assert "is not visible on" in str(info.value)


@needs_dask
def test_an_unreachable_scheduler_is_a_clear_error(store_path: Path) -> None:
    from memento.executors import DaskExecutor

    address = f"tcp://127.0.0.1:{free_port()}"
    executor = DaskExecutor(address, connect_timeout=2)
    with pytest.raises(ConnectionError, match="Cannot reach the Dask scheduler"):
        Memento(multiply, executor=executor, progress=False).run(
            {"parameters": {"a": [1], "b": [2]}}, cache_path=store_path
        )


def test_a_missing_dask_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    from memento.executors import DaskExecutor

    with pytest.raises(MissingExtra, match=r"pip install 'memento-grid\[dask\]'"):
        DaskExecutor("tcp://127.0.0.1:8786")


def test_a_postgres_store_needs_no_shared_directory_and_checkpoints_go_to_the_database(
    dask_address: str, postgres_database: str, tmp_path: Path
) -> None:
    from memento.executors import DaskExecutor
    from memento.store.backends import open_store

    grid = {
        "parameters": {"a": [1, 2]},
        "settings": {"dir": str(tmp_path), "steps": 5, "die_at": 3},
    }
    with DaskExecutor(dask_address) as executor:
        results = Memento(resumable, executor=executor, retries=1, progress=False).run(
            grid, cache_path=postgres_database
        )
    # Each died once at step 3 (its worker process gone) and resumed from the checkpoint it
    # had written to the database: two starts, not a run from scratch.
    assert [r.inner for r in results] == [2, 2]
    with open_store(postgres_database, readonly=True) as store:
        assert store.directory is None
        assert len(list(store.rows(status="done"))) == 2
    assert not list(tmp_path.glob("*.d"))  # no side directory anywhere
