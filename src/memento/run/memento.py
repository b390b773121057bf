"""The front door: ``Memento(experiment).run(matrix)``.

:class:`Memento` validates its options; ``plan`` hands the matrix to :mod:`memento.plan`, which
expands it once, computes every key and classifies each config with one bulk look-up in the
store; ``run`` prints the plan for a dry run, or freezes its options and arguments into a
:class:`~memento.run.settings.RunSettings` and hands both to the
:class:`~memento.run.driver.Driver`, which runs what is missing and writes every outcome as it
arrives. ``add_matrix`` and ``run_all`` go to :mod:`memento.run.run_all`.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from memento._util.checks import positive_int_or_none, timeout_or_none
from memento._util.sizes import parse_memory
from memento.exceptions import CacheMiss
from memento.notifications.base import NotificationDispatcher
from memento.plan.planning import Plan, make_plan
from memento.results.result import ResultList
from memento.run.driver import Driver
from memento.run.hardware import plan_hardware, retry_policy
from memento.run.run_all import check_matrix, run_all
from memento.run.settings import RunSettings
from memento.store.backends import open_store
from memento.store.leases import DEFAULT_LEASE_TIMEOUT
from memento.worker.resources import check_gpus_per_experiment, check_threads

logger = logging.getLogger("memento")


class Memento:
    """Runs an experiment over a configuration matrix, in parallel, durably.

    Example::

        def experiment(context, config):
            return train(config.model, config.dataset, **config.settings)

        matrix = {
            "parameters": {"model": [SVC, Perceptron], "dataset": ["mnist", "cifar10"]},
            "settings": {"regularization": 0.1},
            "exclude": [{"model": SVC, "dataset": "cifar10"}],
        }
        results = Memento(experiment).run(matrix)

    :param func: any callable ``(context, config)``: function, lambda, class, bound method,
        ``functools.partial``, defined in a module, in ``__main__`` or in a notebook.
    :param notification_provider: a :class:`~memento.notifications.NotificationProvider` (or a
        list of them); it stays in this process and receives every event.
    :param num_workers: parallel workers; defaults to the CPUs this process may use.
    :param executor: ``"process"`` (crash-isolated worker processes, the default),
        ``"thread"``, ``"inline"`` (in this process, one at a time, for debuggers), a
        :class:`~memento.executors.Executor` or any ``concurrent.futures.Executor``.
    :param timeout: seconds per experiment; when it runs out the experiment is stopped (its
        worker killed and replaced) and recorded as failed with a timeout error.
    :param retries: extra attempts of a failed experiment before it is recorded as failed,
        for the failures ``retry_on`` names. (memento-ml 1.2 had no retries.)
    :param version: becomes part of every key: bump it to invalidate results on purpose.
    :param progress: show live progress on stderr while running (``False`` turns it off).
    :param on_code_change: what to do with stored results whose code fingerprint differs from
        the experiment's current code (see docs/cli.md, "Stale results"): ``"warn"`` (the
        default) reuses them and warns once with their count; ``"rerun"`` computes them again;
        ``"ignore"`` reuses them silently.
    :param lease_timeout: seconds after which an experiment claimed by a driver that stopped
        sending heartbeats (a dead or frozen process on another host) may be claimed by
        another driver (default 60; a dead driver on this host is noticed at once). See
        docs/store.md, "Several drivers, one grid".
    :param output_dir: the directory that holds each experiment's own folder
        (``context.output_dir``, ``<output_dir>/<key>``). Default: ``outputs/`` in the store's
        side directory (``<store>.d/outputs``); a server store (PostgreSQL) keeps none unless
        one is named here (a directory every worker can reach).
    :param threads_per_experiment: the threads each experiment's BLAS and OpenMP pools
        (numpy, scipy, scikit-learn, PyTorch's CPU ops) are capped at, so that workers do not
        oversubscribe the CPUs; ``"auto"`` (the default) gives each ``max(1, cpus //
        num_workers)``, ``None`` leaves the pools alone. ``context.threads`` tells the
        experiment its share. See docs/hardware.md.
    :param gpus_per_experiment: GPUs given to each experiment: a positive int, or a fraction
        ``1/k`` (``0.5``: two experiments share one GPU), from those visible to this process
        (``CUDA_VISIBLE_DEVICES``, else what ``nvidia-smi -L`` lists). Each experiment sees
        only its own in ``CUDA_VISIBLE_DEVICES`` and ``context.gpus``; no more run at once
        than the GPUs allow. With no GPU visible, ``run`` fails before anything runs. On Slurm
        and Ray it becomes each job's GPU request.
    :param memory_limit: the memory each experiment's process tree may use, in bytes or as a
        string (``"8GiB"``, ``"512MiB"``); one that goes over it is stopped and recorded as an
        ``oom`` failure. Needs process workers (or a cluster engine, where it becomes the
        job's memory request).
    :param retry_on: which failures ``retries`` applies to: a set of kinds (``"error"``,
        ``"timeout"``, ``"crash"``, ``"oom"``, ``"interrupted"``, ``"infrastructure"``), or a
        callable that gets the failure (an exception with ``.kind``, ``.config``,
        ``.attempts``) and returns whether to retry. Default: the transient kinds only
        (``crash``, ``oom``, ``infrastructure``, ``interrupted``); an ``error`` or a
        ``timeout`` usually repeats.
    :param retry_memory_factor: how much more memory an ``oom`` retry asks of an engine that
        allocates memory per job (Slurm, Ray): ``2`` doubles it each time, up to 8 times the
        first request.
    :param max_failures: stop submitting new experiments after this many failures; those
        running finish, the rest are reported as not run (``ResultList.not_run``) and are run
        by the next ``run()``.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        notification_provider: Any = None,
        num_workers: int | None = None,
        *,
        executor: Any = "process",
        timeout: float | None = None,
        retries: int = 0,
        version: str | None = None,
        progress: bool = True,
        on_code_change: Literal["warn", "rerun", "ignore"] = "warn",
        lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
        output_dir: str | os.PathLike[str] | None = None,
        threads_per_experiment: int | Literal["auto"] | None = "auto",
        gpus_per_experiment: float | None = None,
        memory_limit: int | str | None = None,
        retry_on: Iterable[str] | str | Callable[[BaseException], bool] | None = None,
        retry_memory_factor: float = 2.0,
        max_failures: int | None = None,
    ) -> None:
        positive_int_or_none("num_workers", num_workers)
        positive_int_or_none("max_failures", max_failures)
        if threads_per_experiment != "auto":
            check_threads(threads_per_experiment)
        self.threads_per_experiment = threads_per_experiment
        self.gpus_per_experiment = check_gpus_per_experiment(gpus_per_experiment)
        self.memory_limit = parse_memory(memory_limit, "memory_limit")
        self.retry_on = retry_policy(retry_on)
        if (
            isinstance(retry_memory_factor, bool)
            or not isinstance(retry_memory_factor, (int, float))
            or not retry_memory_factor >= 1
        ):
            raise ValueError(
                f"retry_memory_factor must be a number >= 1, got {retry_memory_factor!r}"
            )
        self.retry_memory_factor = float(retry_memory_factor)
        self.max_failures = max_failures
        if output_dir is not None and not isinstance(output_dir, (str, os.PathLike)):
            raise TypeError(f"output_dir must be a path or None, got {output_dir!r}")
        timeout = timeout_or_none(timeout)
        lease = timeout_or_none(lease_timeout, "lease_timeout")
        if lease is None:
            raise ValueError("lease_timeout must be a positive number of seconds, got None")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if version is not None and not isinstance(version, str):
            raise TypeError(f"version must be a str or None, got {version!r}")
        if isinstance(executor, str) and executor not in ("process", "thread", "inline"):
            raise ValueError(
                f"executor must be 'process', 'thread', 'inline', a memento Executor or a "
                f"concurrent.futures.Executor, got {executor!r}"
            )
        if notification_provider is not None:
            # A provider that is none fails here, not when the first run starts.
            NotificationDispatcher(notification_provider)
        _check_signature(func)
        self.func = func
        self.notification_provider = notification_provider
        self.num_workers = num_workers
        self.executor = executor
        self.timeout = timeout
        self.retries = retries
        self.version = version
        self.progress = progress
        if on_code_change not in ("warn", "rerun", "ignore"):
            raise ValueError(
                f"on_code_change must be 'warn', 'rerun' or 'ignore', got {on_code_change!r}"
            )
        self.on_code_change = on_code_change
        self.lease_timeout = lease
        self.output_dir = os.path.abspath(os.fspath(output_dir)) if output_dir else None
        self._matrices: list[dict[str, Any]] = []

    # -- planning --------------------------------------------------------------------------
    def plan(
        self, matrix: Mapping[str, Any], cache_path: str | os.PathLike[str] | None = None
    ) -> Plan:
        """Expand ``matrix`` and classify each config against the store, running nothing."""
        return make_plan(
            self.func,
            matrix,
            cache_path,
            version=self.version,
            on_code_change=self.on_code_change,
        )

    # -- running ---------------------------------------------------------------------------
    def run(
        self,
        matrix: Mapping[str, Any],
        dry_run: bool = False,
        force_run: bool = False,
        force_cache: bool = False,
        cache_path: str | os.PathLike[str] | None = None,
        notify_on_complete: bool = True,
        *,
        raise_on_failure: bool = True,
    ) -> ResultList | None:
        """Run every config of ``matrix`` that has no stored result; return all results.

        :param dry_run: print the plan (each config with its state) and return ``None``,
            running nothing and creating no store.
        :param force_run: recompute everything, ignoring stored results.
        :param force_cache: run nothing; raise :class:`~memento.exceptions.CacheMiss` naming
            the first config without a stored result.
        :param cache_path: the store's SQLite file, or a PostgreSQL URL
            (``postgresql://user@host:5432/dbname``, the ``postgres`` extra); when ``None`` or
            ``""``, defaults to ``$MEMENTO_CACHE_PATH``, else ``memento.sqlite`` in the working
            directory. An empty file is a new store. A memento-ml 1.2 store is left untouched
            and raises :class:`~memento.exceptions.LegacyStoreError` (see ``memento
            import-1.2``).
        :param notify_on_complete: send the end-of-run notification.
        :param raise_on_failure: when experiments failed, raise
            :class:`~memento.exceptions.AggregateException` at the end (the default). With
            ``False``, return every result instead; failed ones have ``ok == False`` and
            ``error`` set (see ``ResultList.failures``).
        :returns: a :class:`~memento.results.result.ResultList` in matrix order, or ``None`` for a
            dry run.
        """
        if force_run and force_cache:
            raise ValueError("force_run=True and force_cache=True contradict each other")
        # A real run takes the stored values along in the plan's one look-up.
        plan = make_plan(
            self.func,
            matrix,
            cache_path,
            version=self.version,
            on_code_change=self.on_code_change,
            keep_rows=not dry_run,
        )
        if dry_run:
            _print_plan(plan)
            return None
        if force_cache:
            for config, state in zip(plan.configs, plan.states):
                if state in ("new", "failed"):
                    raise CacheMiss(config)
        settings = self._settings(
            force_run=force_run,
            force_cache=force_cache,
            notify_on_complete=notify_on_complete,
            raise_on_failure=raise_on_failure,
        )
        # The executor and the hardware first: a bad executor, or GPUs asked for where none is
        # visible, is an error before the store is opened. (Pools start lazily, so an
        # executor made for nothing holds nothing.)
        hardware, executor, owned = plan_hardware(settings, runs_something=not force_cache)
        store = open_store(plan.store_path, readonly=force_cache)
        notifier = NotificationDispatcher(settings.notification_provider)
        driver = Driver(plan, settings, store, notifier, executor, owns_executor=owned)
        driver.hardware = hardware
        return driver.execute()

    def _settings(
        self,
        *,
        force_run: bool,
        force_cache: bool,
        notify_on_complete: bool,
        raise_on_failure: bool,
    ) -> RunSettings:
        """This Memento's options and one run's arguments, frozen for that run."""
        return RunSettings(
            func=self.func,
            executor=self.executor,
            num_workers=self.num_workers,
            notification_provider=self.notification_provider,
            timeout=self.timeout,
            retries=self.retries,
            version=self.version,
            progress=self.progress,
            on_code_change=self.on_code_change,
            lease_timeout=self.lease_timeout,
            output_dir=self.output_dir,
            force_run=force_run,
            force_cache=force_cache,
            notify_on_complete=notify_on_complete,
            raise_on_failure=raise_on_failure,
            threads_per_experiment=self.threads_per_experiment,
            gpus_per_experiment=self.gpus_per_experiment,
            memory_limit=self.memory_limit,
            retry_on=self.retry_on,
            retry_memory_factor=self.retry_memory_factor,
            max_failures=self.max_failures,
        )

    # -- dependent matrices ----------------------------------------------------------------
    def add_matrix(self, matrix: dict[str, Any]) -> None:
        """Add a matrix for :meth:`run_all`; it needs an ``"id"`` and ``"dependencies"``."""
        check_matrix(matrix, self._matrices)
        self._matrices.append(matrix)

    def run_all(self, **run_kwargs: Any) -> dict[Any, ResultList | None] | None:
        """Run the added matrices in dependency order; see :mod:`memento.run.run_all`."""
        return run_all(
            self.run,
            self.plan,
            self._matrices,
            run_kwargs,
            notification_provider=self.notification_provider,
        )


def _check_signature(func: Any) -> None:
    """Raise ``TypeError`` unless ``func`` can be called as ``func(context, config)``.

    Checked at construction so that a wrong signature fails before any store or worker
    exists, instead of failing every cell of the grid. Callables whose signature Python
    cannot tell (some builtins and C extensions) are let through.
    """
    if not callable(func):
        raise TypeError(
            f"Memento needs a callable experiment(context, config), got "
            f"{type(func).__name__}: {func!r}"
        )
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(None, None)
    except TypeError as exc:
        name = getattr(func, "__qualname__", None) or repr(func)
        raise TypeError(
            f"The experiment {name}{signature} cannot be called as experiment(context, "
            f"config) ({exc}); define it as def {getattr(func, '__name__', 'experiment')}"
            f"(context, config)"
        ) from None


def _print_plan(plan: Plan) -> None:
    out = sys.stdout
    out.write(f"Plan for {plan.experiment}: {plan.summary()} (store: {plan.store_name})\n")
    out.writelines(plan.lines())
    out.write("Exiting due to dry run\n")
    out.flush()


__all__ = ["Memento", "Plan"]
