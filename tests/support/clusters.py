"""Real clusters for the executor tests (Slurm, Dask, Ray), and experiments that run on them.

Fixtures here are imported by the test modules that use them. The clusters they start live for
one test module (so that they do not slow down the rest of the suite) and are process-wide
singletons (Ray allows one connection per process). Clusters started by ``.ci/clusters.sh`` are
used when their variables are set (``MEMENTO_TEST_DASK_ADDRESS``, ``MEMENTO_TEST_RAY_ADDRESS``);
otherwise the fixtures start their own, bound to 127.0.0.1, and stop them afterwards.

Jobs on Slurm, Dask and Ray workers import this module and ``experiments`` by name: the fixtures
put ``tests/support/`` and ``src/`` on ``PYTHONPATH`` before any engine starts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

#: The folder holding `experiments.py`.
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent.parent


def support_paths() -> list[str]:
    """What workers and child processes need on PYTHONPATH to import the tests' modules by
    name (functions a test module defines travel by reference): tests/support and every test
    folder."""
    folders = sorted(
        p
        for p in (ROOT / "tests").iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != "__pycache__"
    )
    return [str(TESTS), *(str(p) for p in folders if p != TESTS)]


#: Set before Ray is imported: no token auth files in ~, every Ray listener on 127.0.0.1.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
#: Fast polling for tests; the defaults suit real clusters.
SLURM_TEST_OPTIONS: dict[str, Any] = {
    "poll_interval": 0.5,
    "status_interval": 2.0,
    "result_grace": 1.0,
}

_started: dict[str, Any] = {}  # name -> resource, one per process whatever the importing module


# -- experiments (importable on every worker) -------------------------------------------------
def product_logged(context: Any, config: Any) -> int:
    """``a * b``, appending a line to the log file in the settings (counts real executions)."""
    time.sleep(config.settings.get("sleep", 0))
    with open(config.settings["log"], "a") as f:
        f.write(f"{config.a},{config.b}\n")
    return int(config.a * config.b)


def nap(context: Any, config: Any) -> float:
    time.sleep(config.seconds)
    return float(config.seconds)


def record_or_fail(context: Any, config: Any) -> int:
    for step in range(3):
        context.record({"loss": 1.0 / (step + 1)})
    if config.a == 2:
        raise ValueError("two is not allowed")
    return int(config.a)


def checkpointed(context: Any, config: Any) -> dict[str, int]:
    """Counts to ``steps``, checkpointing each step; interrupted once at ``die_at``.

    ``how`` is ``"exit"`` (the worker process dies) or ``"raise"`` (for in-process
    executors). A marker file keeps the interruption to the first attempt.
    """
    state = context.restore() if context.checkpoint_exist() else {"i": 0, "starts": 0}
    state["starts"] += 1
    marker = Path(config.settings["dir"]) / f"interrupted-{config.a}"
    for i in range(state["i"], config.settings["steps"]):
        if i == config.settings["die_at"] and not marker.exists():
            marker.write_text("1")
            if config.settings["how"] == "exit":
                os._exit(1)
            raise RuntimeError("interrupted")
        state["i"] = i + 1
        context.checkpoint(state)
    return {"i": state["i"], "starts": state["starts"]}


def slow_steps(context: Any, config: Any) -> dict[str, Any]:
    """``steps`` steps of ``step`` seconds, checkpointing each: for preemption tests."""
    state = context.restore() if context.checkpoint_exist() else {"i": 0, "starts": []}
    state["starts"].append(state["i"])  # where each start picked up
    context.checkpoint(state)
    while state["i"] < config.settings["steps"]:
        time.sleep(config.settings["step"])
        state["i"] += 1
        context.checkpoint(state)
    return {
        "i": state["i"],
        "starts": state["starts"],
        "restarts": os.environ.get("SLURM_RESTART_COUNT", "0"),
    }


def tell_pid_and_sleep(path: str, seconds: float) -> None:
    """Write this process's pid to ``path``, then sleep: for tests that cancel a running job."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def _tell_pid_and_sleep_experiment(context: Any, config: Any) -> None:
    tell_pid_and_sleep(config.path, config.seconds)


