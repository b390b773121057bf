"""The base of providers that send messages: digests and rate limits, for any transport.

:class:`MessageProvider` turns the events of a run into :class:`Message` objects (a title and a
plain-text body) and hands each to :meth:`MessageProvider.send`; the e-mail, webhook and
Apprise providers are subclasses that only say how a message leaves. Write your own the same
way (see :class:`MessageProvider`).
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

from memento._util.text import format_seconds, tail
from memento.events import (
    Event,
    ExperimentFailed,
    ExperimentFinished,
    RunFinished,
    RunStarted,
    SystematicFailure,
)
from memento.notifications.base import (
    MAX_CONFIG_CHARS,
    MAX_FAILURES_LISTED,
    MAX_MESSAGE_CHARS,
    TRACEBACK_LINES,
    TRACEBACKS_SHOWN,
    DefaultNotificationProvider,
    clip,
    failure_error,
    format_kinds,
    kind_counts,
    safe_str,
)

logger = logging.getLogger("memento.notifications")


class Message(NamedTuple):
    """One message a :class:`MessageProvider` sends.

    ``title`` is one line (``[Memento] 3 tasks failed``), ``body`` plain text, never HTML;
    ``bad_news`` says some experiment failed (for services that colour failures); ``legacy`` is
    memento-ml 1.2's one-line body (``Task failed``) when the message is about one event of the
    kinds 1.2 knew, else ``""``.
    """

    title: str
    body: str
    bad_news: bool
    legacy: str = ""


@dataclass
class _Batch:
    """Events waiting for the next message; keeps counts of all, details of the first few."""

    failed: list[ExperimentFailed] = field(default_factory=list)
    finished: list[ExperimentFinished] = field(default_factory=list)
    n_failed: int = 0
    n_finished: int = 0
    #: Failures by kind, all of them (not only the ones kept in ``failed``).
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, event: ExperimentFailed | ExperimentFinished) -> None:
        if isinstance(event, ExperimentFailed):
            self.n_failed += 1
            self.kinds[event.kind] += 1
            if len(self.failed) < MAX_FAILURES_LISTED:
                self.failed.append(event)
        else:
            self.n_finished += 1
            if len(self.finished) < MAX_FAILURES_LISTED:
                self.finished.append(event)

    def __bool__(self) -> bool:
        return bool(self.n_failed or self.n_finished)


#: What memento-ml 1.2 sent for each of its three methods, word for word.
_LEGACY_MESSAGES = {
    "task_completed": Message("[Memento] Task completed", "Task completed", bad_news=False),
    "task_failure": Message("[Memento] Task failed", "Task failed", bad_news=True),
    "all_tasks_completed": Message(
        "[Memento] All tasks completed", "All tasks completed", bad_news=False
    ),
}


class MessageProvider(DefaultNotificationProvider):
    """Base of providers that send messages; a subclass overrides :meth:`send` and gets the rest.

    Events become :class:`Message` objects, batched and rate limited. With ``digest`` on (the
    default), only failures (as they happen) and the end-of-run summary are sent; otherwise
    successes too. At most one message leaves every ``min_interval`` seconds: events arriving in
    between are batched into the next one, sent by the next event or ``tick()`` once the
    interval is over. The summary and ``close()`` send at once, and so does a
    :class:`~memento.events.SystematicFailure` (the early warning that the first failures are
    all the same error): its own message, outside the digest and the rate limit, at most once
    per experiment and run however often it is emitted. Each failure is listed with its kind
    (``[timeout]``) and the summary counts them by kind. Bodies are cut to
    :attr:`max_body` characters. If :meth:`send` raises, a warning is logged once (later
    failures at DEBUG level), with the strings of :meth:`secrets` replaced by ``***``, and the
    run goes on.

    As in 1.2, each event of a run goes through ``task_completed()``, ``task_failure()`` or
    ``all_tasks_completed()``: a subclass that overrides one replaces what is sent for that
    event (and may call ``super()`` to send it too). Called directly, outside a run, each sends
    1.2's message at once (``[Memento] Task completed`` / ``Task completed``) and raises if it
    cannot be delivered.

    Example::

        class Chat(MessageProvider):
            max_body = 3_000

            def __init__(self, url, **options):
                super().__init__(**options)  # digest=True, min_interval=60.0
                self.url = url

            def send(self, message):
                requests.post(self.url, json={"text": f"{message.title}\\n{message.body}"},
                              timeout=10).raise_for_status()

            def secrets(self):
                return [self.url]  # never shown in a log record

        Memento(experiment, notification_provider=Chat(os.environ["CHAT_URL"]))
    """

    #: The longest body sent, in characters; longer ones are cut.
    max_body = 100_000

    def __init__(self, *, digest: bool = True, min_interval: float = 60.0) -> None:
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval!r}.")
        self.digest = digest
        self.min_interval = float(min_interval)
        self._batch = _Batch()
        self._run_failures = _Batch()
        self._next_send = 0.0
        self._started: RunStarted | None = None
        self._warned = False
        self._event: Event | None = None  # the event being handled, while notify() runs
        # (experiment, store) of the systematic failures sent in this run: each goes once.
        self._systematic: set[tuple[str, str]] = set()

    def send(self, message: Message) -> None:
        """Deliver one message now; raise on failure. Subclasses must override it."""
        raise NotImplementedError(f"{type(self).__name__} must override send(message)")

    def secrets(self) -> list[str]:
        """Strings that must never reach a log record (passwords, tokens, secret URLs)."""
        return []

    def notify(self, event: Event) -> None:
        if isinstance(event, RunStarted):  # run_all starts several runs, then finishes once
            self._started = event
        elif isinstance(event, SystematicFailure):  # no 1.2 method: sent here, at once
            self._send_systematic(event)
        else:
            if isinstance(event, ExperimentFailed):
                self._run_failures.add(event)
            self._event = event
            try:
                super().notify(event)  # the 1.2 method for it, which a subclass may override
            finally:
                self._event = None
            if isinstance(event, RunFinished):
                self._run_failures = _Batch()
                self._started = None
                self._systematic.clear()
        self.tick()

    def _send_systematic(self, event: SystematicFailure) -> None:
        started = self._started
        experiment = event.experiment or (started.experiment if started else "")
        store_path = event.store_path or (started.store_path if started else "")
        if (experiment, store_path) in self._systematic:
            return
        self._systematic.add((experiment, store_path))
        message = self._systematic_message(event, experiment, store_path)
        # Not through _deliver: the early warning neither waits for nor delays the digest.
        try:
            self.send(message._replace(body=clip(message.body, self.max_body)))
        except Exception as exc:
            self._report(exc)

    # The 1.2 methods: what is sent for each event, unless a subclass overrides them.

    def task_completed(self) -> None:
        """An experiment succeeded: sent unless in digest mode. Called directly, outside a
        run: sends 1.2's ``[Memento] Task completed`` at once."""
        if isinstance(self._event, ExperimentFinished):
            if not self.digest:
                self._batch.add(self._event)
        else:
            self._send_legacy("task_completed")

    def task_failure(self) -> None:
        """An experiment failed: sent as it happens (rate limited). Called directly, outside a
        run: sends 1.2's ``[Memento] Task failed`` at once."""
        if isinstance(self._event, ExperimentFailed):
            self._batch.add(self._event)
        else:
            self._send_legacy("task_failure")

    def all_tasks_completed(self) -> None:
        """The run is over: the summary, at once. Called directly, outside a run: sends 1.2's
        ``[Memento] All tasks completed`` at once."""
        if isinstance(self._event, RunFinished):
            self._batch = _Batch()  # the summary lists every failure held back
            self._deliver(self._summary(self._event))
        else:
            self._send_legacy("all_tasks_completed")

    def _send_legacy(self, method: str) -> None:
        message = _LEGACY_MESSAGES[method]
        if self._event is not None:
            self._deliver(message)  # from an override during a run: never raise into the run
        else:
            self.send(message)  # a direct call, as in 1.2: the caller sees any error

    def tick(self) -> None:
        if self._batch and time.monotonic() >= self._next_send:
            self._flush()

    def close(self) -> None:
        if self._batch:
            self._flush()
        self._systematic.clear()  # the run is over: the next one may warn again

    def _flush(self) -> None:
        batch, self._batch = self._batch, _Batch()
        self._deliver(self._batch_message(batch))

    def _deliver(self, message: Message) -> None:
        self._next_send = time.monotonic() + self.min_interval
        message = message._replace(body=clip(message.body, self.max_body))
        try:
            self.send(message)
        except Exception as exc:
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        reason = clip(_redact(f"{type(exc).__name__}: {exc}", self.secrets()), 300)
        if self._warned:
            logger.debug("%r could not send a notification (%s).", self, reason)
            return
        self._warned = True
        logger.warning(
            "%r could not send a notification (%s). The run goes on; later failures of this "
            "provider are logged at DEBUG level only.",
            self,
            reason,
        )

    # Message text. Plain text only, never HTML.

    def _batch_message(self, batch: _Batch) -> Message:
        legacy = ""
        if batch.n_failed == 1 and batch.n_finished == 0:
            title, legacy = "[Memento] Task failed", "Task failed"
        elif batch.n_failed == 0 and batch.n_finished == 1:
            title, legacy = "[Memento] Task completed", "Task completed"
        elif batch.n_failed == 0:
            title = f"[Memento] {batch.n_finished} tasks completed"
        else:
            title = f"[Memento] {_plural(batch.n_failed, 'task')} failed"
            if batch.n_finished:
                title += f", {batch.n_finished} completed"
        parts = []
        if batch.failed:
            parts.append(_failure_list(batch.failed, batch.n_failed))
        if batch.finished:
            lines = [f"{_plural(batch.n_finished, 'experiment')} completed:"]
            for done in batch.finished:
                config = clip(safe_str(done.config), MAX_CONFIG_CHARS)
                lines.append(f"- {config} ({_duration(done.runtime)})")
            if batch.n_finished > len(batch.finished):
                lines.append(f"... and {batch.n_finished - len(batch.finished)} more")
            parts.append("\n".join(lines))
        parts.append(self._footer())
        return Message(title, "\n\n".join(parts), batch.n_failed > 0, legacy)

    def _summary(self, event: RunFinished) -> Message:
        title = "[Memento] All tasks completed"
        if event.failed:
            title += f", {event.failed} failed"
        counts = f"done: {event.done}, cached: {event.cached}, failed: {event.failed}"
        if event.failed:
            kinds = self._summary_kinds(event)
            if kinds:
                counts += f" ({kinds})"
        parts = [f"Run finished in {_duration(event.elapsed)}.\n{counts}"]
        failures = list(event.failures) or self._run_failures.failed
        if failures:
            parts.append(_failure_list(failures[:MAX_FAILURES_LISTED], event.failed))
        parts.append(self._footer(event.store_path))
        return Message(title, "\n\n".join(parts), event.failed > 0, "All tasks completed")

    def _summary_kinds(self, event: RunFinished) -> str:
        """``"3 error, 2 timeout"`` for the run's failures: from the event when it lists them
        all, else from the failures this provider saw (which counts every one of them)."""
        if len(event.failures) >= event.failed:
            return kind_counts(event.failures)
        if self._run_failures.n_failed >= len(event.failures):
            return format_kinds(self._run_failures.kinds)
        return kind_counts(event.failures)

    def _systematic_message(
        self, event: SystematicFailure, experiment: str, store_path: str
    ) -> Message:
        title = f"[Memento] {experiment}: {event.text}" if experiment else f"[Memento] {event.text}"
        what = f"[{event.kind}] {clip(f'{event.exc_type}: {event.message}', MAX_MESSAGE_CHARS)}"
        lines = [
            f"The first {_plural(event.failures, 'failure')} of this run "
            + ("is" if event.failures == 1 else "are all")
            + " the same error, which may well fail every experiment:",
            "",
            what,
        ]
        if event.where:
            lines.append(f"raised at {event.where}")
        body = "\n".join(lines) + "\n\n" + self._footer(store_path, experiment)
        return Message(clip(" ".join(title.split()), 300), body, bad_news=True)

    def _footer(self, store_path: str = "", experiment: str = "") -> str:
        started = self._started
        lines = []
        experiment = experiment or (started.experiment if started is not None else "")
        if experiment:
            lines.append(f"Experiment: {experiment}")
        store_path = store_path or (started.store_path if started else "")
        if store_path:
            lines.append(f"Store: {store_path}")
        lines.append(f"Host: {socket.gethostname()}")
        return "\n".join(lines)


def _failure_list(failures: list[ExperimentFailed], total: int) -> str:
    shown = len(failures)
    header = f"{_plural(total, 'experiment')} failed"
    header += f" (the first {shown} are listed):" if total > shown else ":"
    blocks = [header]
    for i, failure in enumerate(failures):
        config = clip(safe_str(failure.config), MAX_CONFIG_CHARS)
        lines = [f"{i + 1}. [{failure.kind}] {config}", f"   {failure_error(failure)}"]
        if failure.attempts > 1:
            lines.append(f"   after {failure.attempts} attempts")
        if i < TRACEBACKS_SHOWN and failure.traceback.strip():
            lines.extend("   " + line for line in _tail(failure.traceback))
        elif failure.where:
            lines.append(f"   at {failure.where}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _tail(traceback: str) -> list[str]:
    # The innermost frames say where it broke.
    lines = tail(traceback.rstrip(), TRACEBACK_LINES, marker="...").splitlines()
    return [clip(line, MAX_MESSAGE_CHARS) for line in lines]


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _duration(elapsed: timedelta) -> str:
    return format_seconds(elapsed.total_seconds(), style="message")


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


__all__ = ["Message", "MessageProvider"]
