"""The provider seam, the built-in console and file providers, and the dispatcher."""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import IO, Any

from memento._util.text import truncate
from memento.events import (
    Event,
    ExperimentFailed,
    ExperimentFinished,
    RunFinished,
    SystematicFailure,
)
from memento.exceptions import FAILURE_KINDS

logger = logging.getLogger("memento.notifications")

#: Limits that keep a message readable however badly a run goes.
MAX_FAILURES_LISTED = 20
MAX_MESSAGE_CHARS = 300
MAX_CONFIG_CHARS = 500
TRACEBACK_LINES = 12
TRACEBACKS_SHOWN = 5


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in ``... [truncated]`` when it was cut."""
    return truncate(text, limit, marker=_CUT)


_CUT = " ... [truncated]"


def failure_line(failure: ExperimentFailed) -> str:
    """One line for a failure, ``[kind] config: ExcType: message``, each part clipped.

    The kind comes first so that a column of them reads at a glance (``[timeout]``,
    ``[oom]``); the config and the message are cut to :data:`MAX_CONFIG_CHARS` and
    :data:`MAX_MESSAGE_CHARS`.

    Example::

        failure_line(event)  # "[timeout] Config(lr=0.1): ExperimentTimeout: ran past 60 s"
    """
    config = clip(safe_str(failure.config), MAX_CONFIG_CHARS)
    return f"[{failure.kind}] {config}: {failure_error(failure)}"


def failure_error(failure: ExperimentFailed) -> str:
    """``ExcType: message`` of a failure, cut to :data:`MAX_MESSAGE_CHARS`."""
    return clip(f"{failure.exc_type}: {failure.message}", MAX_MESSAGE_CHARS)


def kind_counts(failures: Iterable[ExperimentFailed]) -> str:
    """How many failures of each kind, most first (ties in :data:`FAILURE_KINDS` order):
    ``"3 error, 2 timeout"``; ``""`` for no failures.

    Example::

        f"{len(failures)} failed: {kind_counts(failures)}"  # "5 failed: 3 error, 2 timeout"
    """
    return format_kinds(Counter(failure.kind for failure in failures))


def format_kinds(counts: Mapping[str, int]) -> str:
    """``{"timeout": 2, "error": 3}`` as ``"3 error, 2 timeout"`` (see :func:`kind_counts`)."""
    order = {kind: i for i, kind in enumerate(FAILURE_KINDS)}
    kinds = sorted(
        (kind for kind, n in counts.items() if n > 0),
        key=lambda kind: (-counts[kind], order.get(kind, len(order)), kind),
    )
    return ", ".join(f"{counts[kind]} {kind}" for kind in kinds)


def safe_str(value: Any) -> str:
    """``str(value)``, or the default repr when that raises."""
    try:
        return str(value)
    except Exception:  # a config whose __str__ raises must not hide the failure
        return object.__repr__(value)


def systematic_line(event: SystematicFailure) -> str:
    """The one line console and file providers write for a systematic failure, with no
    newline in it: ``Systematic failure: 3 of 3 failures: ValueError at train.py:42: msg``.

    Example::

        print(systematic_line(event), file=sys.stderr)
    """
    message = clip(" ".join(event.message.split()), MAX_MESSAGE_CHARS)
    experiment = f" in {event.experiment}" if event.experiment else ""
    line = f"Systematic failure{experiment}: {event.text}"
    return f"{line}: {message}" if message else line


class NotificationProvider:
    """Receives the events of a run; subclass it and override :meth:`notify`.

    The default :meth:`notify` calls the no-argument methods of memento-ml 1.2, so providers
    written for 1.2 keep working: ``task_completed()`` for each experiment that ran and
    succeeded, ``task_failure()`` for each that failed, ``all_tasks_completed()`` at the end.
    Events 1.2 had no method for (:class:`~memento.events.RunStarted`,
    :class:`~memento.events.SystematicFailure`) are ignored by it.

    Example::

        from memento.events import ExperimentFailed

        class Pager(NotificationProvider):
            def notify(self, event):
                if isinstance(event, ExperimentFailed):
                    page_someone(f"{event.config}: {event.exc_type}: {event.message}")

        Memento(experiment, notification_provider=Pager())
    """

    def notify(self, event: Event) -> None:
        """Handle one event. The default maps events to the legacy 1.2 methods."""
        if isinstance(event, ExperimentFinished):
            self.task_completed()
        elif isinstance(event, ExperimentFailed):
            self.task_failure()
        elif isinstance(event, RunFinished):
            self.all_tasks_completed()
        # RunStarted and SystematicFailure: 1.2 had no method for them, so nothing is called.

    def tick(self) -> None:
        """Called now and then between events: send what rate limiting held back, if due."""

    def close(self) -> None:
        """Called once when the run is over, even if it was interrupted: send what is pending."""

    def task_completed(self) -> None:
        """Legacy (1.2): an experiment ran and succeeded. Does nothing by default."""

    def task_failure(self) -> None:
        """Legacy (1.2): an experiment failed. Does nothing by default."""

    def all_tasks_completed(self) -> None:
        """Legacy (1.2): the run is over. Does nothing by default."""


class DefaultNotificationProvider(NotificationProvider):
    """A provider that does nothing; 1.2 code subclasses it to override only some methods.

    Example::

        class Beep(DefaultNotificationProvider):
            def all_tasks_completed(self):
                print("\\a")
    """


class ConsoleNotificationProvider(DefaultNotificationProvider):
    """Prints ``Task completed``, ``Task failed`` and ``All tasks completed`` to stdout, as 1.2.

    A failure also prints one line to stderr naming its kind, the config and the error
    (``  [timeout] Config(lr=0.1): ExperimentTimeout: ...``), and a systematic failure one line
    to stderr (``  Systematic failure: 3 of 3 failures: ValueError at train.py:42: ...``).

    Example::

        Memento(experiment, notification_provider=ConsoleNotificationProvider())
    """

    def notify(self, event: Event) -> None:
        super().notify(event)
        if isinstance(event, ExperimentFailed):
            print(f"  {failure_line(event)}", file=sys.stderr)
        elif isinstance(event, SystematicFailure):
            print(f"  {systematic_line(event)}", file=sys.stderr)

    def task_completed(self) -> None:
        print("Task completed")

    def task_failure(self) -> None:
        print("Task failed")

    def all_tasks_completed(self) -> None:
        print("All tasks completed")


class FileSystemNotificationProvider(DefaultNotificationProvider):
    """Appends ``Task completed``, ``Task failed`` and ``All tasks completed`` lines to a file,
    as 1.2, and one ``Systematic failure: ...`` line when a run's first failures are all the
    same error (see :func:`systematic_line`).

    ``filepath`` is a path, opened in append mode for each line (so the file can be rotated or
    read while the run goes on), or an open text file, which is written to and flushed.

    Example::

        provider = FileSystemNotificationProvider("notifications.log")
    """

    def __init__(self, filepath: str | os.PathLike[str] | IO[str] | None = None) -> None:
        if filepath is None:
            filepath = "logs.txt"
        self._file: IO[str] | None = None
        self._path: str | os.PathLike[str] | None = None
        if isinstance(filepath, (str, os.PathLike)):
            self._path = filepath
        elif callable(getattr(filepath, "write", None)):
            self._file = filepath
        else:
            raise TypeError(
                f"FileSystemNotificationProvider needs a path or an open text file, "
                f"got {filepath!r}."
            )

    def notify(self, event: Event) -> None:
        super().notify(event)  # the 1.2 lines, unchanged
        if isinstance(event, SystematicFailure):
            self._write(systematic_line(event))

    def __repr__(self) -> str:
        target = self._file if self._file is not None else os.fspath(self._path or "")
        return f"{type(self).__name__}({target!r})"

    def _write(self, line: str) -> None:
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        else:
            assert self._path is not None
            with open(self._path, "a", encoding="utf-8") as file:
                file.write(line + "\n")

    def task_completed(self) -> None:
        self._write("Task completed")

    def task_failure(self) -> None:
        self._write("Task failed")

    def all_tasks_completed(self) -> None:
        self._write("All tasks completed")


# --- Dispatcher --------------------------------------------------------------------------------


class NotificationDispatcher:
    """Hands every event to every provider; a failing provider never hurts the run.

    The runner builds one in the driver process, calls :meth:`emit` for each event,
    :meth:`tick` every second or so while it waits, and :meth:`close` when the run is over
    (also after an error or Ctrl-C), all from one thread. An exception from a provider is logged
    once, as a warning on the ``memento.notifications`` logger; later ones at DEBUG level.

    Example::

        with NotificationDispatcher([ConsoleNotificationProvider(), email]) as notifications:
            notifications.emit(RunStarted(total=3, to_run=3, cached=0, failed_before=0,
                                          store_path="memento.sqlite"))
            ...
    """

    def __init__(
        self, providers: NotificationProvider | Iterable[NotificationProvider] | None = None
    ) -> None:
        if providers is None:
            items: list[Any] = []
        elif isinstance(providers, NotificationProvider) or not _is_many(providers):
            items = [providers]
        else:
            items = list(providers)
        self.providers: tuple[NotificationProvider, ...] = tuple(as_provider(p) for p in items)
        self._warned: set[int] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"NotificationDispatcher({list(self.providers)!r})"

    def __enter__(self) -> NotificationDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def emit(self, event: Event) -> None:
        """Give ``event`` to every provider's ``notify``."""
        for index, provider in enumerate(self.providers):
            self._call(index, provider, "notify", event)

    def tick(self) -> None:
        """Let rate-limited providers send what has become due. Cheap when nothing is."""
        for index, provider in enumerate(self.providers):
            self._call(index, provider, "tick")

    def close(self) -> None:
        """Send everything still pending. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        for index, provider in enumerate(self.providers):
            self._call(index, provider, "close")

    def _call(self, index: int, provider: NotificationProvider, method: str, *args: Any) -> None:
        call = getattr(provider, method, None)  # duck-typed providers may lack tick/close
        if call is None:
            return
        try:
            call(*args)
        except Exception as exc:
            reason = clip(f"{type(exc).__name__}: {exc}", 300)
            if index in self._warned:
                logger.debug("Notification provider %r failed again (%s).", provider, reason)
                return
            self._warned.add(index)
            logger.warning(
                "Notification provider %r failed in %s() (%s). The run goes on; later errors "
                "of this provider are logged at DEBUG level only.",
                provider,
                method,
                reason,
            )


def _is_many(providers: Any) -> bool:
    """A list of providers, not one provider that happens to be iterable."""
    if not isinstance(providers, Iterable) or isinstance(providers, (str, bytes)):
        return False
    return not callable(getattr(providers, "notify", None)) and not any(
        callable(getattr(providers, name, None)) for name in _LEGACY_METHODS
    )


_LEGACY_METHODS = ("task_completed", "task_failure", "all_tasks_completed")


class _DuckProvider(NotificationProvider):
    """Adapts an object that only has 1.2's three methods (it does not subclass the base)."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __repr__(self) -> str:
        return repr(self.target)  # warnings name the user's object, not this wrapper

    def _forward(self, method: str) -> None:
        call = getattr(self.target, method, None)
        if callable(call):
            call()

    def task_completed(self) -> None:
        self._forward("task_completed")

    def task_failure(self) -> None:
        self._forward("task_failure")

    def all_tasks_completed(self) -> None:
        self._forward("all_tasks_completed")

    def tick(self) -> None:
        self._forward("tick")

    def close(self) -> None:
        self._forward("close")