def sleeper_job(path: str, seconds: float) -> Any:
    """A job, as executors get them, of one experiment running :func:`tell_pid_and_sleep`."""
    from memento.matrix.configs import Config
    from memento.worker.wire import FunctionRef, Job, Task

    config = Config._make({"path": path, "seconds": seconds}, {})
    experiment = FunctionRef(_tell_pid_and_sleep_experiment, "tell-pid-and-sleep")
    return Job(experiment, [Task("sleeper", config)], checkpoint_dir=str(Path(path).parent))


def alive(pid: int) -> bool:
    """A process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


# -- environment ------------------------------------------------------------------------------
def export_test_path() -> None:
    """Let workers started from now on import ``experiments``, ``clusters`` and memento."""
    parts = [*support_paths(), str(ROOT / "src")]
    current = os.environ.get("PYTHONPATH", "")
    missing = [p for p in parts if p not in current.split(os.pathsep)]
    if missing:
        os.environ["PYTHONPATH"] = os.pathsep.join(missing + ([current] if current else []))


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not reached within {timeout} s")


def store_rows(store: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query on a store that another thread or process may be writing."""
    if not store.exists():
        return []
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
        ) as conn:
            return list(conn.execute(sql).fetchall())
    except sqlite3.OperationalError:
        return []


