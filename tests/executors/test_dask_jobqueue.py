"""DaskExecutor given a cluster object: a LocalCluster, and dask-jobqueue's SLURMCluster.

The SLURMCluster's workers are real sbatch jobs on the single-node Slurm that CI starts
(``.ci/clusters.sh``); those tests skip when no Slurm answers or dask-jobqueue is missing.
Everything listens on 127.0.0.1 (``interface="lo"``), and the jobs run this venv's python,
which imports the test modules by name through the PYTHONPATH that sbatch passes on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clusters import export_test_path, installed, slurm_skip_reason

from memento import Memento

pytestmark = pytest.mark.timeout(300)
needs_dask = pytest.mark.skipif(
    not installed("distributed"), reason="dask[distributed] is not installed"
)


def job_and_product(context: Any, config: Any) -> dict[str, Any]:
    """``a * b`` and the Slurm job it ran in; logs a line per real execution."""
    with open(config.settings["log"], "a") as f:
        f.write(f"{config.a},{config.b}\n")
    return {"product": config.a * config.b, "job": os.environ.get("SLURM_JOB_ID")}


def _grid(log: Path) -> dict[str, Any]:
    return {"parameters": {"a": [1, 2, 3], "b": [10, 20]}, "settings": {"log": str(log)}}


def _local_cluster(n_workers: int) -> Any:
    from distributed import LocalCluster

    export_test_path()
    return LocalCluster(
        host="127.0.0.1",
        n_workers=n_workers,
        threads_per_worker=1,
        dashboard_address="127.0.0.1:0",
        memory_limit="1GiB",
    )


@needs_dask
def test_a_local_cluster_object_runs_a_grid_and_is_left_running(
    store_path: Path, tmp_path: Path
) -> None:
    from distributed import Client

    from memento.executors import DaskExecutor

    log = tmp_path / "calls.log"
    with _local_cluster(n_workers=2) as cluster:
        with DaskExecutor(cluster) as executor:
            results = Memento(job_and_product, executor=executor, progress=False).run(
                _grid(log), cache_path=store_path
            )
            client = executor.client
            assert executor.max_workers == 2
        assert results is not None
        assert [r.inner["product"] for r in results] == [10, 20, 20, 40, 30, 60]
        assert client.status == "closed"  # memento's own client is closed...
        assert cluster.status.name == "running"  # ...and the user's cluster is not
        with Client(cluster, set_as_default=False) as other:
            assert len(other.nthreads()) == 2


@needs_dask
def test_a_cluster_that_asked_for_no_worker_fails_before_anything_runs(
    store_path: Path, tmp_path: Path
) -> None:
    from memento.executors import DaskExecutor

    log = tmp_path / "calls.log"
    with (
        _local_cluster(n_workers=0) as cluster,
        DaskExecutor(cluster) as executor,
        pytest.raises(ValueError, match=r"call cluster\.scale\(jobs=N\)"),
    ):
        Memento(job_and_product, executor=executor, progress=False).run(
            _grid(log), cache_path=store_path
        )
    assert not log.exists()


# -- dask-jobqueue on Slurm --------------------------------------------------------------------
@pytest.fixture
def slurm_cluster_options(tmp_path: Path) -> dict[str, Any]:
    """SLURMCluster arguments for the CI node: small jobs of this venv's python."""
    if not installed("dask_jobqueue"):
        pytest.skip("dask-jobqueue is not installed (pip install 'memento-grid[jobqueue]')")
    reason = slurm_skip_reason()
    if reason:
        pytest.skip(reason)
    export_test_path()  # sbatch passes the environment on to the jobs
    return {
        "cores": 1,
        "processes": 1,
        "memory": "1GiB",
        "walltime": "00:10:00",
        "python": sys.executable,
        "log_directory": str(tmp_path / "jobqueue-logs"),
        "interface": "lo",
        "scheduler_options": {"dashboard_address": "127.0.0.1:0"},
        "worker_extra_args": ["--no-dashboard"],
    }


@pytest.fixture
def slurm_cluster(slurm_cluster_options: dict[str, Any]) -> Iterator[Any]:
    from dask_jobqueue import SLURMCluster

    with SLURMCluster(**slurm_cluster_options) as cluster:
        yield cluster  # closing it cancels its jobs


@pytest.mark.slurm
def test_a_slurm_cluster_runs_the_grid_in_slurm_jobs_and_a_rerun_is_cached(
    slurm_cluster: Any, store_path: Path, tmp_path: Path
) -> None:
    from memento.executors import DaskExecutor

    slurm_cluster.scale(jobs=2)  # no worker yet: prepare waits for the first one
    log = tmp_path / "calls.log"
    with DaskExecutor(slurm_cluster, worker_timeout=120) as executor:
        results = Memento(job_and_product, executor=executor, progress=False).run(
            _grid(log), cache_path=store_path
        )
        assert executor.max_workers == 2  # sized for both jobs, joined or not
    assert results is not None
    assert [r.inner["product"] for r in results] == [10, 20, 20, 40, 30, 60]
    jobs = {job.job_id for job in slurm_cluster.workers.values()}
    assert {r.inner["job"] for r in results} <= jobs  # each ran inside one of its sbatch jobs
    assert slurm_cluster.status.name == "running"

    with DaskExecutor(slurm_cluster) as executor:
        again = Memento(job_and_product, executor=executor, progress=False).run(
            _grid(log), cache_path=store_path
        )
    assert again is not None
    assert all(r.was_cached for r in again)
    assert [r.inner for r in again] == [r.inner for r in results]
    assert len(log.read_text().splitlines()) == 6  # each config ran exactly once


@pytest.mark.slurm
def test_an_adaptive_slurm_cluster_submits_its_jobs_when_the_run_needs_them(
    slurm_cluster: Any, store_path: Path, tmp_path: Path
) -> None:
    from memento.executors import DaskExecutor

    slurm_cluster.adapt(minimum_jobs=0, maximum_jobs=2)  # nothing is submitted yet
    log = tmp_path / "calls.log"
    with DaskExecutor(slurm_cluster, worker_timeout=1) as executor:  # not waited for
        results = Memento(job_and_product, executor=executor, progress=False).run(
            _grid(log), cache_path=store_path
        )
        assert executor.max_workers == 2  # sized for the adaptive maximum
    assert results is not None
    assert [r.inner["product"] for r in results] == [10, 20, 20, 40, 30, 60]
    assert all(str(r.inner["job"]).isdigit() for r in results)


@pytest.mark.slurm
def test_jobs_that_never_start_fail_the_run_after_worker_timeout(
    slurm_cluster_options: dict[str, Any], store_path: Path, tmp_path: Path
) -> None:
    from dask_jobqueue import SLURMCluster

    from memento.executors import DaskExecutor

    held = {**slurm_cluster_options, "job_extra_directives": ["--hold"]}  # pending forever
    log = tmp_path / "calls.log"
    with SLURMCluster(**held) as cluster:
        cluster.scale(jobs=1)
        executor = DaskExecutor(cluster, worker_timeout=3)
        with pytest.raises(TimeoutError, match=r"No worker of the SLURMCluster joined within 3 s"):
            Memento(job_and_product, executor=executor, progress=False).run(
                _grid(log), cache_path=store_path
            )
        executor.shutdown()
    assert not log.exists()