def as_provider(candidate: Any) -> NotificationProvider:
    """``candidate`` as a provider the dispatcher can call; ``TypeError`` if it is none.

    Accepted, as in memento-ml 1.2: any :class:`NotificationProvider`; any object with a
    ``notify(event)`` method; and any object with some of 1.2's ``task_completed()``,
    ``task_failure()`` and ``all_tasks_completed()`` (duck typing: it need not subclass
    anything), whose methods are then called in the driver process, one per event.

    Example::

        class Beeper:  # no base class
            def task_completed(self): print("\a", end="")
            def task_failure(self): print("\a\a", end="")
            def all_tasks_completed(self): print("done")

        as_provider(Beeper())  # accepted; Memento(..., notification_provider=Beeper()) too
    """
    if isinstance(candidate, NotificationProvider):
        return candidate
    if callable(getattr(candidate, "notify", None)):
        return candidate  # type: ignore[no-any-return]  # duck-typed: has notify(event)
    if any(callable(getattr(candidate, name, None)) for name in _LEGACY_METHODS):
        return _DuckProvider(candidate)
    raise TypeError(
        f"{candidate!r} is not a notification provider: give an object with a notify(event) "
        "method or memento-ml 1.2's task_completed(), task_failure() and "
        "all_tasks_completed() methods (subclassing memento.NotificationProvider gives both)."
    )
