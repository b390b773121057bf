"""Notification providers against real servers: aiosmtpd for e-mail, http.server for webhooks."""

from __future__ import annotations

import datetime as dt
import inspect
import io
import ipaddress
import json
import logging
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from experiments import fail_on_three
from servers import (
    TOKEN,
    HttpServer,
    SmtpServer,
    free_port,
)

import memento.notifications as notifications
from memento import AggregateException, Memento
from memento.events import Event, ExperimentFailed, ExperimentFinished, RunFinished, RunStarted
from memento.exceptions import MissingExtra
from memento.notifications import (
    AppriseNotificationProvider,
    ConsoleNotificationProvider,
    DefaultNotificationProvider,
    EmailNotificationProvider,
    FileSystemNotificationProvider,
    Message,
    MessageProvider,
    NotificationDispatcher,
    NotificationProvider,
    SmtpConfiguration,
    WebhookNotificationProvider,
)

pytestmark = pytest.mark.timeout(60)

PASSWORD = "hunter2-very-secret"
STORE = "/data/runs/memento.sqlite"


# --- Events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    lr: float
    depth: int

    def __str__(self) -> str:
        return f"Config(lr={self.lr}, depth={self.depth})"


def started(to_run: int = 3) -> RunStarted:
    return RunStarted(
        total=to_run, to_run=to_run, cached=0, failed_before=0, store_path=STORE, experiment="fit"
    )


def finished(i: int = 0) -> ExperimentFinished:
    return ExperimentFinished(config=Config(0.1, i), key=f"k{i}", runtime=timedelta(seconds=3))


def failed(i: int = 0, message: str = "") -> ExperimentFailed:
    return ExperimentFailed(
        config=Config(0.5, i),
        key=f"f{i}",
        exc_type="ValueError",
        message=message or f"loss diverged at step {i}",
        traceback=(
            "Traceback (most recent call last):\n"
            '  File "exp.py", line 12, in train\n'
            "    raise ValueError(msg)\n"
            f"ValueError: loss diverged at step {i}\n"
        ),
    )


def run_finished(*failures: ExperimentFailed, done: int = 2, cached: int = 1) -> RunFinished:
    return RunFinished(
        done=done,
        cached=cached,
        failed=len(failures),
        elapsed=timedelta(minutes=5, seconds=7),
        store_path=STORE,
        failures=tuple(failures),
    )


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers are local: a proxy from the environment must not get in the way."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "memento.notifications" and r.levelno >= logging.WARNING
    ]


# --- E-mail ------------------------------------------------------------------------------------


