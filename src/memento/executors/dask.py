"""Dask distributed: experiments run on a Dask cluster, each in a child process of a worker.

Dask runs tasks in threads of its worker processes, and a thread can be neither stopped nor
protected from a segfault. So by default (``isolate=True``) each Dask worker process keeps a
small pool of child processes (memento's :class:`~memento.executors.ProcessExecutor`, one
child per worker thread), and every job runs in one of them: a timeout kills the child, a
crash fails that experiment alone with :class:`~memento.exceptions.WorkerDied`, and the Dask
worker itself lives on.

Checkpoints and large values are files in the workspace's directory (the store's side
directory), so every worker must see that directory at the same path:
:meth:`DaskExecutor.prepare` checks it on every worker before anything runs and fails early,
naming the workers that cannot.

Timeouts: with ``isolate=True`` the child process's pool kills the experiment; otherwise the
driver abandons it (:class:`~memento.executors.timeouts.SoftTimeouts`).

A lost worker (``KilledWorker``: its process or node died while it ran the job; a closed
connection) is :class:`~memento.exceptions.WorkerLost`, kind ``infrastructure``: with
``isolate=True`` the experiment ran in a child process, so it was not the experiment that took
the worker down (with ``isolate=False`` it may well have been: a
:class:`~memento.exceptions.WorkerDied`, kind ``crash``).

GPUs: Dask does not hand out devices, and the GPU ids this driver sees mean nothing on remote
workers. ``Memento(gpus_per_experiment=g)`` is therefore each task's Dask worker resource
``{"GPU": g}`` (fractions too), which the workers must declare (``dask worker --resources
GPU=1``, or dask-cuda's ``dask cuda worker``, one worker per GPU with its own
``CUDA_VISIBLE_DEVICES``): a worker runs its tasks' GPU shares side by side on the devices it
sees. :meth:`DaskExecutor.check_resources` refuses the request when no worker declares a GPU.

A cluster object (``LocalCluster``, or dask-jobqueue's ``SLURMCluster``, ``PBSCluster``,
``LSFCluster``, ``SGECluster``, ``HTCondorCluster``) gets a client of memento's own, closed
at the end; the cluster stays the user's and is never closed here. A batch-queue cluster
often has no worker yet when the run starts (its jobs wait in the queue): :meth:`prepare`
waits for the first one, so that the shared-directory check has a worker to run on and a
cluster whose jobs never start fails with a message instead of hanging, and it sizes the
run for every worker the cluster asked for, not only those that have joined.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from memento._util.optional import optional_import
from memento.exceptions import (
    ExperimentTimeout,
    WorkerDied,
    WorkerLost,
)
from memento.executors.base import Executor, settle
from memento.executors.envelope import Envelope, seal, unseal
from memento.executors.local import ProcessExecutor
from memento.executors.timeouts import SoftTimeouts
from memento.executors.workspace import Workspace, check_shared_directory
from memento.worker.task import run_job
from memento.worker.wire import Job, Outcome

logger = logging.getLogger("memento")


def _import_distributed() -> Any:
    return optional_import("distributed", "dask", "DaskExecutor")


class DaskExecutor(Executor):
    """Runs experiments on a Dask distributed cluster.

    Example::

        from memento import Memento
        from memento.executors import DaskExecutor

        with DaskExecutor("tcp://scheduler:8786") as executor:
            Memento(experiment, executor=executor).run(matrix)

        # or with a client you already have (it is left open):
        Memento(experiment, executor=DaskExecutor(client)).run(matrix)

        # or with a cluster object, e.g. workers as Slurm jobs (pip install
        # 'memento-grid[jobqueue]'); the cluster is yours and stays open:
        from dask_jobqueue import SLURMCluster

        cluster = SLURMCluster(cores=4, memory="16GB", walltime="02:00:00", queue="cpu")
        cluster.scale(jobs=10)
        with DaskExecutor(cluster) as executor:
            Memento(experiment, executor=executor).run(matrix)

    :param address: the scheduler's address, a ``distributed.Client``, a cluster object
        (any ``distributed.deploy.Cluster``: ``LocalCluster``, dask-jobqueue's
        ``SLURMCluster``, ``PBSCluster``, ``LSFCluster``, ``SGECluster``,
        ``HTCondorCluster``...), or ``None`` for the current default client. A client made
        from an address or a cluster is created on first use and closed by :meth:`shutdown`
        (or leaving the ``with`` block); a client you pass in is never closed, and neither is
        a cluster (scale it down or close it yourself).
    :param isolate: run each job in a child process of the Dask worker (see the module's
        docstring): hard timeouts and crash isolation. With ``False`` jobs run in the worker's
        threads: a timeout only abandons the experiment (counted from submission), and a crash
        takes the worker down (reported as :class:`~memento.exceptions.WorkerDied`).
    :param connect_timeout: seconds to wait for the scheduler.
    :param max_workers: how many jobs run at once. By default the cluster's threads: those of
        the workers that joined, or, with a cluster object, of every worker it asked for
        (``cluster.scale(jobs=...)``, or ``adapt(maximum_jobs=...)``), whichever is more.
        Pass it for an adaptive cluster without a maximum (else: the workers that joined).
    :param worker_timeout: with a cluster object (or a client of one) that has no worker yet,
        :meth:`prepare` waits this many seconds for the first one, then fails with a
        ``TimeoutError`` saying where to look (the jobs may still wait in the queue: raise
        it, or pass ``None`` to wait as long as it takes). A cluster that asked for no
        worker at all fails at once (call ``cluster.scale(jobs=...)`` first), and an
        adaptive one is not waited for: it starts workers when the run's jobs queue up.
    :param submit_options: more ``Client.submit`` arguments, e.g. ``resources={"GPU": 1}``.
    :param check_directory: check in :meth:`prepare` that every worker can read and write the
        store's directory.
    """

    name = "dask"
    batching = True
    places_gpus = True

    def __init__(
        self,
        address: str | Any | None = None,
        *,
        isolate: bool = True,
        connect_timeout: float = 10.0,
        max_workers: int | None = None,
        worker_timeout: float | None = 300.0,
        submit_options: Mapping[str, Any] | None = None,
        check_directory: bool = True,
    ) -> None:
        distributed = _import_distributed()
        self._cluster: Any = None
        self._client: Any = None
        if isinstance(address, distributed.Client):
            self.address: str | None = None
            self._client = address
        elif _is_cluster(address, distributed):
            self._cluster = address
            self.address = address.scheduler_address  # type: ignore[union-attr]
        elif address is None or isinstance(address, str):
            self.address = address
        else:
            raise TypeError(
                "DaskExecutor needs a scheduler address (str), a distributed.Client, a cluster "
                f"(LocalCluster, SLURMCluster...) or None, got {address!r}"
            )
        self.isolate = isolate
        self.own_process = isolate
        self.connect_timeout = connect_timeout
        self._max_workers = max_workers
        self.max_workers = max_workers or 1
        self.worker_timeout = worker_timeout
        self.submit_options = dict(submit_options or {})
        self.check_directory = check_directory
        self._owns_client = False
        self._plugin = False
        self._timeouts = SoftTimeouts()
        self._lock = threading.Lock()
        self._running: dict[cf.Future[Any], Any] = {}

    # -- connection ------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The ``distributed.Client``, connected on first use."""
        if self._client is None:
            distributed = _import_distributed()
            if self._cluster is not None:
                self._client = self._connect(distributed, self._cluster)
            elif self.address is None:
                try:
                    self._client = distributed.default_client()
                except ValueError:
                    raise ValueError(
                        "DaskExecutor() without an address uses the current Dask client, and "
                        "there is none: pass the scheduler's address, e.g. "
                        "DaskExecutor('tcp://scheduler:8786'), or a distributed.Client"
                    ) from None
            else:
                self._client = self._connect(distributed, self.address)
        return self._client

    def _connect(self, distributed: Any, target: Any) -> Any:
        """A client of our own. Made from a cluster object, closing it leaves the cluster
        running (``Client.close`` closes only a cluster the client started itself)."""
        try:
            client = distributed.Client(
                target, timeout=f"{self.connect_timeout}s", set_as_default=False
            )
        except OSError as exc:
            raise ConnectionError(
                f"Cannot reach the Dask scheduler at {self.address!r} within "
                f"{self.connect_timeout:g} s ({exc}). Start one (`dask scheduler`, then "
                "`dask worker <address>`), or check the address."
            ) from None
        self._owns_client = True
        return client

    def _register_plugin(self) -> None:
        if self.isolate and not self._plugin:
            self.client.register_plugin(_teardown_plugin(), name="memento-isolation")
            self._plugin = True

    # -- the seam --------------------------------------------------------------------------
    def prepare(self, workspace: Workspace) -> None:
        """Connect; wait for a first worker of a cluster object that has none yet (see
        ``worker_timeout``); check that every worker can use the workspace's directory."""
        client = self.client
        self._register_plugin()
        cluster = self._cluster if self._cluster is not None else getattr(client, "cluster", None)
        nthreads = client.nthreads()
        if not nthreads and cluster is not None:
            nthreads = self._wait_for_first_worker(client, cluster)
        # (A server store keeps checkpoints and values in its database: nothing to check.)
        if workspace.directory is not None:
            if not nthreads:
                logger.warning(
                    "The Dask cluster has no workers yet: jobs wait for one, and whether "
                    "workers can reach %s could not be checked",
                    workspace.directory,
                )
            elif self.check_directory:
                check_shared_directory(
                    workspace.directory,
                    lambda fn, *args: client.run(fn, *args, on_error="return"),
                    "Dask",
                )
        self.max_workers = self._max_workers or _capacity(cluster, nthreads)

    def _wait_for_first_worker(self, client: Any, cluster: Any) -> dict[str, int]:
        """The workers' threads once one worker has joined (see ``worker_timeout``)."""
        name = type(cluster).__name__
        if _adaptive_maximum(cluster) is not None:
            logger.info("The adaptive %s starts workers when the run's jobs queue up", name)
            return {}
        if not _planned_workers(cluster):
            raise ValueError(
                f"The {name} has no workers and asked for none: call cluster.scale(jobs=N) "
                "(dask-jobqueue; cluster.scale(N) elsewhere) or cluster.adapt(...) before the run"
            )
        logger.info("Waiting for the first worker of the %s", name)
        try:
            client.wait_for_workers(1, timeout=self.worker_timeout)
        except TimeoutError:  # distributed's WorkerStartTimeoutError is one
            raise TimeoutError(
                f"No worker of the {name} joined within {self.worker_timeout:g} s: its "
                "jobs may still wait in the queue (raise DaskExecutor(worker_timeout=...), "
                "or None to wait), or fail at start (see the batch system's job logs, "
                "e.g. the cluster's log_directory)"
            ) from None
        return dict(client.nthreads())

    def check_resources(
        self, *, gpus_per_experiment: float | None, memory_limit: int | None
    ) -> None:
        """Refuse ``memory_limit`` without ``isolate`` (it would stop the Dask worker itself),
        and GPUs when the workers that joined declare no ``GPU`` resource (tasks would wait
        forever).

        Example::

            DaskExecutor(client).check_resources(gpus_per_experiment=1, memory_limit=None)
            # ValueError: ... no Dask worker declares a GPU resource ...
        """
        if memory_limit is not None and not self.isolate:
            raise ValueError(
                "memory_limit needs DaskExecutor(isolate=True) (the default): with "
                "isolate=False experiments run in the Dask worker's threads, and stopping one "
                "over its limit would stop the worker"
            )
        if gpus_per_experiment is None:
            return
        if gpus_per_experiment <= 0:
            raise ValueError(f"gpus_per_experiment must be > 0, got {gpus_per_experiment!r}")
        workers = self.client.scheduler_info().get("workers", {})
        if not workers:
            logger.warning(
                "No Dask worker has joined yet: whether workers declare the GPU resource that "
                "gpus_per_experiment=%g asks for could not be checked",
                gpus_per_experiment,
            )
            return
        most = max(float(w.get("resources", {}).get("GPU", 0)) for w in workers.values())
        if most < gpus_per_experiment:
            raise ValueError(
                f"gpus_per_experiment={gpus_per_experiment:g} is a Dask worker resource "
                f"{{'GPU': {gpus_per_experiment:g}}}, and no Dask worker declares that much "
                f"(the most is {most:g}): start workers with `dask worker --resources GPU=1` "
                "(one per GPU, each with its own CUDA_VISIBLE_DEVICES), or use dask-cuda "
                "(`dask cuda worker`)"
            )

    def submit(self, job: Job, *, timeout: float | None = None) -> cf.Future[list[Outcome]]:
        label = job.tasks[0].key[:12] if job.tasks else "job"
        self._register_plugin()
        hard = timeout if self.isolate else None
        token = f"memento-{label}-{uuid.uuid4().hex[:8]}"
        options = dict(self.submit_options)
        if job.gpu_request is not None:
            options["resources"] = {**(options.get("resources") or {}), "GPU": job.gpu_request}
        dask_future = self.client.submit(
            _run_on_worker,
            job,
            hard,
            self.isolate,
            token,
            key=token,
            pure=False,
            retries=0,
            **options,
        )
        future: cf.Future[Any] = cf.Future()
        with self._lock:
            self._running[future] = dask_future
        dask_future.add_done_callback(lambda done: self._copy(done, future))
        if timeout is None or self.isolate:
            return future
        future.set_running_or_notify_cancel()  # the soft clock starts now
        return self._timeouts.wrap(future, timeout)

    def max_in_flight(self) -> int:
        if not self.isolate:
            # Soft timeouts count from submission: keep nothing waiting in Dask's queue.
            return self.max_workers
        return super().max_in_flight()

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:
        """Cancel or wait for what runs; close the client if this executor created it."""
        with self._lock:
            running = dict(self._running)
        if running and cancel and self._client is not None:
            for future in running:
                _cancel(future)
            self._client.cancel(list(running.values()), force=True)
            if self.isolate:
                # Dask cannot interrupt a task, but killing its child process ends it now.
                tokens = [str(f.key) for f in running.values()]
                self._client.run(_cancel_on_worker, tokens, on_error="return")
        elif running and wait:
            cf.wait(list(running))
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            self._owns_client = self._plugin = False
            client.close()

    # -- results ---------------------------------------------------------------------------
    def _copy(self, done: Any, future: cf.Future[Any]) -> None:
        """Runs in Dask's callback thread when the task is over."""
        with self._lock:
            self._running.pop(future, None)
        if future.done():
            return
        try:
            if done.status == "finished":
                settle(future, result=unseal(done.result(), "The Dask task"))
            elif done.status == "cancelled":
                _cancel(future)
            else:
                settle(future, exception=_engine_error(done.exception(), self.isolate))
        except BaseException as exc:
            settle(future, exception=exc)


