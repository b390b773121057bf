"""What one ``Memento.run`` was asked to do, fixed for the whole run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from memento.exceptions import TRANSIENT_KINDS


@dataclass(frozen=True)
class RunSettings:
    """The options of a :class:`~memento.run.memento.Memento` and the arguments of one of its
    ``run`` calls, made once by ``Memento.run`` and read by the driver; frozen, so that nothing
    changes them while experiments run.

    Example::

        settings = RunSettings(experiment, retries=2, force_run=True)
        settings.retries  # 2
    """

    #: The experiment, ``(context, config) -> value``.
    func: Callable[..., Any]
    #: ``"process"``, ``"thread"``, ``"inline"``, an Executor or a concurrent.futures one.
    executor: Any = "process"
    num_workers: int | None = None
    notification_provider: Any = None
    #: Seconds per experiment, or ``None``.
    timeout: float | None = None
    #: Extra attempts before an experiment is recorded as failed.
    retries: int = 0
    version: str | None = None
    #: Show the live display on stderr.
    progress: bool = True
    on_code_change: Literal["warn", "rerun", "ignore"] = "warn"
    #: Seconds a claimed experiment stays claimed without a heartbeat (memento.store.leases).
    lease_timeout: float = 60.0
    #: Where each experiment's output folder goes (``None``: the store's side directory).
    output_dir: str | None = None
    #: Recompute everything, ignoring stored results.
    force_run: bool = False
    #: Run nothing, write nothing: serve stored results only.
    force_cache: bool = False
    #: Send the end-of-run notification.
    notify_on_complete: bool = True
    #: Raise an AggregateException at the end when experiments failed.
    raise_on_failure: bool = True
    #: BLAS/OpenMP threads per experiment: ``"auto"`` (CPUs // workers), a number, or ``None``
    #: (pools left alone).
    threads_per_experiment: int | Literal["auto"] | None = "auto"
    #: GPUs per experiment: a positive int, a fraction 1/k, or ``None``.
    gpus_per_experiment: float | None = None
    #: Bytes of memory each experiment's process tree may use, or ``None``.
    memory_limit: int | None = None
    #: Which failures ``retries`` applies to: kinds, or a callable ``(failure) -> bool``.
    retry_on: frozenset[str] | Callable[[BaseException], bool] = TRANSIENT_KINDS
    #: How much more memory an ``oom`` retry asks of an engine that allocates it (Slurm).
    retry_memory_factor: float = 2.0
    #: Stop submitting after this many failures (``None``: never).
    max_failures: int | None = None


__all__ = ["RunSettings"]
