"""Slurm, through submitit: the grid goes out as job arrays, each experiment one array task.

How a run flows through :class:`SlurmExecutor`:

1. ``submit`` only buffers. A flush (when the runner has handed over its burst of jobs, or a
   chunk is full) sends the buffer to ``sbatch`` as job arrays of at most ``chunk_size`` tasks,
   throttled with ``%array_parallelism``. When ``array_parallelism`` is set and an earlier
   array is still unfinished, the new array waits for it (``--dependency=afterany``), so the
   cap holds for the whole grid, not per array.
2. Each task's job id is written to the workspace's job registry (the store's ``jobs`` table)
   right after ``sbatch``. A driver that dies and is run again finds those ids and collects
   the jobs (finished or still queued) instead of submitting them again.
3. A background thread watches result files (every ``poll_interval`` s) and refreshes
   submitit's ``sacct`` watcher itself (every ``status_interval`` s; submitit alone backs off
   to 10 minutes, so a job that died without a result would be noticed very late).
4. On the node, the experiment runs inside :class:`SlurmCall`, a submitit checkpointable: on
   preemption or near the time limit (``USR2``) submitit requeues the same call, and the
   experiment resumes from its own latest ``context.checkpoint()`` file. Requeues are capped
   by ``max_requeues``.

The store's side directory (checkpoints, large values) and ``folder`` must be on a filesystem
that the driver and every node share.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from memento._util.checks import positive_int_or_none, timeout_or_none
from memento.exceptions import ExperimentError
from memento.executors.base import Executor, settle
from memento.executors.envelope import unseal
from memento.executors.slurm_support import (
    OVER_STATES,
    SlurmCall,
    accounted_state,
    exit_status,
    import_submitit,
    job_state,
    max_array_size,
    mem_parameter,
    queued_ids,
    refresh_listing,
    scancel,
    slurm_failure,
    slurm_reachable,
    stderr_note,
    stderr_tail,
    warn_if_node_local,
)
from memento.executors.timeouts import timed_out
from memento.executors.workspace import JobRegistry, NoJobRegistry, Workspace
from memento.worker.memory import OOM_EXIT_CODE
from memento.worker.task import run_job
from memento.worker.wire import Job, Outcome

logger = logging.getLogger("memento")

_TICK = 0.1
#: What sbatch says when it refuses a request (as opposed to a controller it cannot reach).
_REFUSED = ("Invalid", "not available", "exceeds", "More processors requested", "not permitted")


# -- in the driver ----------------------------------------------------------------------------
class _Pending:
    """One submitted job: buffered, then a Slurm array task, until its future resolves."""

    def __init__(self, work: Job, timeout: float | None) -> None:
        self.work = work
        self.keys = [t.key for t in work.tasks]
        self.timeout = timeout
        self.future: cf.Future[Any] = cf.Future()
        self.job: Any = None  # submitit.SlurmJob once submitted or re-attached
        self.submitted = 0.0
        self.started: float | None = None
        self.terminal: float | None = None  # when it was first seen over without a result
        self.gone = False  # sacct does not know it and squeue no longer lists it

    @property
    def job_id(self) -> str:
        return str(self.job.job_id) if self.job is not None else ""


class _Array:
    """One ``sbatch --array`` submission (or a single job, for one task)."""

    __slots__ = ("_started", "job_id", "tasks")

    def __init__(self, job_id: str, tasks: list[_Pending]) -> None:
        self.job_id = job_id
        self.tasks = tasks
        self._started = False

    def unfinished(self) -> bool:
        return any(not t.future.done() for t in self.tasks)

    def started(self) -> bool:
        if not self._started:
            self._started = any(t.future.done() or t.job.paths.stdout.exists() for t in self.tasks)
        return self._started


class SlurmExecutor(Executor):
    """Runs each experiment as a Slurm array task, submitted with submitit.

    Example::

        from memento import Memento
        from memento.executors import SlurmExecutor

        executor = SlurmExecutor(
            folder="runs/slurm", partition="gpu", timeout_min=120,
            cpus_per_task=4, mem_gb=16, gpus_per_node=1, array_parallelism=50,
        )
        Memento(experiment, executor=executor).run(matrix, cache_path="runs/grid.sqlite")

    ``folder`` (submitit's pickles and logs, one sub-directory per job) and the store's side
    directory (``runs/grid.sqlite.d``: checkpoints and large values) must be on a filesystem
    shared by the driver and the nodes, and the nodes must run the same Python environment
    (jobs start ``python`` as ``sys.executable``, or ``python=...``).

    :param folder: where submitit writes job files and logs.
    :param partition: ``--partition``; ``None`` uses the cluster's default.
    :param timeout_min: Slurm's time limit per task (``--time``), in minutes. Near it, the
        task is requeued and resumes from its latest checkpoint (counted in ``max_requeues``).
        ``Memento(timeout=...)`` is separate: the driver cancels a task that has been running
        longer than that many seconds.
    :param cpus_per_task: ``--cpus-per-task``.
    :param mem_gb: ``--mem`` in GB; ``None`` leaves the cluster's default.
    :param gpus_per_node: ``--gpus-per-node``.
    :param array_parallelism: at most this many of this executor's tasks run at once, over the
        whole grid; ``None`` lets Slurm run as many as it can.
    :param chunk_size: largest array submitted at once (default 1000, and never more than the
        cluster's ``MaxArraySize``).
    :param max_requeues: how many times a task may be requeued after preemption or its time
        limit before it fails.
    :param job_name: ``--job-name`` of every array.
    :param python: the command that starts Python on the nodes (default ``sys.executable``).
    :param setup: shell lines run before the job starts (``module load ...``).
    :param slurm_parameters: more submitit parameters (``qos``, ``account``, ``constraint``,
        ``additional_parameters={...}``...).
    :param poll_interval: seconds between checks of the result files.
    :param status_interval: seconds between ``sacct`` calls, which tell the driver about tasks
        that ended without a result (killed, out of memory, node failure).
    :param result_grace: seconds to wait for a result file after ``sacct`` says a task is over
        (slow network filesystems), before reporting it as dead.

    Resources per experiment: ``Memento(gpus_per_experiment=g)`` (a whole number) is each
    job's ``--gpus-per-node=g`` instead of ``gpus_per_node``, and ``Memento(memory_limit=...)``
    its ``--mem`` instead of ``mem_gb``; an ``oom`` retry asks for ``retry_memory_factor``
    times more. Jobs that ask for different resources go out as different arrays. A task that
    ends without a result fails with the kind its Slurm state says (``OUT_OF_MEMORY``: oom,
    ``PREEMPTED`` or ``CANCELLED``: interrupted, ``NODE_FAIL``: infrastructure, ``TIMEOUT``: a
    timeout, ``FAILED``: by its exit status; see ``STATE_KINDS`` in
    :mod:`memento.executors.slurm_support`).
    """

    name = "slurm"
    own_process = True
    own_cpus = True
    places_gpus = True
    requests_memory = True

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        partition: str | None = None,
        timeout_min: int = 60,
        cpus_per_task: int = 1,
        mem_gb: float | None = None,
        gpus_per_node: int | None = None,
        array_parallelism: int | None = None,
        chunk_size: int | None = None,
        max_requeues: int = 3,
        job_name: str = "memento",
        python: str | None = None,
        setup: Sequence[str] | None = None,
        slurm_parameters: Mapping[str, Any] | None = None,
        poll_interval: float = 1.0,
        status_interval: float = 10.0,
        result_grace: float = 10.0,
    ) -> None:
        import_submitit()
        for label, number in (("timeout_min", timeout_min), ("cpus_per_task", cpus_per_task)):
            if positive_int_or_none(label, number) is None:
                raise ValueError(f"{label} must be a positive int, got None")
        positive_int_or_none("array_parallelism", array_parallelism)
        positive_int_or_none("chunk_size", chunk_size)
        if isinstance(max_requeues, bool) or not isinstance(max_requeues, int) or max_requeues < 0:
            raise ValueError(f"max_requeues must be an int >= 0, got {max_requeues!r}")
        for label, seconds in (
            ("poll_interval", poll_interval),
            ("status_interval", status_interval),
            ("result_grace", result_grace),
        ):
            timeout_or_none(seconds, label)
        self.folder = Path(folder).expanduser().absolute()
        self.partition = partition
        self.timeout_min = timeout_min
        self.array_parallelism = array_parallelism
        self.max_requeues = max_requeues
        self.python = python
        self.poll_interval = poll_interval
        self.status_interval = status_interval
        self.result_grace = result_grace
        self._requested_chunk = chunk_size
        self.chunk_size = chunk_size or 1000
        self.max_workers = array_parallelism or self.chunk_size
        params: dict[str, Any] = {
            "job_name": job_name,
            "time": timeout_min,
            "cpus_per_task": cpus_per_task,
        }
        if partition is not None:
            params["partition"] = partition
        if mem_gb is not None:
            params["mem"] = mem_parameter(mem_gb)
        if gpus_per_node is not None:
            params["gpus_per_node"] = gpus_per_node
        if setup is not None:
            params["setup"] = list(setup)
        params.update(slurm_parameters or {})
        self.parameters = params
        self.mem_gb = mem_gb
        self._submitit: Any = None
        self._jobs: JobRegistry = NoJobRegistry()
        self._jobs_lock = threading.Lock()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._buffer: list[_Pending] = []
        self._watched: list[_Pending] = []
        self._arrays: list[_Array] = []
        self._by_future: dict[cf.Future[Any], _Pending] = {}
        self._last_submit = 0.0
        self._thread: threading.Thread | None = None

    # -- the seam --------------------------------------------------------------------------
    def prepare(self, workspace: Workspace) -> None:
        """Check that Slurm answers, and keep the workspace's job registry for job ids."""
        if not slurm_reachable():
            where = shutil.which("sbatch")
            raise ConnectionError(
                "SlurmExecutor cannot reach Slurm: "
                + (
                    "`sbatch` is not on PATH. Run memento on a login node of the cluster."
                    if where is None
                    else "`scontrol ping` says the controller is down. Check `scontrol ping` "
                    "and retry once Slurm is up."
                )
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._requested_chunk is None:
            self.chunk_size = min(1000, max_array_size())
        else:
            self.chunk_size = min(self._requested_chunk, max_array_size())
        if self.array_parallelism is None:
            self.max_workers = self.chunk_size
        shared = (
            [self.folder] if workspace.directory is None else [workspace.directory, self.folder]
        )
        warn_if_node_local(shared, self.partition)
        with self._jobs_lock:
            # Used from the background thread too (one call at a time, under the lock).
            self._jobs = workspace.jobs

    def submit(self, job: Job, *, timeout: float | None = None) -> cf.Future[list[Outcome]]:
        pending = _Pending(job, timeout)
        with self._lock:
            self._buffer.append(pending)
            self._by_future[pending.future] = pending
            self._last_submit = time.monotonic()
            full = len(self._buffer) >= self.chunk_size
        if full:
            self._flush(force=True)
        self._ensure_thread()
        return pending.future

    def check_resources(
        self, *, gpus_per_experiment: float | None, memory_limit: int | None
    ) -> None:
        """Refuse a fraction of a GPU: Slurm gives whole GPUs to a job.

        Example::

            SlurmExecutor("runs").check_resources(gpus_per_experiment=0.5, memory_limit=None)
            # ValueError: ... cannot give a fraction of a GPU ...
        """
        gpus = gpus_per_experiment
        if gpus is not None and (gpus <= 0 or gpus != int(gpus)):
            raise ValueError(
                f"gpus_per_experiment={gpus!r}: Slurm cannot give a fraction of a GPU to a job "
                "(each experiment is a job of its own). Use a whole number (1), or run "
                "experiments that share GPUs with a local executor (executor='process') inside "
                "one Slurm job, or with RayExecutor"
            )

    def job_parameters(self, job: Job) -> dict[str, Any]:
        """The submitit parameters of ``job``'s Slurm submission that depend on the job:
        ``gpus_per_node`` from ``job.gpu_request``, ``mem`` from ``job.memory_limit`` (or
        ``mem_gb`` scaled by ``job.memory_scale`` on an ``oom`` retry); the executor's own
        values where the job asks for nothing.

        Example::

            executor.job_parameters(job)   # {'gpus_per_node': 1, 'mem': '8192M', ...}
        """
        # Every key each time: submitit keeps what an earlier array was given.
        keys = ("gpus_per_node", "mem", "mem_per_cpu", "mem_per_gpu")
        params: dict[str, Any] = {k: self.parameters.get(k) for k in keys}
        if job.gpu_request is not None:
            params["gpus_per_node"] = int(job.gpu_request)
        mebibytes: int | None = None
        if job.memory_limit is not None:
            mebibytes = math.ceil(job.memory_limit / 2**20)
        elif self.mem_gb is not None and job.memory_scale != 1.0:
            mebibytes = math.ceil(self.mem_gb * 1024 * job.memory_scale)
        if mebibytes is not None:
            params["mem"] = f"{max(1, mebibytes)}M"
            # --mem excludes --mem-per-cpu and --mem-per-gpu.
            params["mem_per_cpu"] = params["mem_per_gpu"] = None
        return params

    def result(self, future: cf.Future[Any]) -> Any:
        with self._lock:
            pending = self._by_future.pop(future, None)
        try:
            return future.result()
        finally:
            # Collected: a later run (a retry, force_run) must submit anew, not re-attach.
            # A crash between here and the runner's write only costs a recomputation.
            if pending is not None and pending.keys and pending.job is not None:
                self._forget(pending.keys)

    def max_in_flight(self) -> int:
        # The runner hands over up to four chunks at once; the chunks go out as chained
        # arrays, and later submissions gather in the buffer until they fill an array.
        return 4 * self.chunk_size

    def flush(self) -> None:
        """Submit what is buffered, unless it should wait to join a later array.

        The background thread does this once submissions pause; a runner may call it after
        each round of submissions to save that pause.
        """
        self._flush(force=False)

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:
        """``cancel=True`` (Ctrl-C in the driver) cancels every unfinished task (``scancel``).

        Otherwise the buffer is submitted and, with ``wait=True``, every task is waited for;
        with ``wait=False`` the tasks keep running on the cluster, and a later run with the
        same store collects them.
        """
        if cancel:
            with self._lock:
                buffered, self._buffer = self._buffer, []
                watched = [p for p in self._watched if not p.future.done()]
            ids = [p.job_id for p in watched if p.job is not None]
            scancel(ids)
            self._forget([k for p in watched for k in p.keys])
            for p in buffered + watched:
                if not p.future.cancel():
                    settle(p.future, exception=cf.CancelledError(f"Slurm job {p.job_id} cancelled"))
            with self._lock:
                self._by_future.clear()
        else:
            self._flush(force=True)
            if wait:
                with self._lock:
                    futures = [p.future for p in self._watched]
                cf.wait(futures)
        with self._jobs_lock:
            self._jobs = NoJobRegistry()  # the run's, not ours: dropped, not closed

    # -- submitting ------------------------------------------------------------------------
    def _executor(self) -> Any:
        if self._submitit is None:
            submitit = import_submitit()
            ex = submitit.SlurmExecutor(
                folder=self.folder / "%j", max_num_timeout=self.max_requeues, python=self.python
            )
            ex.update_parameters(**self.parameters)
            self._submitit = ex
        return self._submitit

    def _flush(self, force: bool) -> None:
        with self._flush_lock:
            with self._lock:
                if not self._buffer:
                    return
                tail = self._tail()
                if (
                    not force
                    and len(self._buffer) < self.chunk_size
                    and tail is not None
                    and not tail.started()
                ):
                    # The last array still waits for its turn: let this one grow meanwhile.
                    return
                items, self._buffer = self._buffer, []
            items = self._reattach(items)
            # Jobs that ask for different GPUs or memory go out as arrays of their own.
            groups: dict[tuple[tuple[str, Any], ...], list[_Pending]] = {}
            for p in items:
                groups.setdefault(tuple(sorted(self.job_parameters(p.work).items())), []).append(p)
            for key, group in groups.items():
                for start in range(0, len(group), self.chunk_size):
                    self._submit_array(group[start : start + self.chunk_size], dict(key))
        self._ensure_thread()

    def _tail(self) -> _Array | None:
        self._arrays = [a for a in self._arrays if a.unfinished()]
        return self._arrays[-1] if self._arrays else None

    def _submit_array(self, items: list[_Pending], resources: dict[str, Any]) -> None:
        ex = self._executor()
        tail = self._tail() if self.array_parallelism else None
        ex.update_parameters(
            array_parallelism=self.array_parallelism or len(items),
            dependency=f"afterany:{tail.job_id}" if tail is not None else None,
            **resources,
        )
        try:
            with ex.batch():
                jobs = [ex.submit(SlurmCall(run_job, self.max_requeues), p.work) for p in items]
        except Exception as exc:
            text = f"sbatch failed, so {len(items)} job(s) were not submitted: {exc}"
            # Slurm refused the request itself (it would refuse it again): not a lost cluster.
            error: Exception = (
                ValueError(f"{text} (the resources asked: {resources})")
                if any(sign in str(exc) for sign in _REFUSED)
                else ConnectionError(text)
            )
            for p in items:
                settle(p.future, exception=error)
            return
        now = time.monotonic()
        for p, job in zip(items, jobs):
            p.job = job
            p.submitted = now
        array = _Array(str(jobs[0].job_id).split("_")[0], list(items))
        with self._lock:
            self._arrays.append(array)
            self._watched.extend(items)
        self._record([(p.keys[0], p.job_id) for p in items if len(p.keys) == 1])
        logger.info(
            "Submitted Slurm job %s (%d task(s)%s)",
            array.job_id,
            len(items),
            f", after {tail.job_id}" if tail is not None else "",
        )

    def _reattach(self, items: list[_Pending]) -> list[_Pending]:
        """Collect tasks an earlier driver submitted for these keys; return the rest."""
        singles = [p.keys[0] for p in items if len(p.keys) == 1]
        with self._jobs_lock:
            found = self._jobs.find_jobs(self.name, singles) if singles else {}
        if not found:
            return items
        from submitit import SlurmJob

        jobs: dict[int, Any] = {}
        for p in items:
            job_id = found.get(p.keys[0]) if len(p.keys) == 1 else None
            if job_id is not None:
                jobs[id(p)] = SlurmJob(folder=self.folder / "%j", job_id=job_id)
        SlurmJob.watcher.update()
        unknown = [
            j.job_id
            for j in jobs.values()
            if not j.paths.result_pickle.exists() and job_state(j) == "UNKNOWN"
        ]
        queued = queued_ids(unknown)
        rest: list[_Pending] = []
        attached: list[_Pending] = []
        now = time.monotonic()
        for p in items:
            job = jobs.get(id(p))
            # Submitted from this folder (not another), and finished or still in the queue.
            if (
                job is not None
                and job.paths.submitted_pickle.exists()
                and (
                    job.paths.result_pickle.exists()
                    or job.job_id in queued
                    or job_state(job) not in OVER_STATES | {"UNKNOWN"}
                )
            ):
                p.job = job
                p.submitted = now
                attached.append(p)
            else:
                rest.append(p)
        if attached:
            logger.info(
                "Collecting %d Slurm job(s) submitted by an earlier run: %s",
                len(attached),
                ", ".join(p.job_id for p in attached[:10]) + (" ..." if len(attached) > 10 else ""),
            )
            with self._lock:
                self._watched.extend(attached)
        return rest

    # -- watching --------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="memento-slurm", daemon=True
                )
                self._thread.start()

    def _watch(self) -> None:
        from submitit import SlurmJob

        last_poll = last_status = last_flush = time.monotonic()
        while True:
            time.sleep(_TICK)
            now = time.monotonic()
            try:
                with self._lock:
                    buffered = len(self._buffer)
                    quiet = now - self._last_submit >= 0.2
                if (
                    buffered
                    and quiet
                    and (last_flush <= self._last_submit or now - last_flush >= self.poll_interval)
                ):
                    last_flush = now
                    self._flush(force=False)
                if now - last_status >= self.status_interval:
                    last_status = now
                    SlurmJob.watcher.update()
                    self._find_gone(now)
                if now - last_poll >= self.poll_interval:
                    last_poll = now
                    self._poll(now)
            except Exception:  # never let the watcher die: futures would hang
                logger.exception("The Slurm watcher hit an error; retrying")
            with self._lock:
                self._watched = [p for p in self._watched if not p.future.done()]
                if not self._watched and not self._buffer:
                    self._thread = None
                    return

    def _find_gone(self, now: float) -> None:
        # Without accounting (or once sacct forgot a job), a job that died stays UNKNOWN:
        # squeue tells whether it still exists.
        with self._lock:
            unknown = [
                p
                for p in self._watched
                if not p.gone
                and not p.future.done()
                and now - p.submitted > self.status_interval
                and job_state(p.job) == "UNKNOWN"
            ]
        if unknown:
            queued = queued_ids([p.job_id for p in unknown])
            for p in unknown:
                p.gone = p.job_id not in queued

    def _poll(self, now: float) -> None:
        with self._lock:
            watched = list(self._watched)
        for p in watched:
            if p.future.done():
                continue
            job = p.job
            if job.paths.result_pickle.exists():
                self._collect(p)
                continue
            state = job_state(job)
            if p.timeout is not None:
                if p.started is None and (job.paths.stdout.exists() or state == "RUNNING"):
                    p.started = now
                if p.started is not None and now - p.started > p.timeout:
                    job.cancel(check=False)
                    error = timed_out(p.timeout, f"Slurm job {p.job_id} was cancelled")
                    settle(p.future, exception=_with_job(error, p))
                    continue
            if state == "PREEMPTED" and p.job_id in queued_ids([p.job_id]):
                p.terminal = None  # requeued: it runs again
            elif state in OVER_STATES or p.gone:
                if p.terminal is None:
                    p.terminal = now
                    refresh_listing(job.paths.folder)
                elif now - p.terminal >= self.result_grace:
                    self._collect(p)
            else:
                p.terminal = None

    def _collect(self, p: _Pending) -> None:
        job = p.job
        if not job.paths.result_pickle.exists():
            if job_state(job) == "UNKNOWN":
                job.watcher.update()  # once per lost job, for a message with its real state
            state = str(job.watcher.get_state(job.job_id, "cache") or "UNKNOWN")
            if state.split()[0].upper() == "UNKNOWN":
                # sacct may not have the record yet; a job that no one knows was lost.
                state = accounted_state(p.job_id) or ("LOST" if p.gone else "UNKNOWN")
            error: ExperimentError = slurm_failure(
                p.job_id,
                state,
                exitcode=exit_status(p.job_id) if state.startswith("FAILED") else None,
                oom_exit=OOM_EXIT_CODE,
                time_limit=self.timeout_min * 60.0,
                detail=f"The end of its stderr ({job.paths.stderr}):\n"
                + stderr_tail(job.paths.stderr),
            )
            settle(p.future, exception=_with_job(error, p))
            return
        job._results_timeout_s = 0  # the file is there; never wait for it
        stderr = job.paths.stderr
        try:
            envelope = job.result()
        except Exception as exc:  # the job could not even start the experiment
            error = ExperimentError(
                f"Slurm job {p.job_id} failed before returning a result: {exc}",
                exc_type=type(exc).__name__,
                traceback=str(exc),
            )
            settle(p.future, exception=_with_job(error, p))
            return
        try:
            where = f"Slurm job {p.job_id}"
            outcomes = unseal(envelope, where, lambda: f"\n[{where}]" + stderr_note(stderr))
        except Exception as exc:
            settle(p.future, exception=_with_job(exc, p))
            return
        note = f"\n[Slurm job {p.job_id}; stderr: {stderr}]"
        for outcome in outcomes:
            if not getattr(outcome, "ok", True) and outcome.traceback is not None:
                outcome.traceback += note + stderr_note(stderr)
        settle(p.future, result=outcomes)

    # -- the workspace's job registry -------------------------------------------------------
    def _record(self, jobs: Iterable[tuple[str, str]]) -> None:
        jobs = list(jobs)
        with self._jobs_lock:
            if jobs:
                self._jobs.record_jobs(self.name, jobs)

    def _forget(self, keys: Sequence[str]) -> None:
        with self._jobs_lock:
            if keys:
                self._jobs.forget_jobs(list(keys))


# -- helpers ----------------------------------------------------------------------------------
def _with_job(error: BaseException, p: _Pending) -> BaseException:
    error.job_id = p.job_id  # type: ignore[attr-defined]
    if p.job is not None:
        error.stderr_tail = stderr_tail(p.job.paths.stderr)  # type: ignore[attr-defined]
    return error


__all__ = ["SlurmExecutor", "slurm_reachable"]