def _is_cluster(value: Any, distributed: Any) -> bool:
    """A Dask cluster object: a ``distributed.deploy.Cluster``, or one that looks like it."""
    return isinstance(value, distributed.deploy.Cluster) or isinstance(
        getattr(value, "scheduler_address", None), str
    )


def _capacity(cluster: Any, nthreads: Mapping[str, int]) -> int:
    """Threads of the workers that joined, or of all a cluster asked for, whichever is more."""
    joined = sum(nthreads.values())
    if cluster is None:
        return max(1, joined)
    per_worker = max(nthreads.values(), default=0) or _threads_per_worker(cluster)
    planned = max(_planned_workers(cluster), _adaptive_maximum(cluster) or 0)
    return max(1, joined, per_worker * planned)


def _planned_workers(cluster: Any) -> int:
    """How many workers the cluster asked for (a jobqueue job of N processes counts N)."""
    try:
        return len(cluster.plan)
    except (AttributeError, TypeError):
        return 0


def _adaptive_maximum(cluster: Any) -> int | None:
    """The worker maximum of an adaptive cluster (0 when unbounded), ``None`` when not
    adaptive."""
    adaptive = getattr(cluster, "_adaptive", None)
    if adaptive is None or getattr(adaptive, "periodic_callback", None) is None:
        return None
    maximum = getattr(adaptive, "maximum", None)
    return maximum if isinstance(maximum, int) else 0


