"""Providers that send messages (e-mail, webhook, Apprise), with digests and rate limits."""

from __future__ import annotations

import json
import logging
import smtplib
import socket
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import NamedTuple

from memento.events import Event, ExperimentFailed, ExperimentFinished, RunFinished, RunStarted
from memento.exceptions import MissingExtra
from memento.notifications.base import (
    MAX_CONFIG_CHARS,
    MAX_FAILURES_LISTED,
    MAX_MESSAGE_CHARS,
    TRACEBACK_LINES,
    TRACEBACKS_SHOWN,
    DefaultNotificationProvider,
    _clip,
    _text,
)

logger = logging.getLogger("memento.notifications")


# --- Message providers: digest and rate limiting, shared by e-mail, webhook and Apprise ----------


@dataclass
class _Batch:
    """Events waiting for the next message; keeps counts of all, details of the first few."""

    failed: list[ExperimentFailed] = field(default_factory=list)
    finished: list[ExperimentFinished] = field(default_factory=list)
    n_failed: int = 0
    n_finished: int = 0

    def add(self, event: ExperimentFailed | ExperimentFinished) -> None:
        if isinstance(event, ExperimentFailed):
            self.n_failed += 1
            if len(self.failed) < MAX_FAILURES_LISTED:
                self.failed.append(event)
        else:
            self.n_finished += 1
            if len(self.finished) < MAX_FAILURES_LISTED:
                self.finished.append(event)

    def __bool__(self) -> bool:
        return bool(self.n_failed or self.n_finished)


class _Message(NamedTuple):
    title: str
    body: str
    bad_news: bool  # some experiment failed: Apprise shows it as a failure
    legacy: str = ""  # 1.2's body ("Task failed") when the message is about one 1.2 event


#: What memento-ml 1.2 sent for each of its three methods, word for word.
_LEGACY_MESSAGES = {
    "task_completed": _Message("[Memento] Task completed", "Task completed", bad_news=False),
    "task_failure": _Message("[Memento] Task failed", "Task failed", bad_news=True),
    "all_tasks_completed": _Message(
        "[Memento] All tasks completed", "All tasks completed", bad_news=False
    ),
}


