"""Resources and failure kinds on the cluster engines: GPUs, memory requests, lost workers.

Jobs go to the executors directly (as the driver builds them: ``Job.gpu_request``,
``Job.memory_limit``, ``Job.memory_scale``), on real engines: the single-node Slurm of
``.ci/clusters.sh`` (tests marked ``slurm``), a Dask ``LocalCluster``, and a private Ray in a
child process that advertises two GPUs this machine does not have (Ray then places tasks on
them and sets each task's ``CUDA_VISIBLE_DEVICES`` itself, which is what is checked).
"""

from __future__ import annotations

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
from clusters import (
    RAY_ENV,
    ROOT,
    dask_client,
    installed,
    sleeper_job,
    slurm_executor,
    slurm_folder,
    support_paths,
    wait_for,
)

from memento.exceptions import ExperimentTimeout, WorkerDied, WorkerLost

__all__ = ["dask_client", "slurm_folder"]

pytestmark = pytest.mark.timeout(240)

needs_submitit = pytest.mark.skipif(not installed("submitit"), reason="submitit is not installed")
needs_dask = pytest.mark.skipif(
    not installed("distributed"), reason="dask[distributed] is not installed"
)
needs_ray = pytest.mark.skipif(not installed("ray"), reason="ray is not installed")

MiB = 2**20


# -- experiments and jobs (workers import this module by name) ---------------------------------
def gpu_probe(context: Any, config: Any) -> dict[str, Any]:
    """The GPUs this experiment sees and when it ran. With ``together=n`` in the settings it
    first waits (at most 60 s) until ``n`` experiments have started: only experiments that
    run at the same time get past that."""
    start = time.time()
    folder = Path(config.settings["dir"])
    (folder / f"started-{config.i}").write_text(str(os.getpid()))
    together = config.settings.get("together")
    if together:
        wait_for(lambda: len(list(folder.glob("started-*"))) >= together, 60, "the others")
    time.sleep(config.settings.get("hold", 0.0))
    return {"ids": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}


def exit_with(context: Any, config: Any) -> None:
    os._exit(config.code)


def probe_jobs(folder: Path, n: int, **fields: Any) -> list[Any]:
    """``n`` jobs of one :func:`gpu_probe` each; ``fields`` go to every ``Job``."""
    from memento.matrix.configs import Config
    from memento.worker.wire import FunctionRef, Job, Task

    folder.mkdir(parents=True, exist_ok=True)
    settings = {"dir": str(folder), **fields.pop("settings", {})}
    experiment = FunctionRef(gpu_probe, "gpu-probe")
    return [
        Job(
            experiment,
            [Task(f"probe-{i}", Config._make({"i": i}, settings))],
            checkpoint_dir=str(folder),
            **fields,
        )
        for i in range(n)
    ]


def one_job(function: Any, folder: Path, params: dict[str, Any], **fields: Any) -> Any:
    from memento.matrix.configs import Config
    from memento.worker.wire import FunctionRef, Job, Task

    folder.mkdir(parents=True, exist_ok=True)
    ref = FunctionRef(function, function.__name__)
    return Job(ref, [Task(function.__name__, Config._make(params, {}))], str(folder), **fields)


def values(executor: Any, futures: list[Any]) -> list[Any]:
    from memento.store.values import decode

    out = []
    for future in futures:
        (outcome,) = executor.result(future)
        assert outcome.ok, outcome.traceback
        out.append(decode(outcome.value_format, outcome.value))
    return out


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["start"] < b["end"] and b["start"] < a["end"])


# -- Slurm ------------------------------------------------------------------------------------
def _sbatch_options(script: Path) -> dict[str, str]:
    import re

    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", script.read_text(), re.MULTILINE))


def _requested_memory(job_id: str) -> str:
    """The memory Slurm's controller holds for the job (``scontrol``: no accounting lag)."""
    import re

    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
    found = re.search(r"MinMemoryNode=(\S+)", out.stdout)
    return found.group(1) if found else ""


