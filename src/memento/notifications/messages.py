"""Providers that send messages: e-mail, webhook, Apprise. Digests and rate limits come from
:class:`memento.notifications.digest.MessageProvider`; each class here only sends.

Imported on first use of one of them (``memento.notifications`` loads it lazily), so a run
without them never imports ``smtplib`` or ``urllib``.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.parse
import urllib.request
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import NamedTuple

from memento._util.optional import optional_import
from memento.notifications.digest import Message, MessageProvider

# --- URLs that are secrets ---------------------------------------------------------------------


def _redact_url(url: str, *, keep_host: bool = True) -> str:
    """``scheme://host/…``: what a log may show of a URL whose path or query is a token."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    shown = f"{parts.scheme}://{host if keep_host else ''}"
    return shown + "/…" if keep_host else shown + "…"


def _url_secrets(url: str) -> list[str]:
    """The URL and its pieces that could carry a token: what ``secrets()`` returns."""
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


class EmailNotificationProvider(MessageProvider):
    """Sends e-mails: by default one per event, as memento-ml 1.2 did.

    During a run: ``[Memento] Task completed`` for each experiment that ran and succeeded,
    ``[Memento] Task failed`` for each that failed, and ``[Memento] All tasks completed`` at the
    end (``..., 2 failed`` appended when some failed). Each body starts with 1.2's line
    (``Task failed``) and goes on with the config, the error and its traceback, the counts.
    With ``digest=True``, successes are not mailed: failures go out as they happen, at most one
    mail every ``min_interval`` seconds (default 60; later ones are batched), and a summary
    closes the run. Either way, each failure is listed with its kind (``[timeout]``), the
    summary counts them by kind, and a systematic failure (the first failures all the same
    error) is mailed at once, on its own (``[Memento] fit: 3 of 3 failures: ValueError at
    train.py:42``). Calling ``task_completed()``, ``task_failure()`` or
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

    def secrets(self) -> list[str]:
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

    def send(self, message: Message) -> None:
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


class WebhookNotificationProvider(MessageProvider):
    """POSTs ``{"text": "..."}`` as JSON: a Slack incoming webhook, Mattermost, Rocket.Chat...

    The text is the message's title and body, as an e-mail's (failures with their kind,
    ``[oom]``); the payload has no other field, since Slack-compatible services read only
    ``text``. Uses the standard library only. The URL usually is the secret, so reprs and logs
    show only ``scheme://host/…``. Digest and rate limiting as :class:`EmailNotificationProvider`.

    Example::

        provider = WebhookNotificationProvider(os.environ["SLACK_WEBHOOK_URL"])
    """

    max_body = 3_500  # Slack shows up to about 4,000 characters of text

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

    def secrets(self) -> list[str]:
        return _url_secrets(self._url)

    def send(self, message: Message) -> None:
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


class AppriseNotificationProvider(MessageProvider):
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
        apprise = optional_import("apprise", "notify", "AppriseNotificationProvider")
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

    def secrets(self) -> list[str]:
        return [secret for url in self._urls for secret in _url_secrets(url)]

    def send(self, message: Message) -> None:
        kind = self._types.FAILURE if message.bad_news else self._types.SUCCESS
        ok = self._apprise.notify(
            body=message.body,
            title=message.title,
            notify_type=kind,
            body_format=self._text_format,
        )
        if not ok:
            raise RuntimeError("Apprise could not deliver to every URL (see the 'apprise' log)")
