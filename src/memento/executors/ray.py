"""Ray: each job is a Ray task in a worker process of its own.

A job runs as a streaming-generator task that first yields an empty "started" marker and then
its outcomes. The marker tells the driver when the job really started (not when it was queued),
so a timeout counts the experiment's own running time; when it runs out, the driver kills the
worker with ``ray.cancel(..., force=True)``. A worker that crashes (segfault, ``os._exit``)
fails that experiment alone with :class:`~memento.exceptions.WorkerDied` (kind ``crash``;
``oom`` when Ray's memory monitor killed it); a lost node, raylet or object is
:class:`~memento.exceptions.WorkerLost` (kind ``infrastructure``). Tasks are never retried by
Ray (``max_retries=0``): retries are memento's (``Memento(retries=...)``).

Resources: ``Memento(gpus_per_experiment=g)`` is each task's ``num_gpus`` (fractions too: Ray
shares a GPU between tasks and sets each task's ``CUDA_VISIBLE_DEVICES``), and
``Memento(memory_limit=...)`` its ``memory`` request in bytes (scaled up on an ``oom`` retry).

Checkpoints and large values are files in the workspace's directory, so every node must see
that directory at the same path: :meth:`RayExecutor.prepare` checks it on every alive node
before anything runs and fails early, naming the nodes that cannot.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from memento._util.optional import optional_import
from memento.exceptions import ExperimentError, WorkerDied, WorkerLost
from memento.executors.base import Executor, settle
from memento.executors.envelope import Envelope, seal, unseal
from memento.executors.timeouts import timed_out
from memento.executors.workspace import Workspace, check_shared_directory
from memento.worker.task import run_job
from memento.worker.wire import Job, Outcome

logger = logging.getLogger("memento")
_WAIT = 0.1  # seconds per ray.wait round in the watcher thread


def _import_ray() -> Any:
    return optional_import("ray", "ray", "RayExecutor")


class _Watched:
    __slots__ = ("future", "gen", "started", "timeout")

    def __init__(self, gen: Any, timeout: float | None) -> None:
        self.gen = gen
        self.timeout = timeout
        self.future: cf.Future[Any] = cf.Future()
        self.started: float | None = None

    def overdue(self, now: float) -> bool:
        if self.started is None or self.timeout is None or self.future.done():
            return False
        return now - self.started > self.timeout


class RayExecutor(Executor):
    """Runs experiments as Ray tasks.

    Example::

        from memento import Memento
        from memento.executors import RayExecutor

        with RayExecutor(address="auto", num_gpus=1) as executor:   # joins `ray start`
            Memento(experiment, executor=executor).run(matrix)

    :param address: passed to ``ray.init`` when Ray is not initialised yet: ``"auto"`` (the
        cluster started on this machine with ``ray start``), ``"host:port"``, ``"local"`` (a
        new private cluster) or ``None`` (Ray's default: join a running cluster, else start
        one). When Ray is already initialised in this process, that connection is used.
    :param num_cpus: CPUs reserved per task; ``num_gpus``, ``resources``: the same for GPUs
        and custom resources.
    :param max_workers: how many jobs run at once; defaults to the cluster's CPUs divided by
        ``num_cpus``.
    :param init_kwargs: more ``ray.init`` arguments (``runtime_env``, ``num_cpus``...).
    :param remote_options: more task options (``scheduling_strategy``, ``memory``...).
    :param connect_timeout: seconds to wait for a ``host:port`` address to answer
        (``ray.init`` itself waits forever on a dead address).
    :param check_directory: check in :meth:`prepare` that every node can read and write the
        store's directory.

    When this executor started Ray (``ray.init``), :meth:`shutdown` (or leaving the ``with``
    block) shuts it down; a Ray you initialised yourself is left running. ``ray://`` (Ray
    Client) addresses are not supported: run the driver on a node of the cluster.
    """

    name = "ray"
    own_process = True
    batching = True
    places_gpus = True
    requests_memory = True

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        resources: Mapping[str, float] | None = None,
        max_workers: int | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
        remote_options: Mapping[str, Any] | None = None,
        connect_timeout: float = 10.0,
        check_directory: bool = True,
    ) -> None:
        self._ray = _import_ray()
        if address is not None and address.startswith("ray://"):
            raise ValueError(
                f"RayExecutor cannot use the Ray Client address {address!r}: run the driver on "
                "a node of the cluster and use address='auto' or 'host:port'"
            )
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.resources = dict(resources or {})
        self._max_workers = max_workers
        self.max_workers = max_workers or 1
        self.init_kwargs = dict(init_kwargs or {})
        self.remote_options = dict(remote_options or {})
        self.connect_timeout = connect_timeout
        self.check_directory = check_directory
        self._owns_ray = False
        self._remote: Any = None
        self._tasks: dict[tuple[tuple[str, Any], ...], Any] = {}
        self._warned = False
        self._lock = threading.Lock()
        self._watched: list[_Watched] = []
        self._thread: threading.Thread | None = None

    # -- connection ------------------------------------------------------------------------
    def connect(self) -> None:
        """Initialise Ray unless it already is (``prepare`` does this)."""
        ray = self._ray
        if ray.is_initialized():
            return
        if self.address not in (None, "auto", "local"):
            _check_reachable(str(self.address), self.connect_timeout)
        try:
            ray.init(address=self.address, **self.init_kwargs)
        except ConnectionError as exc:
            raise ConnectionError(
                f"Cannot connect to the Ray cluster at {self.address!r} ({exc}). Start one with "
                "`ray start --head`, or pass another address."
            ) from None
        self._owns_ray = True

    # -- the seam --------------------------------------------------------------------------
    def prepare(self, workspace: Workspace) -> None:
        """Connect; check that every alive node can use the workspace's directory."""
        self.connect()
        ray = self._ray
        if self.check_directory and workspace.directory is not None:
            check_shared_directory(workspace.directory, self._run_on_every_node, "Ray")
        if self._max_workers is None:
            cpus = float(ray.cluster_resources().get("CPU", 1))
            self.max_workers = max(1, int(cpus // self.num_cpus) if self.num_cpus else int(cpus))

    def submit(self, job: Job, *, timeout: float | None = None) -> cf.Future[list[Outcome]]:
        if self._remote is None:
            self.connect()
            self._remote = self._ray.remote(_stream)
        watched = _Watched(self._task(job).remote(job), timeout)
        with self._lock:
            self._watched.append(watched)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="memento-ray", daemon=True)
                self._thread.start()
        return watched.future

    def check_resources(
        self, *, gpus_per_experiment: float | None, memory_limit: int | None
    ) -> None:
        """Refuse what Ray cannot schedule: more than one GPU per task must be a whole number.

        Example::

            RayExecutor().check_resources(gpus_per_experiment=1.5, memory_limit=None)
            # ValueError: ... more than 1 GPU per task must be a whole number ...
        """
        gpus = gpus_per_experiment
        if gpus is not None and (gpus <= 0 or (gpus > 1 and gpus != int(gpus))):
            raise ValueError(
                f"gpus_per_experiment={gpus!r}: Ray gives a task a fraction of one GPU (0.5) or "
                "whole GPUs (2); more than 1 GPU per task must be a whole number"
            )

    def task_options(self, job: Job) -> dict[str, Any]:
        """The Ray task options ``job`` asks for beyond the executor's own: ``num_gpus`` from
        ``job.gpu_request`` and ``memory`` (bytes) from ``job.memory_limit``.

        Example::

            executor.task_options(job)   # {'num_gpus': 0.5, 'memory': 8589934592}
        """
        options: dict[str, Any] = {}
        if job.gpu_request is not None:
            options["num_gpus"] = job.gpu_request
        if job.memory_limit is not None:
            options["memory"] = int(job.memory_limit)
        return options

    def _task(self, job: Job) -> Any:
        """The remote function, with ``job``'s own GPU and memory requests."""
        options = self.task_options(job)
        key = tuple(sorted(options.items()))
        task = self._tasks.get(key)
        if task is not None:
            return task
        self._warn_if_infeasible(options)
        task = self._remote.options(
            num_returns="streaming",
            max_retries=0,
            **{
                "num_cpus": self.num_cpus,
                "num_gpus": self.num_gpus,
                "resources": self.resources or None,
                **self.remote_options,
                **options,
            },
        )
        self._tasks[key] = task
        return task

    def _warn_if_infeasible(self, options: Mapping[str, Any]) -> None:
        """Say once when no node of the cluster has the GPUs or memory a task asks for (Ray
        keeps such a task pending until one joins)."""
        if self._warned:
            return
        self._warned = True
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        for name, label, hint in (
            ("num_gpus", "GPU", "ray start --num-gpus=N"),
            ("memory", "memory", "a smaller memory_limit"),
        ):
            wanted = options.get(name)
            most = max((float(r.get(label, 0)) for r in nodes), default=0.0)
            if wanted and most < wanted:
                logger.warning(
                    "Each experiment asks Ray for %s=%g, and no node has that much now (the "
                    "most is %g): the tasks wait until a node that has joins (%s)",
                    name, wanted, most, hint,
                )  # fmt: skip

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:
        """Cancel (killing the workers) or wait for what runs; shut Ray down if we started it."""
        with self._lock:
            watched = [w for w in self._watched if not w.future.done()]
        if cancel:
            for w in watched:
                if not w.future.cancel():
                    settle(w.future, exception=cf.CancelledError())
                self._cancel(w)
        elif wait:
            cf.wait([w.future for w in watched])
        self._remote = None
        self._tasks.clear()
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()

    # -- watching --------------------------------------------------------------------------
    def _watch(self) -> None:
        ray = self._ray
        while True:
            with self._lock:
                self._watched = [w for w in self._watched if not w.future.done()]
                watched = list(self._watched)
                if not watched:
                    self._thread = None
                    return
            try:
                gens = [w.gen for w in watched]
                ready, _ = ray.wait(gens, num_returns=len(gens), timeout=_WAIT, fetch_local=False)
                ready_ids = {id(g) for g in ready}
                now = time.monotonic()
                for w in watched:
                    if id(w.gen) in ready_ids:
                        self._advance(w, now)
                    if w.overdue(now):
                        self._cancel(w)
                        error = timed_out(w.timeout, "its Ray worker was killed")
                        settle(w.future, exception=error)
            except Exception:  # never let the watcher die: futures would hang
                logger.exception("The Ray watcher hit an error; retrying")
                time.sleep(_WAIT)

    def _advance(self, w: _Watched, now: float) -> None:
        ray = self._ray
        try:
            ref = next(w.gen)
        except StopIteration:
            settle(w.future, exception=ExperimentError("The Ray task ended without a result"))
            return
        try:
            item = ray.get(ref)
        except Exception as exc:
            settle(w.future, exception=_engine_error(exc))
            return
        if w.started is None:
            w.started = now  # the task's first item: it runs
            return
        try:
            settle(w.future, result=unseal(item, "The Ray task"))
        except Exception as exc:
            settle(w.future, exception=exc)

    def _cancel(self, w: _Watched) -> None:
        try:
            self._ray.cancel(w.gen, force=True)
        except Exception as exc:
            logger.debug("ray.cancel failed: %s", exc)

    def _run_on_every_node(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = ray.remote(fn)
        refs = {}
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            name = f"{node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]})"
            refs[name] = remote.options(
                num_cpus=0, max_retries=0, scheduling_strategy=strategy
            ).remote(*args)
        answers: dict[str, Any] = {}
        for name, ref in refs.items():
            try:
                answers[name] = ray.get(ref, timeout=120)
            except Exception as exc:
                answers[name] = f"the check did not run: {type(exc).__name__}: {exc}"
        return answers


# -- helpers ----------------------------------------------------------------------------------
def _stream(job: Job) -> Iterator[bytes | Envelope]:
    """The Ray task: a "started" marker, then the job's envelope."""
    yield b""
    yield seal(run_job, job)


def _engine_error(exc: BaseException) -> BaseException:
    import ray.exceptions as rex

    if isinstance(exc, rex.TaskCancelledError):
        return cf.CancelledError(str(exc))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, rex.OutOfMemoryError):
        return WorkerDied(
            f"Ray's memory monitor killed the worker running the experiment: {first}", kind="oom"
        )
    if isinstance(exc, _lost_errors(rex)):
        return WorkerLost(f"Ray lost the experiment's task ({type(exc).__name__}): {first}")
    if isinstance(exc, rex.WorkerCrashedError):
        # The experiment runs in the worker process itself: a segfault or os._exit there.
        return WorkerDied(
            "The Ray worker process running the experiment died (a segfault, os._exit or a "
            f"kill): {first}"
        )
    if isinstance(exc, rex.RayTaskError) and exc.cause is not None:
        return exc.cause  # type: ignore[no-any-return]
    return exc


def _lost_errors(rex: Any) -> tuple[type[BaseException], ...]:
    """Ray's errors that mean the engine lost the task (a node, raylet, owner or object),
    not that the experiment's own process died; those this Ray version has."""
    names = ("NodeDiedError", "LocalRayletDiedError", "ActorDiedError", "ActorUnavailableError",
             "ObjectLostError", "OwnerDiedError", "RaySystemError")  # fmt: skip
    return tuple(getattr(rex, n) for n in names if isinstance(getattr(rex, n, None), type))


def _check_reachable(address: str, timeout: float) -> None:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise ConnectionError(
            f"Cannot reach the Ray cluster at {address!r} ({exc}). Start it with "
            "`ray start --head`, or pass the address of its head node (host:port)."
        ) from None


__all__ = ["RayExecutor"]