@pytest.mark.slurm
def test_slurm_each_jobs_memory_and_gpu_request_goes_into_its_own_submission(
    slurm_folder: Path, tmp_path: Path
) -> None:
    folder = slurm_folder / "resources"
    executor = slurm_executor(folder)
    plain = probe_jobs(tmp_path / "plain", 1)
    limited = probe_jobs(tmp_path / "limited", 2, memory_limit=300 * MiB)
    gpu = probe_jobs(tmp_path / "gpu", 1, gpu_request=1)
    futures = [executor.submit(job) for job in [*plain, *limited, *gpu]]
    executor.flush()
    try:
        assert len(values(executor, futures[:3])) == 3
        # This Slurm has no GPUs (no GRES): sbatch itself refuses the GPU request, which
        # tells that it was in the submission; the other arrays went out regardless.
        with pytest.raises(ValueError, match=r"gres.*'gpus_per_node': 1"):
            executor.result(futures[3])
    finally:
        executor.shutdown(cancel=True)
    scripts = {p.parent.name: _sbatch_options(p) for p in folder.glob("*/*_submission.sh")}
    by_mem = {options.get("mem"): (job_id, options) for job_id, options in scripts.items()}
    assert set(by_mem) == {None, "300M"}  # two arrays
    job_id, options = by_mem["300M"]
    assert options["array"] == "0-1%2"  # the two limited jobs, together
    assert _requested_memory(f"{job_id}_0") == "300M"  # what Slurm granted
    assert "gpus-per-node" not in by_mem[None][1]


@needs_submitit
def test_slurm_job_parameters_follow_the_jobs_requests_and_oom_retries(tmp_path: Path) -> None:
    executor = slurm_executor(tmp_path / "slurm", mem_gb=0.5, gpus_per_node=2)
    (default,) = probe_jobs(tmp_path, 1)
    assert executor.job_parameters(default) == {
        "gpus_per_node": 2, "mem": "512MB", "mem_per_cpu": None, "mem_per_gpu": None,
    }  # fmt: skip
    per_cpu = slurm_executor(tmp_path / "slurm", slurm_parameters={"mem_per_cpu": "1G"})
    assert per_cpu.job_parameters(default)["mem_per_cpu"] == "1G"  # the user's, kept
    (asked,) = probe_jobs(tmp_path, 1, gpu_request=1, memory_limit=3 * 2**30)
    assert executor.job_parameters(asked) == {
        "gpus_per_node": 1, "mem": "3072M", "mem_per_cpu": None, "mem_per_gpu": None,
    }  # fmt: skip
    # An oom retry without memory_limit scales the executor's own mem_gb.
    (retry,) = probe_jobs(tmp_path, 1, memory_scale=4.0)
    assert executor.job_parameters(retry)["mem"] == "2048M"


@needs_submitit
def test_slurm_refuses_a_fraction_of_a_gpu(tmp_path: Path) -> None:
    executor = slurm_executor(tmp_path / "slurm")
    executor.check_resources(gpus_per_experiment=2, memory_limit=8 * 2**30)
    with pytest.raises(ValueError, match=r"gpus_per_experiment=0.5: Slurm cannot give a fraction"):
        executor.check_resources(gpus_per_experiment=0.5, memory_limit=None)


@pytest.mark.slurm
def test_slurm_a_cancelled_job_is_interrupted_and_an_exit_code_is_a_crash(
    slurm_folder: Path, tmp_path: Path
) -> None:
    executor = slurm_executor(slurm_folder / "kinds")
    sleeper = executor.submit(sleeper_job(str(tmp_path / "pid"), 600))
    crash = executor.submit(one_job(exit_with, tmp_path / "exit", {"code": 3}))
    executor.flush()
    try:
        wait_for(lambda: (tmp_path / "pid").exists(), 120, "the sleeper's start")
        subprocess.run(["scancel", _job_of(executor, sleeper)], check=True)
        with pytest.raises(WorkerDied) as cancelled:
            executor.result(sleeper)
        assert cancelled.value.kind == "interrupted" and "CANCELLED" in str(cancelled.value)
        with pytest.raises(WorkerDied) as died:
            executor.result(crash)
        assert died.value.kind == "crash" and died.value.exitcode == 3
    finally:
        executor.shutdown(cancel=True)


