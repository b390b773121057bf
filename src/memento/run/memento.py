"""The front door and the plan: matrix -> configs -> keys -> plan.

:class:`Memento` validates its arguments; ``plan`` expands the matrix once, computes every key
and classifies each config with one bulk look-up in the store; ``run`` prints the plan for a
dry run, or hands it to :mod:`memento.run.driver`, which runs what is missing and writes every
outcome as it arrives.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from memento._util.checks import positive_int_or_none, timeout_or_none
from memento.exceptions import CacheMiss
from memento.keys.encoding import KeyMaker, experiment_name
from memento.keys.fingerprint import code_fingerprint, is_stale
from memento.matrix.configs import Config, generate_configurations
from memento.results.result import ResultList
from memento.run.driver import LOAD_COLUMNS
from memento.store.sqlite import Store, default_store_path

logger = logging.getLogger("memento")

State = Literal["cached", "failed", "new", "stale"]
_PLAN_COLUMNS = ("status", "fingerprint")


@dataclass
class Plan:
    """What a run will do: each config's key and state, in matrix order."""

    configs: list[Config]
    keys: list[str]
    states: list[State]
    store_path: str
    experiment: str
    #: Stored rows read while planning (``LOAD_COLUMNS``), reused by the run.
    rows: dict[str, tuple[Any, ...]] | None = None
    #: The experiment's current code fingerprint.
    fingerprint: str = ""
    #: What happens to stale results: see ``Memento(on_code_change=...)``.
    on_code_change: str = "warn"
    #: The hash of the experiment's identity (see ``KeyMaker.identity``).
    identity: str = ""

    def count(self, state: State) -> int:
        return sum(1 for s in self.states if s == state)

    def summary(self) -> str:
        labels: tuple[tuple[State, str], ...] = (
            ("cached", "cached"),
            ("failed", "failed before"),
            ("stale", "stale"),
            ("new", "new"),
        )
        parts = [f"{self.count(s)} {label}" for s, label in labels]
        return f"{len(self.keys)} configs: " + ", ".join(parts)

    def lines(self) -> list[str]:
        """One line per config, with its state, as a dry run prints them."""
        stale = "stale: rerun" if self.on_code_change == "rerun" else "stale: reuse"
        labels = {"cached": "cached", "failed": "failed before", "new": "new", "stale": stale}
        return [
            f"  [{labels[state]:>13}] {config}\n"
            for config, state in zip(self.configs, self.states)
        ]


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
    :param retries: extra attempts before an experiment is recorded as failed.
    :param version: becomes part of every key: bump it to invalidate results on purpose.
    :param progress: show live progress on stderr while running (``False`` turns it off).
    :param on_code_change: what to do with stored results whose code fingerprint differs from
        the experiment's current code (see docs/cli.md, "Stale results"): ``"warn"`` (the
        default) reuses them and warns once with their count; ``"rerun"`` computes them again;
        ``"ignore"`` reuses them silently.
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
    ) -> None:
        positive_int_or_none("num_workers", num_workers)
        timeout = timeout_or_none(timeout)
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
            # A provider that is none fails here, not when the first run starts; the
            # notifications package is imported only by those who use it.
            from memento.notifications import NotificationDispatcher

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
        self._matrices: list[dict[str, Any]] = []

    # -- planning --------------------------------------------------------------------------
    def plan(
        self,
        matrix: Mapping[str, Any],
        cache_path: str | os.PathLike[str] | None = None,
        *,
        _keep_rows: bool = False,
    ) -> Plan:
        """Expand ``matrix`` and classify each config against the store, running nothing."""
        # Materialised once here; every later step walks this list.
        configs = list(generate_configurations(matrix))
        keymaker = KeyMaker(self.func, self.version)
        keys = [keymaker.key(c._params, c.settings) for c in configs]
        path = default_store_path(cache_path)
        found: dict[str, tuple[Any, ...]] = {}
        if path.is_file():
            with Store(path, readonly=True) as store:
                # One bulk read; a real run also takes the stored values along.
                found = store.lookup(keys, LOAD_COLUMNS if _keep_rows else _PLAN_COLUMNS)
        fingerprint = code_fingerprint(self.func)
        states: list[State] = []
        for key in keys:
            row = found.get(key)
            if row is None:
                states.append("new")
            elif row[0] == "failed":
                states.append("failed")
            elif is_stale(row[1], fingerprint):
                states.append("stale")
            else:
                states.append("cached")
        return Plan(
            configs,
            keys,
            states,
            str(path),
            experiment_name(self.func),
            found if _keep_rows else None,
            fingerprint=fingerprint,
            on_code_change=self.on_code_change,
            identity=keymaker.identity,
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
        :param cache_path: the store's SQLite file; when ``None`` or ``""``, defaults to
            ``$MEMENTO_CACHE_PATH``, else ``memento.sqlite`` in the working directory. An empty
            file is a new store. A memento-ml 1.2 store is left untouched and raises
            :class:`~memento.exceptions.LegacyStoreError` (see ``memento import-1.2``).
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
        plan = self.plan(matrix, cache_path, _keep_rows=not dry_run)
        if dry_run:
            _print_plan(plan)
            return None
        if force_cache:
            for config, state in zip(plan.configs, plan.states):
                if state in ("new", "failed"):
                    raise CacheMiss(config)
        from memento.run.driver import _Run

        return _Run(
            self, plan, force_run, notify_on_complete, raise_on_failure, force_cache
        ).execute()

    # -- dependent matrices ----------------------------------------------------------------
    def add_matrix(self, matrix: dict[str, Any]) -> None:
        """Add a matrix for :meth:`run_all`; it needs an ``"id"`` and ``"dependencies"``."""
        from memento.run.run_all import check_matrix

        check_matrix(matrix, self._matrices)
        self._matrices.append(matrix)

    def run_all(self, **run_kwargs: Any) -> dict[Any, ResultList | None] | None:
        """Run the added matrices in dependency order; see :mod:`memento.run.run_all`."""
        from memento.run.run_all import run_all

        return run_all(self, self._matrices, run_kwargs)


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
    out.write(f"Plan for {plan.experiment}: {plan.summary()} (store: {plan.store_path})\n")
    out.writelines(plan.lines())
    out.write("Exiting due to dry run\n")
    out.flush()


__all__ = ["Memento", "Plan"]
