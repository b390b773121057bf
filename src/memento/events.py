"""Typed events a run emits, in the driver process only, for notifications and progress.

Providers receive them through :meth:`memento.notifications.NotificationProvider.notify`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class RunStarted:
    """A run is about to start: the plan's counts."""

    total: int
    to_run: int
    cached: int
    failed_before: int
    store_path: str
    experiment: str = ""


@dataclass(frozen=True)
class ExperimentFinished:
    """One experiment ran and succeeded (cached results emit no event)."""

    config: Any
    key: str
    runtime: timedelta
    attempts: int = 1


@dataclass(frozen=True)
class ExperimentFailed:
    """One experiment failed after all its attempts."""

    config: Any
    key: str
    exc_type: str
    message: str
    traceback: str
    attempts: int = 1


@dataclass(frozen=True)
class RunFinished:
    """A run (or a ``run_all`` of several matrices) is over."""

    done: int
    cached: int
    failed: int
    elapsed: timedelta
    store_path: str
    failures: tuple[ExperimentFailed, ...] = field(default=())

    @classmethod
    def since(
        cls,
        started: float,
        *,
        done: int,
        cached: int,
        failures: Iterable[ExperimentFailed],
        store_path: object = "",
    ) -> RunFinished:
        """The event for a run that began at ``started`` (a ``time.monotonic()`` reading) and
        ends now; ``failed`` is the number of ``failures``, ``store_path`` is made a string.

        Example::

            started = time.monotonic()
            ...
            notifier.emit(RunFinished.since(started, done=8, cached=2, failures=[]))
        """
        failed = tuple(failures)
        return cls(
            done=done,
            cached=cached,
            failed=len(failed),
            elapsed=timedelta(seconds=time.monotonic() - started),
            store_path=str(store_path),
            failures=failed,
        )


Event = RunStarted | ExperimentFinished | ExperimentFailed | RunFinished

__all__ = ["Event", "ExperimentFailed", "ExperimentFinished", "RunFinished", "RunStarted"]
