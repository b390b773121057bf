"""What a run asks of the machine: BLAS/OpenMP threads per experiment, GPUs, a memory limit,
and which failures it retries.

:func:`plan_hardware` is called by ``Memento.run`` before the store is opened, so that a
request nothing can honour (GPUs where none is visible, a memory limit on threads) fails before
anything runs; it also makes the executor, since GPUs decide how many experiments may run at
once. The driver reads the resulting :class:`Hardware` when it builds each job.

Example::

    hardware, executor, owned = plan_hardware(settings)
    hardware.threads       # 1 on a 2-core machine with 2 workers
    hardware.gpu_slots     # GpuSlots over CUDA_VISIBLE_DEVICES, or None
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from memento._util.cpus import available_cpus
from memento.exceptions import FAILURE_KINDS, TRANSIENT_KINDS
from memento.executors.base import Executor
from memento.executors.local import ProcessExecutor, make_executor
from memento.run.settings import RunSettings
from memento.worker.resources import GpuSlots, visible_gpus
from memento.worker.resources import default_threads as share_of_cpus

#: An ``oom`` retry asks for at most this many times the first memory request.
MAX_MEMORY_SCALE = 8.0

RetryPolicy = frozenset[str] | Callable[[BaseException], bool]


@dataclass
class Hardware:
    """The resources of one run, as the driver hands them to each job."""

    #: BLAS/OpenMP threads per experiment (``None``: pools left alone; ``0``: each worker's
    #: own CPUs, on engines whose jobs have CPUs of their own).
    threads: int | None = None
    #: The GPUs the driver hands out (engines that do not place GPUs themselves), or ``None``.
    gpu_slots: GpuSlots | None = None
    #: GPUs per experiment for engines that place them (Slurm, Ray), or ``None``.
    gpu_request: float | None = None
    #: Bytes each experiment's process tree may use, or ``None``.
    memory_limit: int | None = None


def retry_policy(retry_on: Any) -> RetryPolicy:
    """``Memento(retry_on=...)`` checked: ``None`` (the transient kinds), a kind, kinds, or a
    callable ``(failure) -> bool``."""
    if retry_on is None:
        return TRANSIENT_KINDS
    if callable(retry_on):
        return retry_on  # type: ignore[no-any-return]
    kinds = [retry_on] if isinstance(retry_on, str) else retry_on
    if not isinstance(kinds, Iterable):
        raise TypeError(
            f"retry_on must be failure kinds (a set of {', '.join(FAILURE_KINDS)}), a callable "
            f"(failure) -> bool, or None, got {retry_on!r}"
        )
    chosen = []
    for kind in kinds:
        if kind not in FAILURE_KINDS:
            import difflib  # on first use: only a mistyped kind needs it

            close = difflib.get_close_matches(str(kind), FAILURE_KINDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"retry_on names an unknown failure kind {kind!r}{hint}; the kinds are "
                f"{', '.join(FAILURE_KINDS)}"
            )
        chosen.append(kind)
    return frozenset(chosen)


def should_retry(policy: RetryPolicy, failure: BaseException, kind: str) -> bool:
    """Whether ``policy`` retries ``failure`` (of ``kind``). A callable that raises is a bug
    in the policy: it is reported, and the failure is not retried."""
    if isinstance(policy, frozenset):
        return kind in policy
    try:
        return bool(policy(failure))
    except Exception as exc:
        import logging

        logging.getLogger("memento").warning(
            "retry_on raised %s: %s; not retrying %s", type(exc).__name__, exc,
            getattr(failure, "config", "the experiment"),
        )  # fmt: skip
        return False


def plan_hardware(
    settings: RunSettings, *, runs_something: bool = True
) -> tuple[Hardware, Executor, bool]:
    """The run's :class:`Hardware`, its executor, and whether the run owns that executor.

    Raises ``ValueError`` for what cannot be honoured: GPUs where none is visible or on
    threads, a memory limit on threads, a request the engine refuses
    (:meth:`Executor.check_resources`).
    """
    spec = settings.executor
    gpus = settings.gpus_per_experiment if runs_something else None
    memory = settings.memory_limit if runs_something else None
    slots: GpuSlots | None = None
    if isinstance(spec, Executor):
        executor, owned = spec, False
        if gpus is not None and not executor.places_gpus:
            _needs_processes(executor, "gpus_per_experiment")
            slots = GpuSlots(visible_gpus(), gpus)
    elif gpus is not None:
        if spec != "process":
            raise ValueError(
                f"gpus_per_experiment needs worker processes (executor='process' or a cluster "
                f"engine), not executor={spec!r}: each experiment's CUDA_VISIBLE_DEVICES is set "
                "in a process of its own"
            )
        slots = GpuSlots(visible_gpus(), gpus)
        workers = settings.num_workers
        workers = slots.capacity if workers is None else min(workers, slots.capacity)
        # A fresh process per experiment: CUDA reads CUDA_VISIBLE_DEVICES once per process,
        # so a reused worker would keep the GPUs of its first experiment.
        executor, owned = ProcessExecutor(workers, max_tasks=1), True
    else:
        executor, owned = make_executor(spec, settings.num_workers)
    if memory is not None:
        _needs_processes(executor, "memory_limit")
    if runs_something:
        executor.check_resources(gpus_per_experiment=gpus, memory_limit=memory)
    hardware = Hardware(
        threads=default_threads(settings, executor),
        gpu_slots=slots,
        gpu_request=gpus if executor.places_gpus else None,
        memory_limit=memory,
    )
    return hardware, executor, owned


def default_threads(settings: RunSettings, executor: Executor) -> int | None:
    """``threads_per_experiment`` resolved: ``"auto"`` is ``max(1, cpus // workers)``, or
    ``0`` (each job's own CPUs) on engines whose jobs have CPUs of their own."""
    threads = settings.threads_per_experiment
    if threads != "auto":
        return threads
    if executor.own_cpus:
        return 0
    return share_of_cpus(available_cpus(), executor.max_workers)


def _needs_processes(executor: Executor, what: str) -> None:
    if executor.in_process:
        raise ValueError(
            f"{what} needs worker processes (executor='process' or a cluster engine); the "
            f"{executor.name} executor runs experiments in this process"
        )


__all__ = [
    "MAX_MEMORY_SCALE",
    "Hardware",
    "RetryPolicy",
    "default_threads",
    "plan_hardware",
    "retry_policy",
    "should_retry",
]