class _MessageProvider(DefaultNotificationProvider):
    """Turns events into (title, body) messages, batched and rate limited; see ``_send``.

    With ``digest`` on, only failures (as they happen) and the end-of-run summary are sent;
    otherwise successes too. At most one message leaves every ``min_interval`` seconds: events
    arriving in between are batched into the next one, sent by the next event or ``tick()``
    once the interval is over. The summary and ``close()`` send at once.

    As in 1.2, each event of a run goes through ``task_completed()``, ``task_failure()`` or
    ``all_tasks_completed()``: a subclass that overrides one replaces what is sent for that
    event (and may call ``super()`` to send it too). Called directly, outside a run, each sends
    1.2's message at once (``[Memento] Task completed`` / ``Task completed``) and raises if it
    cannot be delivered.
    """

    _max_body = 100_000

    def __init__(self, *, digest: bool, min_interval: float) -> None:
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

    def _send(self, message: _Message) -> None:
        """Deliver one message; raise on failure (the caller logs it, redacted)."""
        raise NotImplementedError

    def _secrets(self) -> list[str]:
        """Strings that must never reach a log record."""
        return []

    def notify(self, event: Event) -> None:
        if isinstance(event, RunStarted):  # run_all starts several runs, then finishes once
            self._started = event
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
        self.tick()

    # The 1.2 methods: what is sent for each event, unless a subclass overrides them.

    def task_completed(self) -> None:
        """An experiment succeeded: mailed unless in digest mode. Called directly, outside a
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
            self._send(message)  # a direct call, as in 1.2: the caller sees any error

    def tick(self) -> None:
        if self._batch and time.monotonic() >= self._next_send:
            self._flush()

    def close(self) -> None:
        if self._batch:
            self._flush()

    def _flush(self) -> None:
        batch, self._batch = self._batch, _Batch()
        self._deliver(self._batch_message(batch))

    def _deliver(self, message: _Message) -> None:
        self._next_send = time.monotonic() + self.min_interval
        message = message._replace(body=_clip(message.body, self._max_body))
        try:
            self._send(message)
        except Exception as exc:
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        reason = _clip(_redact(f"{type(exc).__name__}: {exc}", self._secrets()), 300)
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

    def _batch_message(self, batch: _Batch) -> _Message:
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
                config = _clip(_text(done.config), MAX_CONFIG_CHARS)
                lines.append(f"- {config} ({_duration(done.runtime)})")
            if batch.n_finished > len(batch.finished):
                lines.append(f"... and {batch.n_finished - len(batch.finished)} more")
            parts.append("\n".join(lines))
        parts.append(self._footer())
        return _Message(title, "\n\n".join(parts), batch.n_failed > 0, legacy)

    def _summary(self, event: RunFinished) -> _Message:
        title = "[Memento] All tasks completed"
        if event.failed:
            title += f", {event.failed} failed"
        counts = f"done: {event.done}, cached: {event.cached}, failed: {event.failed}"
        parts = [f"Run finished in {_duration(event.elapsed)}.\n{counts}"]
        failures = list(event.failures) or self._run_failures.failed
        if failures:
            parts.append(_failure_list(failures[:MAX_FAILURES_LISTED], event.failed))
        parts.append(self._footer(event.store_path))
        return _Message(title, "\n\n".join(parts), event.failed > 0, "All tasks completed")

    def _footer(self, store_path: str = "") -> str:
        started = self._started
        lines = []
        if started is not None and started.experiment:
            lines.append(f"Experiment: {started.experiment}")
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
        config = _clip(_text(failure.config), MAX_CONFIG_CHARS)
        error = _clip(f"{failure.exc_type}: {failure.message}", MAX_MESSAGE_CHARS)
        lines = [f"{i + 1}. {config}", f"   {error}"]
        if failure.attempts > 1:
            lines.append(f"   after {failure.attempts} attempts")
        if i < TRACEBACKS_SHOWN:
            lines.extend("   " + line for line in _tail(failure.traceback))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _tail(traceback: str) -> list[str]:
    lines = traceback.rstrip().splitlines()
    if len(lines) > TRACEBACK_LINES:  # the innermost frames say where it broke
        lines = ["...", *lines[-TRACEBACK_LINES:]]
    return [_clip(line, MAX_MESSAGE_CHARS) for line in lines]


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _duration(elapsed: timedelta) -> str:
    seconds = elapsed.total_seconds()
    if seconds < 10:
        return f"{seconds:.2f}s"
    return str(timedelta(seconds=round(seconds)))


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _redact_url(url: str, *, keep_host: bool = True) -> str:
    """``scheme://host/…``: what a log may show of a URL whose path or query is a token."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    shown = f"{parts.scheme}://{host if keep_host else ''}"
    return shown + "/…" if keep_host else shown + "…"


def _url_secrets(url: str) -> list[str]:
    """The URL and its pieces that could carry a token, for :func:`_redact`."""
    parts = urllib.parse.urlsplit(url)
    rest = url.split("://", 1)[-1]
    pieces = [url, rest, parts.path, parts.query, parts.password or ""]
    pieces += [p for p in parts.path.split("/") if len(p) >= 6]
    pieces += [v for _, v in urllib.parse.parse_qsl(parts.query) if len(v) >= 6]
    return [p for p in pieces if p and p != "/"]


# --- E-mail ------------------------------------------------------------------------------------