def test_email_failure_names_config_error_and_traceback(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    provider = EmailNotificationProvider(
        SmtpConfiguration("127.0.0.1", server.port, require_tls=False),
        "bot@example.org",
        ["me@example.org", "you@example.org"],
        min_interval=0,
    )
    with NotificationDispatcher(provider) as dispatcher:
        dispatcher.emit(started())
        dispatcher.emit(finished(1))  # a mail too: e-mail is not in digest mode by default
        dispatcher.emit(failed(2))

    assert server.inbox.subjects() == ["[Memento] Task completed", "[Memento] Task failed"]
    message = server.inbox.messages[1]
    assert message["From"] == "Memento <bot@example.org>"
    assert b"\nTo: me@example.org,you@example.org\n" in server.inbox.raw[1].replace(b"\r", b"")
    assert server.inbox.recipients[1] == ["me@example.org", "you@example.org"]
    assert message.get_content_type() == "text/plain"
    body = message.get_content().replace("\r\n", "\n")
    assert body.startswith("Task failed\n\n")  # 1.2's body, then the details
    assert "Config(lr=0.5, depth=2)" in body
    assert "ValueError: loss diverged at step 2" in body
    assert 'File "exp.py", line 12, in train' in body
    assert f"Store: {STORE}" in body
    assert "Experiment: fit" in body


def test_email_require_tls_without_starttls_sends_nothing_and_warns_once(
    smtp_server: Callable[..., SmtpServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = smtp_server()
    provider = EmailNotificationProvider(
        SmtpConfiguration("127.0.0.1", server.port, "bot", PASSWORD),  # require_tls=True
        "bot@example.org",
        "me@example.org",
        min_interval=0,
    )
    caplog.set_level(logging.DEBUG)
    dispatcher = NotificationDispatcher([provider])
    dispatcher.emit(started())
    for i in range(3):
        dispatcher.emit(failed(i))
    dispatcher.emit(run_finished(failed(0), failed(1), failed(2)))
    dispatcher.close()

    assert server.inbox.messages == []
    (warning,) = warnings_of(caplog)
    assert "STARTTLS" in warning.getMessage()
    assert "require_tls=False" in warning.getMessage()
    assert PASSWORD not in caplog.text


def test_email_login_and_password_never_logged(
    smtp_server: Callable[..., SmtpServer], caplog: pytest.LogCaptureFixture
) -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        assert isinstance(data, LoginPassword)
        good.inbox.logins.append(data.login)
        return AuthResult(success=data.password == PASSWORD.encode(), handled=False)

    good = smtp_server(auth_require_tls=False, authenticator=authenticator)
    caplog.set_level(logging.DEBUG)
    config = SmtpConfiguration("127.0.0.1", good.port, "bot", PASSWORD, require_tls=False)
    provider = EmailNotificationProvider(config, "bot@example.org", ["me@example.org"])
    provider.notify(run_finished())
    assert good.inbox.logins == [b"bot"]
    assert [m["Subject"] for m in good.inbox.messages] == ["[Memento] All tasks completed"]

    wrong = SmtpConfiguration("127.0.0.1", good.port, "bot", "wrong-" + PASSWORD, require_tls=False)
    rejected = EmailNotificationProvider(wrong, "bot@example.org", ["me@example.org"])
    NotificationDispatcher(rejected).emit(run_finished())
    (warning,) = warnings_of(caplog)
    assert "SMTPAuthenticationError" in warning.getMessage()
    assert len(good.inbox.messages) == 1

    assert PASSWORD not in caplog.text
    for shown in (repr(config), str(config), repr(provider), repr(rejected)):
        assert PASSWORD not in shown
    assert "password='***'" in repr(config)


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_email_upgrades_with_starttls_when_offered(
    smtp_server: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    cert, key = _self_signed_certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server = smtp_server(tls_context=server_context, require_starttls=True)

    provider = EmailNotificationProvider(
        SmtpConfiguration("127.0.0.1", server.port),  # require_tls=True
        "bot@example.org",
        ["me@example.org"],
        tls_context=ssl.create_default_context(cafile=str(cert)),
    )
    provider.notify(failed(1))
    (message,) = server.inbox.messages  # require_starttls: plain text would have been refused
    assert message["Subject"] == "[Memento] Task failed"


def test_email_digest_batches_50_failures_one_connection_per_mail(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    before = server.connections
    provider = EmailNotificationProvider(
        SmtpConfiguration("127.0.0.1", server.port, require_tls=False),
        "bot@example.org",
        ["me@example.org"],
        digest=True,
    )  # min_interval defaults to 60 in digest mode
    failures = [failed(i, message="x" * 5000 if i == 3 else "") for i in range(50)]
    dispatcher = NotificationDispatcher(provider)
    dispatcher.emit(started(60))
    for i, failure in enumerate(failures):
        dispatcher.emit(finished(i))
        dispatcher.emit(failure)
        dispatcher.tick()
    dispatcher.emit(run_finished(*failures, done=10, cached=5))
    dispatcher.close()

    messages = server.inbox.messages
    assert len(messages) == 2  # the first failure at once, then the summary
    assert server.connections - before == len(messages)
    assert messages[0]["Subject"] == "[Memento] Task failed"
    summary = messages[-1]
    assert summary["Subject"] == "[Memento] All tasks completed, 50 failed"
    body = summary.get_content()
    assert "done: 10, cached: 5, failed: 50" in body
    assert "Run finished in 0:05:07." in body
    assert f"Store: {STORE}" in body
    assert "50 experiments failed (the first 20 are listed):" in body
    assert "Config(lr=0.5, depth=19)" in body
    assert "Config(lr=0.5, depth=20)" not in body
    assert "x" * 400 not in body  # long messages are cut
    assert "[truncated]" in body


def test_email_without_digest_mails_each_experiment(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    provider = EmailNotificationProvider(
        SmtpConfiguration("127.0.0.1", server.port, require_tls=False),
        "bot@example.org",
        ["me@example.org"],
        digest=False,
        min_interval=0,
    )
    with NotificationDispatcher(provider) as dispatcher:
        for event in (started(), finished(1), failed(2), finished(3), run_finished(failed(2))):
            dispatcher.emit(event)
    subjects = [m["Subject"] for m in server.inbox.messages]
    assert subjects == [
        "[Memento] Task completed",
        "[Memento] Task failed",
        "[Memento] Task completed",
        "[Memento] All tasks completed, 1 failed",
    ]
    assert "Config(lr=0.1, depth=1)" in server.inbox.messages[0].get_content()


def test_email_uses_a_given_smtp_client(smtp_server: Callable[..., SmtpServer]) -> None:
    import smtplib

    server = smtp_server()
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        provider = EmailNotificationProvider(client, "bot@example.org", ["me@example.org"])
        provider.notify(run_finished())
        provider.notify(run_finished())
    assert len(server.inbox.messages) == 2


# --- Webhook -----------------------------------------------------------------------------------


def test_webhook_posts_slack_json(http_server: Callable[[int], HttpServer]) -> None:
    server = http_server(200)
    provider = WebhookNotificationProvider(server.url, min_interval=0)
    with NotificationDispatcher(provider) as dispatcher:
        dispatcher.emit(started())
        dispatcher.emit(finished(1))  # digest: no message
        dispatcher.emit(failed(7))
        dispatcher.emit(run_finished(failed(7)))

    assert server.paths == [f"/services/T0001/B0002/{TOKEN}"] * 2
    first, summary = (body["text"] for body in server.bodies)
    assert first.startswith("[Memento] Task failed\n")
    assert "Config(lr=0.5, depth=7)" in first
    assert "ValueError: loss diverged at step 7" in first
    assert summary.startswith("[Memento] All tasks completed, 1 failed\n")
    assert "<" not in summary  # plain text, no HTML


def test_webhook_server_error_is_logged_once_without_token(
    http_server: Callable[[int], HttpServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = http_server(500)
    caplog.set_level(logging.DEBUG)
    provider = WebhookNotificationProvider(server.url, min_interval=0)
    dispatcher = NotificationDispatcher(provider)
    for i in range(4):
        dispatcher.emit(failed(i))
    dispatcher.emit(run_finished())
    dispatcher.close()

    assert len(server.bodies) == 5  # each send was tried
    (warning,) = warnings_of(caplog)
    assert "HTTPError" in warning.getMessage()
    assert "http://127.0.0.1:" in warning.getMessage()
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(provider)


def test_webhook_unreachable_and_bad_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}/hook/{TOKEN}"
    provider = WebhookNotificationProvider(url, min_interval=0, timeout=2)
    provider.notify(failed())
    assert len(warnings_of(caplog)) == 1
    assert TOKEN not in caplog.text

    with pytest.raises(ValueError, match="http:// or https://") as info:
        WebhookNotificationProvider(f"ftp://example.org/{TOKEN}")
    assert TOKEN not in str(info.value)


def test_rate_limit_batches_failures_until_tick_or_close(
    http_server: Callable[[int], HttpServer],
) -> None:
    server = http_server(200)
    provider = WebhookNotificationProvider(server.url, min_interval=0.5)
    dispatcher = NotificationDispatcher(provider)
    dispatcher.emit(failed(1))  # sent at once
    dispatcher.emit(failed(2))
    dispatcher.emit(failed(3))
    dispatcher.tick()
    assert len(server.bodies) == 1

    time.sleep(0.6)
    dispatcher.tick()  # the interval is over: both held-back failures in one message
    assert len(server.bodies) == 2
    text = server.bodies[1]["text"]
    assert text.startswith("[Memento] 2 tasks failed\n")
    assert "Config(lr=0.5, depth=2)" in text
    assert "Config(lr=0.5, depth=3)" in text

    dispatcher.emit(failed(4))  # within the new interval: held back...
    assert len(server.bodies) == 2
    dispatcher.close()  # ...and flushed by close()
    assert len(server.bodies) == 3
    assert "Config(lr=0.5, depth=4)" in server.bodies[2]["text"]


# --- Apprise -----------------------------------------------------------------------------------


def test_apprise_posts_title_and_body(http_server: Callable[[int], HttpServer]) -> None:
    pytest.importorskip("apprise")
    server = http_server(200)
    port = server.url.split(":")[2].split("/")[0]
    url = f"json://127.0.0.1:{port}/notify/{TOKEN}"
    provider = AppriseNotificationProvider(url, min_interval=0)
    with NotificationDispatcher(provider) as dispatcher:
        dispatcher.emit(started())
        dispatcher.emit(failed(5))
        dispatcher.emit(run_finished(failed(5)))

    assert server.paths == [f"/notify/{TOKEN}"] * 2
    first, summary = server.bodies
    assert first["title"] == "[Memento] Task failed"
    assert "Config(lr=0.5, depth=5)" in first["message"]
    assert first["type"] == "failure"
    assert summary["title"] == "[Memento] All tasks completed, 1 failed"
    assert "done: 2, cached: 1, failed: 1" in summary["message"]
    assert TOKEN not in repr(provider)


def test_apprise_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # makes `import apprise` fail
    with pytest.raises(MissingExtra, match=r"pip install 'memento-grid\[notify\]'"):
        AppriseNotificationProvider("json://127.0.0.1/x")


def test_apprise_rejects_an_unknown_url_without_showing_it() -> None:
    pytest.importorskip("apprise")
    with pytest.raises(ValueError, match="Apprise does not understand") as info:
        AppriseNotificationProvider(f"nosuchservice://{TOKEN}")
    assert TOKEN not in str(info.value)


# --- A message provider of your own, on the public base ----------------------------------------


class Sink(MessageProvider):
    """A user's provider: keeps its messages in a list; cannot send while ``broken``."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.sent: list[Message] = []
        self.broken = False

    def send(self, message: Message) -> None:
        if self.broken:
            raise ConnectionError(f"cannot reach https://chat.example.org/{TOKEN}")
        self.sent.append(message)

    def secrets(self) -> list[str]:
        return [TOKEN]


def test_your_provider_gets_digests_and_rate_limits_from_the_base() -> None:
    sink = Sink(min_interval=3600)  # digest by default: failures and the summary only
    with NotificationDispatcher(sink) as dispatcher:
        dispatcher.emit(started())
        dispatcher.emit(finished(1))  # a success: nothing, in digest mode
        dispatcher.emit(failed(1))  # the first failure: at once
        dispatcher.emit(failed(2))  # within the interval: held back...
        dispatcher.emit(failed(3))
        dispatcher.tick()
        assert [m.title for m in sink.sent] == ["[Memento] Task failed"]
        dispatcher.emit(run_finished(failed(1), failed(2), failed(3)))  # ...for the summary
    first, summary = sink.sent  # close() had nothing left to send
    assert first.bad_news and first.legacy == "Task failed"
    assert "Config(lr=0.5, depth=1)" in first.body and "loss diverged at step 1" in first.body
    assert "Experiment: fit" in first.body and f"Store: {STORE}" in first.body
    assert summary.title == "[Memento] All tasks completed, 3 failed"
    assert summary.bad_news and summary.legacy == "All tasks completed"
    assert "done: 2, cached: 1, failed: 3" in summary.body
    assert all(f"Config(lr=0.5, depth={i})" in summary.body for i in (1, 2, 3))


def test_your_provider_without_digest_batches_successes_too() -> None:
    sink = Sink(digest=False, min_interval=3600)
    dispatcher = NotificationDispatcher(sink)
    dispatcher.emit(finished(1))  # at once
    dispatcher.emit(finished(2))
    dispatcher.emit(finished(3))
    dispatcher.emit(failed(4))
    assert [m.title for m in sink.sent] == ["[Memento] Task completed"]
    dispatcher.close()  # what was held back, in one message
    assert [m.title for m in sink.sent] == [
        "[Memento] Task completed",
        "[Memento] 1 task failed, 2 completed",
    ]
    assert not sink.sent[0].bad_news and sink.sent[1].bad_news
    assert "Config(lr=0.1, depth=3) (3.00s)" in sink.sent[1].body


def test_your_provider_failing_to_send_is_logged_once_without_its_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sink = Sink(min_interval=0)
    sink.broken = True
    sink.notify(failed(1))
    sink.notify(failed(2))
    assert len(warnings_of(caplog)) == 1
    assert "ConnectionError" in caplog.text and "***" in caplog.text
    assert TOKEN not in caplog.text
    sink.broken = False
    sink.notify(failed(3))
    assert [m.title for m in sink.sent] == ["[Memento] Task failed"]

    sink.broken = True  # a direct call, outside a run: the caller sees the error, as in 1.2
    with pytest.raises(ConnectionError):
        sink.task_failure()
    sink.broken = False
    sink.all_tasks_completed()
    assert sink.sent[-1] == Message(
        "[Memento] All tasks completed", "All tasks completed", bad_news=False
    )


def test_your_provider_bodies_are_cut_to_max_body() -> None:
    class Short(Sink):
        max_body = 200

    sink = Short(min_interval=0)
    sink.notify(failed(1, message="x" * 5_000))
    (message,) = sink.sent
    assert len(message.body) <= 200 and message.body.endswith(" ... [truncated]")


def test_a_provider_that_does_not_override_send_is_reported_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = MessageProvider(min_interval=0)
    provider.notify(failed(1))  # during a run: logged, never raised into the run
    assert "must override send(message)" in warnings_of(caplog)[0].getMessage()
    with pytest.raises(NotImplementedError):
        provider.task_failure()  # called directly
    with pytest.raises(ValueError, match="min_interval"):
        Sink(min_interval=-1)


class Chat(MessageProvider):
    """The docs' example: a Slack-like webhook, written by a user on the public base."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(**options)
        self.url = url

    def send(self, message: Message) -> None:
        data = json.dumps({"text": f"{message.title}\n\n{message.body}"}).encode()
        request = urllib.request.Request(
            self.url, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def secrets(self) -> list[str]:
        return [self.url]


def test_your_provider_in_a_real_run_posts_the_failure_and_the_summary(
    http_server: Callable[[int], HttpServer], tmp_path: Path
) -> None:
    server = http_server(200)
    chat = Chat(server.url)
    memento = Memento(fail_on_three, executor="inline", notification_provider=chat, progress=False)
    with pytest.raises(AggregateException):
        memento.run({"parameters": {"a": [1, 2, 3]}}, cache_path=tmp_path / "store.sqlite")
    texts = [body["text"] for body in server.bodies]
    assert [text.split("\n")[0] for text in texts] == [
        "[Memento] Task failed",
        "[Memento] All tasks completed, 1 failed",
    ]
    assert "ValueError: a is 3" in texts[0]
    assert "done: 2, cached: 0, failed: 1" in texts[1]
    assert f"Store: {tmp_path / 'store.sqlite'}" in texts[1]


# --- Importing the dispatcher costs no message provider ----------------------------------------

MESSAGE_MODULES = (
    "memento.notifications.digest",
    "memento.notifications.messages",
    "smtplib",
    "urllib.request",
    "apprise",
)

IMPORT_COST = """
import json
import sys
from memento.notifications import NotificationDispatcher, ConsoleNotificationProvider
NotificationDispatcher([ConsoleNotificationProvider()])
after_import = [m for m in MODULES if m in sys.modules]

from memento import Memento

def experiment(context, config):
    return config.a

Memento(experiment, executor="inline", progress=False).run(
    {"parameters": {"a": [1, 2]}}, cache_path=sys.argv[1]
)
after_run = [m for m in MODULES if m in sys.modules]

import memento.notifications as notifications
notifications.EmailNotificationProvider  # first use: now, and only now, they are loaded
after_use = [m for m in MODULES if m in sys.modules]
print(json.dumps([after_import, after_run, after_use]))
"""


def test_importing_the_dispatcher_or_running_without_providers_loads_no_message_provider(
    tmp_path: Path,
) -> None:
    code = f"MODULES = {MESSAGE_MODULES!r}\n" + IMPORT_COST
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "store.sqlite")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    after_import, after_run, after_use = json.loads(out)
    assert after_import == after_run == []
    assert "memento.notifications.messages" in after_use and "smtplib" in after_use


# --- Legacy (memento-ml 1.2) providers ---------------------------------------------------------


class Recorder(NotificationProvider):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def task_completed(self) -> None:
        self.calls.append("task_completed")

    def task_failure(self) -> None:
        self.calls.append("task_failure")

    def all_tasks_completed(self) -> None:
        self.calls.append("all_tasks_completed")


class DefaultRecorder(DefaultNotificationProvider):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def task_failure(self) -> None:
        self.calls.append("task_failure")


EVENTS: list[Event] = [started(), finished(1), failed(2), finished(3), run_finished(failed(2))]


def test_legacy_methods_receive_exactly_the_old_calls() -> None:
    recorder, default_recorder = Recorder(), DefaultRecorder()
    with NotificationDispatcher([recorder, default_recorder]) as dispatcher:
        for event in EVENTS:
            dispatcher.emit(event)
    assert recorder.calls == [
        "task_completed",
        "task_failure",
        "task_completed",
        "all_tasks_completed",
    ]
    assert default_recorder.calls == ["task_failure"]


def test_console_prints_the_12_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with NotificationDispatcher(ConsoleNotificationProvider()) as dispatcher:
        for event in EVENTS:
            dispatcher.emit(event)
    out, err = capsys.readouterr()
    assert out == "Task completed\nTask failed\nTask completed\nAll tasks completed\n"
    assert "Config(lr=0.5, depth=2): ValueError: loss diverged at step 2" in err


def test_file_provider_with_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("earlier\n")
    for provider in (
        FileSystemNotificationProvider(str(path)),
        FileSystemNotificationProvider(path),
    ):
        dispatcher = NotificationDispatcher(provider)
        for event in EVENTS:
            dispatcher.emit(event)
    lines = "Task completed\nTask failed\nTask completed\nAll tasks completed\n"
    assert path.read_text() == "earlier\n" + lines * 2

    monkeypatch.chdir(tmp_path)
    FileSystemNotificationProvider().notify(run_finished())
    assert (tmp_path / "logs.txt").read_text() == "All tasks completed\n"


def test_file_provider_with_a_file_object() -> None:
    buffer = io.StringIO()
    dispatcher = NotificationDispatcher(FileSystemNotificationProvider(buffer))
    for event in EVENTS:
        dispatcher.emit(event)
    assert buffer.getvalue() == "Task completed\nTask failed\nTask completed\nAll tasks completed\n"


# --- Dispatcher --------------------------------------------------------------------------------


class Broken(NotificationProvider):
    def notify(self, event: Event) -> None:
        raise RuntimeError("provider bug")


def test_a_raising_provider_is_logged_once_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = Recorder()
    dispatcher = NotificationDispatcher([Broken(), recorder])
    for event in EVENTS:
        dispatcher.emit(event)
    dispatcher.close()
    (warning,) = warnings_of(caplog)
    assert "RuntimeError: provider bug" in warning.getMessage()
    assert "Broken" in warning.getMessage()
    assert len(recorder.calls) == 4


def test_dispatcher_accepts_none_one_or_many_and_rejects_the_rest() -> None:
    assert NotificationDispatcher(None).providers == ()
    assert NotificationDispatcher().providers == ()
    one = Recorder()
    assert NotificationDispatcher(one).providers == (one,)
    two = [Recorder(), ConsoleNotificationProvider()]
    assert NotificationDispatcher(two).providers == tuple(two)
    assert NotificationDispatcher(iter(two)).providers == tuple(two)
    with pytest.raises(TypeError, match="notify"):
        NotificationDispatcher(object())  # type: ignore[arg-type]


def test_smtp_configuration_stays_a_12_named_tuple() -> None:
    config = SmtpConfiguration("smtp.example.org", 587, "bot", PASSWORD)
    host, port, username, password, require_tls = config
    assert (host, port, username, password, require_tls) == (
        "smtp.example.org",
        587,
        "bot",
        PASSWORD,
        True,
    )
    assert PASSWORD not in repr(config) and PASSWORD not in str([config])
    assert "password=None" in repr(SmtpConfiguration("h", 25))


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(notifications).items()
        if (isinstance(value, type) or inspect.isfunction(value))
        and not name.startswith("_")
        and value.__module__.startswith(notifications.__name__)
    }
    assert public == set(notifications.__all__)