def _threads_per_worker(cluster: Any) -> int:
    """The threads of one worker the cluster would start, read from its spec."""
    # dask-jobqueue: the job that scale() submits, with its config-file defaults applied.
    threads = getattr(getattr(cluster, "_dummy_job", None), "worker_process_threads", None)
    if threads is None:  # any SpecCluster (LocalCluster): the spec of its next worker
        spec = getattr(cluster, "new_spec", None)
        options = spec.get("options", {}) if isinstance(spec, dict) else {}
        threads = options.get("nthreads") if isinstance(options, dict) else None
    return threads if isinstance(threads, int) and threads > 0 else 1


def _cancel(future: cf.Future[Any]) -> None:
    if not future.cancel():  # already marked running (soft timeouts)
        settle(future, exception=cf.CancelledError())


#: distributed's errors that mean a worker or the connection was lost, by class name (their
#: modules moved between versions).
_LOST_WORKER = ("KilledWorker", "CommClosedError", "FutureCancelledError")


def _engine_error(exc: BaseException | None, isolate: bool = True) -> BaseException:
    """memento's error for what a Dask task's future failed with."""
    if exc is None:
        return WorkerLost("The Dask task ended without a result")
    lost = any(c.__name__ in _LOST_WORKER for c in type(exc).__mro__)
    if lost and not isolate and type(exc).__name__ == "KilledWorker":
        # The experiment ran in the worker's own threads: it most likely took it down.
        return WorkerDied(
            f"The Dask worker running the experiment died ({exc}): with isolate=False a crash "
            "of the experiment (a segfault, os._exit) takes its worker down"
        )
    if lost:
        return WorkerLost(
            f"Dask lost the worker running the experiment ({type(exc).__name__}: {exc}): its "
            "process or node died, was restarted, or its connection closed"
        )
    return exc