def _job_of(executor: Any, future: Any) -> str:
    # The executor's own record of the submission (the job registry needs a store).
    return str(executor._by_future[future].job_id)


def test_slurm_states_map_to_failure_kinds() -> None:
    """Slurm states this single node cannot produce (no cgroup memory limits, no second node,
    no preemption policy): the one mapping table, through the function the executor calls."""
    from memento.executors.slurm_support import slurm_failure

    def failure(state: str, **kw: Any) -> tuple[str, str]:
        error = slurm_failure("7_1", state, **kw)
        return type(error).__name__, error.kind

    assert failure("OUT_OF_MEMORY") == ("WorkerDied", "oom")
    assert failure("PREEMPTED") == ("WorkerDied", "interrupted")
    assert failure("CANCELLED by 0") == ("WorkerDied", "interrupted")
    assert failure("NODE_FAIL") == ("WorkerLost", "infrastructure")
    assert failure("BOOT_FAIL") == ("WorkerLost", "infrastructure")
    assert failure("LOST") == ("WorkerLost", "infrastructure")
    assert failure("TIMEOUT", time_limit=600) == ("ExperimentTimeout", "timeout")
    assert failure("FAILED", exitcode=-11) == ("WorkerDied", "crash")
    assert failure("FAILED", exitcode=-15) == ("WorkerDied", "interrupted")
    assert failure("FAILED", exitcode=86, oom_exit=86) == ("WorkerDied", "oom")
    timeout = slurm_failure("7_1", "TIMEOUT", time_limit=600, detail="(stderr)")
    assert isinstance(timeout, ExperimentTimeout) and "10 min" in str(timeout)


# -- Dask -------------------------------------------------------------------------------------
def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


def test_dask_a_worker_killed_mid_task_is_a_lost_worker(dask_client: Any, tmp_path: Path) -> None:
    from memento.executors import DaskExecutor

    executor = DaskExecutor(dask_client)
    pid_file = tmp_path / "pid"
    future = executor.submit(sleeper_job(str(pid_file), 600))
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the child"))
    # The Dask worker process whose pool runs the experiment (not the experiment's process).
    workers = set(dask_client.run(os.getpid).values())
    (worker,) = [pid for pid in _ancestors(child) if pid in workers]
    os.kill(worker, signal.SIGKILL)
    try:
        with pytest.raises(WorkerLost, match="KilledWorker") as info:
            executor.result(future)
        assert info.value.kind == "infrastructure"
    finally:
        dask_client.wait_for_workers(2, timeout=60)  # the nanny restarts it


@needs_dask
def test_dask_engine_errors_of_a_lost_connection_are_lost_workers() -> None:
    from distributed.comm.core import CommClosedError

    from memento.executors.dask import _engine_error

    error = _engine_error(CommClosedError("in <TCP (closed)>: Stream is closed"))
    assert isinstance(error, WorkerLost) and error.kind == "infrastructure"
    plain = ValueError("the experiment's own")
    assert _engine_error(plain) is plain


def test_dask_gpus_need_workers_that_declare_them(dask_client: Any) -> None:
    from memento.executors import DaskExecutor

    executor = DaskExecutor(dask_client)
    with pytest.raises(ValueError, match=r"no Dask worker declares .*--resources GPU=1"):
        executor.check_resources(gpus_per_experiment=1, memory_limit=None)
    with pytest.raises(ValueError, match="isolate=True"):
        DaskExecutor(dask_client, isolate=False).check_resources(
            gpus_per_experiment=None, memory_limit=100 * MiB
        )


