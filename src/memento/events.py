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
    #: The failure's kind (:data:`memento.exceptions.FAILURE_KINDS`).
    kind: str = "error"
    #: Where it was raised, ``file.py:42`` (the innermost frame of its traceback), or ``""``.
    where: str = ""


@dataclass(frozen=True)
class SystematicFailure:
    """The first failures of a run are all the same error: the same kind, type and raising
    line. Emitted once, as soon as :attr:`count` of them are in (before the grid is over),
    so that a bug in every cell is known at once rather than after the whole grid ran."""

    #: How many failures share the error, and how many failures there are (equal when emitted).
    count: int
    failures: int
    kind: str
    exc_type: str
    #: ``file.py:42``, or ``""`` when the failure has no traceback (a crash, a timeout).
    where: str
    message: str
    experiment: str = ""
    store_path: str = ""

    @property
    def text(self) -> str:
        """``"3 of 3 failures: ValueError at train.py:42"``."""
        what = self.exc_type if self.kind == "error" else f"{self.kind} ({self.exc_type})"
        at = f" at {self.where}" if self.where else ""
        return f"{self.count} of {self.failures} failures: {what}{at}"


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


Event = RunStarted | ExperimentFinished | ExperimentFailed | SystematicFailure | RunFinished

__all__ = [
    "Event",
    "ExperimentFailed",
    "ExperimentFinished",
    "RunFinished",
    "RunStarted",
    "SystematicFailure",
]