# -- inside a Dask worker ---------------------------------------------------------------------
_pool: ProcessExecutor | None = None
_pool_stop = threading.Event()
_pool_lock = threading.Lock()
_running: dict[str, Any] = {}  # token -> the child's future, so that a driver can cancel it


def _run_on_worker(job: Job, timeout: float | None, isolate: bool, token: str) -> Envelope:
    """The Dask task: run ``job`` (in a child process when ``isolate``); never raises."""
    return seal(_run_in_child, job, timeout, token) if isolate else seal(run_job, job)


def _run_in_child(job: Job, timeout: float | None, token: str) -> list[Outcome]:
    pool = _worker_pool()
    future = pool.submit(job, timeout=timeout)
    _running[token] = future
    try:
        return pool.result(future)  # type: ignore[no-any-return]
    except (ExperimentTimeout, WorkerDied) as exc:
        again = type(exc)(f"{exc} (on Dask worker {_worker_address()})", kind=exc.kind)
        if isinstance(exc, WorkerDied) and isinstance(again, WorkerDied):
            again.exitcode = exc.exitcode
        raise again from None
    finally:
        _running.pop(token, None)


def _worker_pool() -> ProcessExecutor:
    global _pool, _pool_stop
    with _pool_lock:
        if _pool is None:
            from distributed import get_worker

            size = get_worker().state.nthreads
            # Dask starts its workers as daemonic processes, which multiprocessing forbids to
            # have children. Ours die with this process anyway (PR_SET_PDEATHSIG, and the
            # teardown plugin stops them when the worker closes).
            multiprocessing.current_process().daemon = False
            box: list[ProcessExecutor] = []
            ready, stop = threading.Event(), threading.Event()

            def keep() -> None:
                # The children are forked from this thread and get SIGKILL when the thread that
                # forked them ends, so it lives as long as the pool (Dask's own task threads
                # come and go).
                pool = ProcessExecutor(size)
                pool.result(pool.schedule(os.getpid))
                box.append(pool)
                ready.set()
                stop.wait()

            threading.Thread(target=keep, name="memento-pool", daemon=True).start()
            ready.wait()
            _pool, _pool_stop = box[0], stop
        return _pool


def _stop_worker_pool() -> bool:
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
        stop = _pool_stop
    if pool is not None:
        pool.shutdown(wait=True, cancel=True)
        stop.set()
    return True


def _cancel_on_worker(tokens: list[str]) -> int:
    """Stop the children running these tasks (a running pebble future's cancel kills it)."""
    futures = [f for f in (_running.get(t) for t in tokens) if f is not None]
    for future in futures:
        future.cancel()
    return len(futures)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:
        return socket.gethostname()


def _teardown_plugin() -> Any:
    """A worker plugin that stops the worker's children when it closes (else it waits on them).

    Made on demand, so that importing this module does not import ``distributed``.
    """
    from distributed.diagnostics.plugin import WorkerPlugin

    class PoolTeardown(WorkerPlugin):  # type: ignore[misc]
        idempotent = True  # registered once: another driver's run must not stop our children

        def teardown(self, worker: Any) -> None:
            _stop_worker_pool()

    return PoolTeardown()


__all__ = ["DaskExecutor"]