@needs_dask
def test_dask_gpu_shares_run_side_by_side_and_whole_gpus_one_at_a_time(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    from memento.executors import DaskExecutor

    with (
        LocalCluster(host="127.0.0.1", n_workers=1, threads_per_worker=2, resources={"GPU": 1},
                     dashboard_address="127.0.0.1:0", memory_limit="1GiB") as cluster,
        Client(cluster, set_as_default=False) as client,
        DaskExecutor(client) as executor,
    ):  # fmt: skip
        executor.check_resources(gpus_per_experiment=0.5, memory_limit=None)
        with pytest.raises(ValueError, match="the most is 1"):
            executor.check_resources(gpus_per_experiment=2, memory_limit=None)
        halves = probe_jobs(tmp_path / "halves", 2, gpu_request=0.5, settings={"together": 2})
        assert len(values(executor, [executor.submit(j) for j in halves])) == 2  # met
        wholes = probe_jobs(tmp_path / "wholes", 2, gpu_request=1, settings={"hold": 1.0})
        first, second = values(executor, [executor.submit(j) for j in wholes])
        assert not overlap(first, second)  # the worker's one GPU, one task at a time


# -- Ray --------------------------------------------------------------------------------------
RAY_DRIVER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import ray
    from test_cluster_resources import probe_jobs, values
    from memento.executors import RayExecutor

    work = Path(sys.argv[1])
    init = {"num_cpus": 4, "num_gpus": 2, "include_dashboard": False, "log_to_driver": False,
            "object_store_memory": 100 * 2**20, "_temp_dir": f"/tmp/ray-res-{os.getpid()}",
            "runtime_env": {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}}
    report = {}
    with RayExecutor(address="local", init_kwargs=init, check_directory=False) as ex:
        ex.check_resources(gpus_per_experiment=0.5, memory_limit=None)
        quarters = probe_jobs(work / "halves", 4, gpu_request=0.5, settings={"together": 4})
        report["halves"] = values(ex, [ex.submit(j) for j in quarters])
        wholes = probe_jobs(work / "wholes", 3, gpu_request=1, settings={"hold": 1.5})
        report["wholes"] = values(ex, [ex.submit(j) for j in wholes])
        before = ray.available_resources().get("memory", 0)
        (held,) = probe_jobs(work / "memory", 1, memory_limit=2**30, settings={"hold": 600})
        future = ex.submit(held)
        deadline = time.monotonic() + 60
        while not list((work / "memory").glob("started-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        report["memory_taken"] = before - ray.available_resources().get("memory", 0)
        ex.shutdown(cancel=True)
    print(json.dumps(report))
    """
)


@needs_ray
def test_ray_places_gpu_shares_and_memory_requests(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    env = {**subprocess_env, **RAY_ENV}
    env["PYTHONPATH"] = os.pathsep.join([*support_paths(), str(ROOT / "src"), env["PYTHONPATH"]])
    out = subprocess.run(
        [sys.executable, "-c", RAY_DRIVER, str(tmp_path)], env=env, capture_output=True,
        text=True, timeout=200,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    halves = [r["ids"] for r in report["halves"]]
    # Four half-GPU tasks ran at once (they met), two on each of the two GPUs.
    assert sorted(halves) == ["0", "0", "1", "1"]
    wholes = report["wholes"]
    assert all(r["ids"] in ("0", "1") for r in wholes)
    for i, a in enumerate(wholes):
        for b in wholes[i + 1 :]:
            assert a["ids"] != b["ids"] or not overlap(a, b)  # a whole GPU is never shared
    assert report["memory_taken"] == 2**30  # the task's memory request, in bytes


@needs_ray
def test_ray_errors_map_to_failure_kinds() -> None:
    import ray.exceptions as rex

    from memento.executors.ray import RayExecutor, _engine_error

    oom = _engine_error(rex.OutOfMemoryError("Task was killed due to the node running low"))
    assert isinstance(oom, WorkerDied) and oom.kind == "oom"
    lost = _engine_error(rex.LocalRayletDiedError())
    assert isinstance(lost, WorkerLost) and lost.kind == "infrastructure"
    crashed = _engine_error(rex.WorkerCrashedError())
    assert isinstance(crashed, WorkerDied) and crashed.kind == "crash"
    executor = RayExecutor()  # not connected: check_resources needs no cluster
    executor.check_resources(gpus_per_experiment=0.25, memory_limit=None)
    with pytest.raises(ValueError, match="whole number"):
        executor.check_resources(gpus_per_experiment=1.5, memory_limit=None)