class SmtpConfiguration(NamedTuple):
    """Where and how :class:`EmailNotificationProvider` connects (same fields as 1.2).

    Port 465 uses implicit TLS; any other port plain SMTP upgraded with STARTTLS when the server
    offers it. With ``require_tls`` (the default) a server without STARTTLS is an error: nothing
    is sent rather than a password in clear. The repr hides the password.

    Example::

        SmtpConfiguration("smtp.gmail.com", 587, username="me@gmail.com", password=app_password)
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    require_tls: bool = True

    def __repr__(self) -> str:
        password = None if self.password is None else "***"
        return (
            f"SmtpConfiguration(host={self.host!r}, port={self.port!r}, "
            f"username={self.username!r}, password={password!r}, "
            f"require_tls={self.require_tls!r})"
        )


class EmailNotificationProvider(_MessageProvider):
    """Sends e-mails: by default one per event, as memento-ml 1.2 did.

    During a run: ``[Memento] Task completed`` for each experiment that ran and succeeded,
    ``[Memento] Task failed`` for each that failed, and ``[Memento] All tasks completed`` at the
    end (``..., 2 failed`` appended when some failed). Each body starts with 1.2's line
    (``Task failed``) and goes on with the config, the error and its traceback, the counts.
    With ``digest=True``, successes are not mailed: failures go out as they happen, at most one
    mail every ``min_interval`` seconds (default 60; later ones are batched), and a summary
    closes the run. Calling ``task_completed()``, ``task_failure()`` or
    ``all_tasks_completed()`` directly sends 1.2's message at once.

    ``smtp`` is a :class:`SmtpConfiguration` (one connection per mail sent) or a connected
    ``smtplib.SMTP`` that is used as it is. ``tls_context`` replaces the default certificate
    checks (for a private CA).

    Example::

        provider = EmailNotificationProvider(
            SmtpConfiguration("smtp.example.org", 587, username="bot", password=secret),
            "bot@example.org",
            ["me@example.org"],
        )
        provider.task_completed()  # one mail, "[Memento] Task completed"
    """

    def __init__(
        self,
        smtp: SmtpConfiguration | smtplib.SMTP,
        from_addr: str,
        to_addrs: str | Iterable[str],
        *,
        digest: bool = False,
        min_interval: float | None = None,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if min_interval is None:  # one mail per event unless in digest mode, as 1.2
            min_interval = 60.0 if digest else 0.0
        super().__init__(digest=digest, min_interval=min_interval)
        if not isinstance(smtp, (SmtpConfiguration, smtplib.SMTP)):
            raise TypeError(
                f"smtp must be a SmtpConfiguration or an smtplib.SMTP, got {type(smtp).__name__}."
            )
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        if not recipients:
            raise ValueError("EmailNotificationProvider needs at least one address in to_addrs.")
        self.smtp = smtp
        self._from_addr = from_addr
        # 1.2 returned to_addrs as given: a tuple stays a tuple (a copy, which compares equal).
        self._to_addrs: list[str] | tuple[str, ...] = (
            tuple(recipients) if isinstance(to_addrs, tuple) else recipients
        )
        self._timeout = timeout
        self._tls_context = tls_context

    @property
    def smpt(self) -> SmtpConfiguration:
        """The :class:`SmtpConfiguration` (1.2's spelling); ``SmtpConfiguration("localhost", 0)``
        for a provider built on an ``smtplib.SMTP`` client, as in 1.2."""
        if isinstance(self.smtp, SmtpConfiguration):
            return self.smtp
        return SmtpConfiguration("localhost", 0)

    @property
    def from_addr(self) -> str:
        """The address mails are sent from (shown as ``Memento <from_addr>``)."""
        return self._from_addr

    @property
    def to_addrs(self) -> list[str] | tuple[str, ...]:
        """The addresses mails are sent to."""
        return self._to_addrs

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.smtp!r}, {self.from_addr!r}, {list(self.to_addrs)!r}, "
            f"digest={self.digest!r})"
        )

    def _secrets(self) -> list[str]:
        password = self.smtp.password if isinstance(self.smtp, SmtpConfiguration) else None
        return [password or ""]

    def create_message(self, subject: str, content: str) -> EmailMessage:
        """A plain-text e-mail from ``Memento <from_addr>`` to ``to_addrs`` (joined with
        ``","``, as in 1.2), with a ``Date`` and a ``Message-ID``."""
        message = EmailMessage()
        message["From"] = formataddr(("Memento", self.from_addr))
        message["To"] = ",".join(self.to_addrs)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=self.from_addr.rpartition("@")[2] or None)
        message.set_content(content)
        return message

    def _send(self, message: _Message) -> None:
        body = f"{message.legacy}\n\n{message.body}" if message.legacy else message.body
        self._send_email(self.create_message(message.title, body))

    def _send_email(self, mail: EmailMessage) -> None:
        """Send one e-mail now, raising on failure. (1.2's name: subclasses written for 1.2
        send their own messages with ``self._send_email(self.create_message(...))``.)"""
        if isinstance(self.smtp, smtplib.SMTP):
            self.smtp.send_message(mail)
            return
        config = self.smtp
        context = self._tls_context or ssl.create_default_context()
        client: smtplib.SMTP
        if config.port == 465:
            client = smtplib.SMTP_SSL(
                config.host, config.port, timeout=self._timeout, context=context
            )
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=self._timeout)
        with client:
            client.ehlo()
            if config.port != 465:
                if client.has_extn("starttls"):
                    client.starttls(context=context)
                    client.ehlo()
                elif config.require_tls:
                    raise smtplib.SMTPNotSupportedError(
                        f"the server {config.host}:{config.port} does not offer STARTTLS and "
                        "require_tls is on; use a TLS-capable server or "
                        "SmtpConfiguration(..., require_tls=False)"
                    )
            if config.username and config.password:
                client.login(config.username, config.password)
            client.send_message(mail)


# --- Webhook -----------------------------------------------------------------------------------


class WebhookNotificationProvider(_MessageProvider):
    """POSTs ``{"text": "..."}`` as JSON: a Slack incoming webhook, Mattermost, Rocket.Chat...

    Uses the standard library only. The URL usually is the secret, so reprs and logs show only
    ``scheme://host/…``. Digest and rate limiting as :class:`EmailNotificationProvider`.

    Example::

        provider = WebhookNotificationProvider(os.environ["SLACK_WEBHOOK_URL"])
    """

    _max_body = 3_500  # Slack shows up to about 4,000 characters of text

    def __init__(
        self,
        url: str,
        *,
        digest: bool = True,
        min_interval: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(digest=digest, min_interval=min_interval)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(
                f"WebhookNotificationProvider needs an http:// or https:// URL, "
                f"got {_redact_url(url)!r}."
            )
        self._url = url
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_redact_url(self._url)!r}, digest={self.digest!r})"

    def _secrets(self) -> list[str]:
        return _url_secrets(self._url)

    def _send(self, message: _Message) -> None:
        data = json.dumps({"text": f"{message.title}\n\n{message.body}"}).encode("utf-8")
        request = urllib.request.Request(
            self._url,
            data=data,
            headers={"Content-Type": "application/json; charset=utf-8"},
            method="POST",
        )
        # Raises HTTPError for a 4xx/5xx answer, URLError when the host cannot be reached.
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            response.read()


# --- Apprise -----------------------------------------------------------------------------------


class AppriseNotificationProvider(_MessageProvider):
    """Sends through `Apprise <https://github.com/caronc/apprise>`_: Slack, Teams, Telegram,
    Discord, ntfy, Pushover, e-mail and 100 more, each named by a URL.

    Needs ``pip install 'memento-grid[notify]'``. Digest and rate limiting as
    :class:`EmailNotificationProvider`. Apprise URLs hold tokens, so reprs and logs show only
    their scheme.

    Example::

        provider = AppriseNotificationProvider(["tgram://bot_token/chat_id", "ntfy://my-topic"])
    """

    def __init__(
        self,
        urls: str | Iterable[str],
        *,
        digest: bool = True,
        min_interval: float = 60.0,
    ) -> None:
        super().__init__(digest=digest, min_interval=min_interval)
        try:
            import apprise
        except ImportError as exc:
            raise MissingExtra("apprise", "notify", "AppriseNotificationProvider") from exc
        self._urls = [urls] if isinstance(urls, str) else list(urls)
        if not self._urls:
            raise ValueError("AppriseNotificationProvider needs at least one URL.")
        self._types = apprise.NotifyType
        self._text_format = apprise.NotifyFormat.TEXT
        self._apprise = apprise.Apprise()
        for url in self._urls:
            if not self._apprise.add(url):
                raise ValueError(
                    f"Apprise does not understand the URL {_redact_url(url, keep_host=False)!r}; "
                    "see https://github.com/caronc/apprise/wiki for the URL of each service."
                )

    def __repr__(self) -> str:
        shown = [_redact_url(url, keep_host=False) for url in self._urls]
        return f"{type(self).__name__}({shown!r}, digest={self.digest!r})"

    def _secrets(self) -> list[str]:
        return [secret for url in self._urls for secret in _url_secrets(url)]

    def _send(self, message: _Message) -> None:
        kind = self._types.FAILURE if message.bad_news else self._types.SUCCESS
        ok = self._apprise.notify(
            body=message.body,
            title=message.title,
            notify_type=kind,
            body_format=self._text_format,
        )
        if not ok:
            raise RuntimeError("Apprise could not deliver to every URL (see the 'apprise' log)")