@contextlib.contextmanager
def process_group(
    args: list[str], env: dict[str, str], log: Path, grace: float = 8.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args`` in a session of its own; stop the whole group at the end."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        stop_group(proc, grace)


def stop_group(proc: subprocess.Popen[bytes], grace: float = 8.0) -> None:
    """SIGTERM to the group, then SIGKILL to whatever of it is left after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


# -- Slurm ------------------------------------------------------------------------------------
def slurm_skip_reason() -> str | None:
    if not installed("submitit"):
        return "submitit is not installed (pip install 'memento-grid[slurm]')"
    from memento.executors.slurm import slurm_reachable

    if not slurm_reachable():
        return (
            "no Slurm cluster is reachable (`scontrol ping` failed or sbatch is missing); "
            "start one with .ci/clusters.sh (../shared/tools/slurm-up.sh)"
        )
    return None


@pytest.fixture(scope="session")
def slurm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for submitit's files; skips when no Slurm cluster answers."""
    reason = slurm_skip_reason()
    if reason:
        pytest.skip(reason)
    export_test_path()
    if "slurm" not in _started:
        _started["slurm"] = tmp_path_factory.mktemp("slurm")
    return Path(_started["slurm"])


def slurm_executor(folder: Path, **options: Any) -> Any:
    from memento.executors import SlurmExecutor

    return SlurmExecutor(folder, **{**SLURM_TEST_OPTIONS, **options})


# -- Dask -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A client of a ``LocalCluster`` (2 worker processes, 1 thread each) on 127.0.0.1."""
    if not installed("distributed"):
        pytest.skip("dask[distributed] is not installed (pip install 'memento-grid[dask]')")
    if "dask" not in _started:
        export_test_path()
        import dask
        from distributed import Client, LocalCluster

        # A crashed task must fail at once, not be retried on every worker it kills.
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = LocalCluster(
                host="127.0.0.1",
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",
                memory_limit="2GiB",
            )
        _started["dask"] = (cluster, Client(cluster, set_as_default=False))
    cluster, client = _started["dask"]
    yield client
    if _started.pop("dask", None) is not None:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def dask_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and a worker as separate processes (``dask scheduler``, ``dask worker``)."""
    if not installed("distributed"):
        pytest.skip("dask[distributed] is not installed (pip install 'memento-grid[dask]')")
    given = os.environ.get("MEMENTO_TEST_DASK_ADDRESS")
    if given:
        yield given
        return
    work = tmp_path_factory.mktemp("dask-cli")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")
    env["PYTHONPATH"] = os.pathsep.join(
        [*support_paths(), str(ROOT / "src"), env.get("PYTHONPATH", "")]
    )
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler = [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                 "--dashboard-address", "127.0.0.1:0", "--no-dashboard"]  # fmt: skip
    worker = [dask, "worker", address, "--host", "127.0.0.1", "--dashboard-address",
              "127.0.0.1:0", "--no-dashboard", "--nworkers", "1", "--nthreads", "2",
              "--memory-limit", "2GiB", "--local-directory", str(work)]  # fmt: skip
    with process_group(scheduler, env, work / "scheduler.log"):
        wait_for(lambda: _port_open(port), 60, "dask scheduler")
        with process_group(worker, env, work / "worker.log"):
            from distributed import Client

            with Client(address, timeout="30s", set_as_default=False) as client:
                client.wait_for_workers(1, timeout=60)
            yield address


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# -- Ray --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A private Ray cluster in this process (``ray.init(address="local")``, 2 CPUs)."""
    if not installed("ray"):
        pytest.skip("ray is not installed (pip install 'memento-grid[ray]')")
    if "ray" not in _started:
        os.environ.update(RAY_ENV)
        export_test_path()
        import ray

        temp = f"/tmp/ray-memento-{os.getpid()}"  # short: Unix socket paths are limited
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=100 * 2**20,
            _temp_dir=temp,
        )
        _started["ray"] = temp
    yield None
    temp = _started.pop("ray", None)
    if temp is not None:
        import ray

        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a Ray head started with ``ray start --head`` (its own process group)."""
    if not installed("ray"):
        pytest.skip("ray is not installed (pip install 'memento-grid[ray]')")
    given = os.environ.get("MEMENTO_TEST_RAY_ADDRESS")
    if given:
        yield given
        return
    work = tmp_path_factory.mktemp("ray-head")
    port = free_port()
    env = dict(os.environ, **RAY_ENV)
    ray = str(Path(sys.executable).with_name("ray"))
    # --block keeps `ray start` in the foreground, so stopping its process group stops this
    # head only (`ray stop` would stop every Ray on the machine, the in-process one too).
    args = [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
            f"--temp-dir=/tmp/ray-head-{port}"]  # fmt: skip
    with process_group(args, env, work / "head.log", grace=3.0):
        wait_for(lambda: "block forever" in (work / "head.log").read_text(), 120, "ray head")
        yield f"127.0.0.1:{port}"
    shutil.rmtree(f"/tmp/ray-head-{port}", ignore_errors=True)


# -- the executors of the contract suite ------------------------------------------------------
EXECUTORS = ["process", "thread", "inline", "dask", "ray", "slurm"]
IN_PROCESS = {"thread", "inline"}
#: Memento(timeout=...) per executor: long enough for a fast experiment on a busy machine.
TIMEOUTS = {"process": 5.0, "thread": 2.0, "inline": 5.0, "dask": 5.0, "ray": 8.0, "slurm": 15.0}
#: How long the "hanging" experiment sleeps: the thread executor cannot stop it and waits for
#: it at the end of the run, the others kill it.
HANGS = {"thread": 5.0}


def make_executor(name: str, request: pytest.FixtureRequest) -> Any:
    """What ``Memento(executor=...)`` gets for a contract-suite parameter."""
    if name in ("process", "thread", "inline"):
        return name
    if name == "dask":
        from memento.executors import DaskExecutor

        return DaskExecutor(request.getfixturevalue("dask_client"))
    if name == "ray":
        request.getfixturevalue("ray_local")
        from memento.executors import RayExecutor

        return RayExecutor()
    if name == "slurm":
        return slurm_executor(request.getfixturevalue("slurm_folder") / request.node.name)
    raise ValueError(name)
