"""The executor seam: the driver submits jobs and waits on futures.

Every executor, the built-in local ones, the cluster engines and yours, implements
:class:`Executor`. The driver calls :meth:`Executor.submit` with a
:class:`~memento.worker.wire.Job` (one or more experiments) and a timeout, waits on the
returned :class:`concurrent.futures.Future` objects with ``concurrent.futures.wait``, and reads
each one through :meth:`Executor.result`: the job's outcomes, or an engine error such as
:class:`~memento.exceptions.ExperimentTimeout` or :class:`~memento.exceptions.WorkerDied`.
What an engine can do is said by class attributes (capability flags), never by its name.

A minimal executor of your own::

    class PoolExecutor(Executor):
        def __init__(self, pool: concurrent.futures.Executor) -> None:
            self.pool = pool

        def submit(self, job, *, timeout=None):
            return self.pool.submit(run_job, job)   # memento.worker.task.run_job
"""

from __future__ import annotations

import concurrent.futures as cf
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from memento.executors.workspace import Workspace
    from memento.worker.output import OutputRecord
    from memento.worker.wire import Job, Outcome


_E = TypeVar("_E", bound="Executor")

#: One ``context.progress`` update: ``(key, done, total)``.
ProgressUpdate = tuple[str, float, float | None]


class Executor(ABC):
    """Base class of every executor.

    Subclasses implement :meth:`submit` and usually :meth:`shutdown`; the class attributes
    tell the driver what the engine can do.
    """

    #: How many jobs run at once; the driver keeps about twice that many submitted.
    max_workers: int = 1
    #: Jobs run in the driver's own process (values need no pickling, and progress and
    #: output reach the driver through the job's own callbacks).
    in_process: bool = False
    #: Each worker runs one experiment at a time in a process of its own, so per-experiment
    #: peak memory can be measured.
    own_process: bool = False
    #: Several short experiments may be sent as one job to save round trips.
    batching: bool = False
    #: Experiments run in threads of one process: their CPU time is the thread's, not the
    #: process's.
    measures_thread_cpu: bool = False
    #: The workers report ``context.progress`` (and when each experiment begins) through
    #: :meth:`progress_updates`.
    reports_progress: bool = False
    #: Each job gets CPUs of its own (a cluster job's allocation): the worker caps BLAS and
    #: OpenMP pools at its own CPU count, not at the driver's CPUs shared by ``max_workers``.
    own_cpus: bool = False
    #: The engine places each job on GPUs itself (Slurm's ``--gpus-per-node``, Ray's
    #: ``num_gpus``), from :attr:`Job.gpu_request`; otherwise the driver hands out the GPUs
    #: it sees (``CUDA_VISIBLE_DEVICES``) to the jobs it submits.
    places_gpus: bool = False
    #: The engine asks a scheduler for each job's memory (Slurm's ``--mem``, Ray's
    #: ``memory``): an ``oom`` retry asks it for more (``Job.memory_limit`` scaled by
    #: ``Job.memory_scale``); elsewhere ``memory_limit`` is a limit the worker enforces.
    requests_memory: bool = False
    #: A short name for messages and for the job registry (the driver never reads it).
    name: str = "executor"

    @abstractmethod
    def submit(self, job: Job, *, timeout: float | None = None) -> cf.Future[list[Outcome]]:
        """Start ``run_job(job)``; stop it and fail its future if it runs past ``timeout`` s.

        The future's value is the job's outcomes, one per task, in order. An error that
        stopped the whole job (its worker died, its timeout ran out) is the future's
        exception; :meth:`result` may translate an engine's own errors first.
        """

    def check_resources(  # noqa: B027
        self, *, gpus_per_experiment: float | None, memory_limit: int | None
    ) -> None:
        """Raise ``ValueError`` for a resource request this engine cannot honour; called by
        the driver before anything runs. The default accepts everything."""

    def result(self, future: cf.Future[list[Outcome]]) -> list[Outcome]:
        """The job's outcomes; engine errors become memento's exceptions."""
        return future.result()

    def prepare(self, workspace: Workspace) -> None:  # noqa: B027
        """Called once per run before anything is submitted.

        Cluster executors check here that workers can reach ``workspace.directory``
        (checkpoints and large values live there), and may keep engine job ids in
        ``workspace.jobs``.
        """

    def max_in_flight(self) -> int:
        """How many jobs the driver keeps submitted at once."""
        return max(1, 2 * self.max_workers)

    def flush(self) -> None:  # noqa: B027
        """Called by the driver after each round of submissions, just before it waits.

        Executors that buffer submissions (Slurm sends them as job arrays) submit them now.
        """

    # -- the progress and output channels ----------------------------------------------------
    def progress_updates(self) -> Iterator[ProgressUpdate]:
        """``context.progress`` updates from the workers, until :meth:`shutdown`.

        Read by the driver (in a thread of its own) when :attr:`reports_progress` is set; a
        worker's first update for an experiment says that it began. None by default.
        """
        return iter(())

    def set_output_sink(self, sink: Callable[[list[OutputRecord]], None] | None) -> None:  # noqa: B027
        """Where what the workers print goes, as lists of output records (see
        :data:`memento.worker.output.OutputRecord`); ``None``: the executor's default. Executors
        whose workers' output travels by itself (in-process, or kept in the job's outcomes)
        ignore it."""

    def drain_output(self, timeout: float = 10.0) -> None:  # noqa: B027
        """Wait until what the workers printed so far has reached the sink."""

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:  # noqa: B027
        """Release the engine's resources; ``cancel=True`` stops running jobs now."""

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def describe_exit(exitcode: int | None) -> str:
    """'killed by signal SIGSEGV (11)' or 'exited with code 3'."""
    if exitcode is None:
        return "died"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"was killed by signal {name} ({-exitcode}){hint}"
    return f"exited with code {exitcode}"


#: Exit statuses that mean the process was stopped from outside (SIGTERM, SIGINT, SIGHUP,
#: as a signal or as the shell's ``128 + n``), not that it broke.
_INTERRUPTS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def exit_kind(exitcode: int | None, *, oom_exit: int | None = None) -> str:
    """The failure kind of a worker that ended with ``exitcode``: ``interrupted`` for
    SIGTERM, SIGINT or SIGHUP, ``oom`` for ``oom_exit`` (the status of a worker whose memory
    watch stopped it), else ``crash``. (Whether a SIGKILL was the kernel's OOM killer is the
    driver's call: it knows the cgroup's counters.)"""
    if exitcode is None:
        return "crash"
    if oom_exit is not None and exitcode == oom_exit:
        return "oom"
    if exitcode < 0 and -exitcode in _INTERRUPTS:
        return "interrupted"
    if exitcode > 128 and exitcode - 128 in _INTERRUPTS:
        return "interrupted"
    return "crash"


def settle(
    future: cf.Future[Any], *, result: Any = None, exception: BaseException | None = None
) -> None:
    """Resolve ``future`` unless it already is (timed out or cancelled meanwhile)."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except cf.InvalidStateError:
        pass
