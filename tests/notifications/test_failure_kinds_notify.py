"""Failure kinds and systematic failures in notifications, against real SMTP and HTTP servers."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from servers import TOKEN, HttpServer, SmtpServer

from memento import AggregateException, Memento
from memento.events import (
    Event,
    ExperimentFailed,
    ExperimentFinished,
    RunFinished,
    RunStarted,
    SystematicFailure,
)
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
from memento.notifications.base import kind_counts

pytestmark = pytest.mark.timeout(60)

STORE = "/data/runs/memento.sqlite"
SYSTEMATIC_TITLE = "[Memento] fit: 3 of 3 failures: ValueError at exp.py:12"


@dataclass(frozen=True)
class Config:
    lr: float
    depth: int

    def __str__(self) -> str:
        return f"Config(lr={self.lr}, depth={self.depth})"


def started() -> RunStarted:
    return RunStarted(
        total=4, to_run=4, cached=0, failed_before=0, store_path=STORE, experiment="fit"
    )


def failed(i: int, kind: str = "error", exc_type: str = "ValueError") -> ExperimentFailed:
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "exp.py", line 12, in train\n'
        "    raise ValueError(msg)\n"
        f"ValueError: loss diverged at step {i}\n"
    )
    return ExperimentFailed(
        config=Config(0.5, i),
        key=f"f{i}",
        exc_type=exc_type,
        message=f"loss diverged at step {i}" if kind == "error" else f"ran past 60 s ({i})",
        traceback=traceback if kind == "error" else "",
        kind=kind,
        where="exp.py:12" if kind == "error" else "",
    )


def systematic(count: int = 3, experiment: str = "fit") -> SystematicFailure:
    return SystematicFailure(
        count=count,
        failures=count,
        kind="error",
        exc_type="ValueError",
        where="exp.py:12",
        message="loss diverged at step 3",
        experiment=experiment,
        store_path=STORE,
    )


def run_finished(*failures: ExperimentFailed) -> RunFinished:
    return RunFinished(
        done=1,
        cached=0,
        failed=len(failures),
        elapsed=timedelta(minutes=2),
        store_path=STORE,
        failures=failures,
    )


EVENTS: list[Event] = [
    started(),
    ExperimentFinished(config=Config(0.1, 0), key="k0", runtime=timedelta(seconds=1)),
    failed(1),
    failed(2),
    failed(3),
    systematic(),
    run_finished(failed(1), failed(2), failed(3)),
]


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


def content(mail: EmailMessage) -> str:
    """The text of a received mail, with ``\n`` line ends."""
    return str(mail.get_content()).replace("\r\n", "\n")


def smtp(server: SmtpServer) -> SmtpConfiguration:
    return SmtpConfiguration("127.0.0.1", server.port, require_tls=False)


# --- 1.2-style providers never see the new event -----------------------------------------------


def test_a_subclass_overriding_only_task_failure_gets_1_2_calls_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    class OnlyFailures(DefaultNotificationProvider):
        def task_failure(self) -> None:
            calls.append("task_failure")

    class AllThree(NotificationProvider):
        def task_completed(self) -> None:
            calls.append("completed")

        def task_failure(self) -> None:
            calls.append("failure")

        def all_tasks_completed(self) -> None:
            calls.append("all")

    with NotificationDispatcher([OnlyFailures(), AllThree()]) as dispatcher:
        for event in EVENTS:
            dispatcher.emit(event)
    assert calls == [
        "completed",
        "task_failure",
        "failure",
        "task_failure",
        "failure",
        "task_failure",
        "failure",
        "all",
    ]
    assert warnings_of(caplog) == []


def test_a_duck_typed_1_2_provider_is_not_broken_by_a_systematic_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    class Beeper:  # no base class, as 1.2 allowed; has no notify()
        def task_completed(self) -> None:
            calls.append("task_completed")

        def task_failure(self) -> None:
            calls.append("task_failure")

        def all_tasks_completed(self) -> None:
            calls.append("all_tasks_completed")

    with NotificationDispatcher(Beeper()) as dispatcher:
        for event in EVENTS:
            dispatcher.emit(event)
    assert calls == ["task_completed"] + ["task_failure"] * 3 + ["all_tasks_completed"]
    assert warnings_of(caplog) == []


# --- Console and file providers ----------------------------------------------------------------


def test_console_lines_carry_the_kind_and_the_systematic_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with NotificationDispatcher(ConsoleNotificationProvider()) as dispatcher:
        dispatcher.emit(started())
        dispatcher.emit(failed(1, kind="timeout", exc_type="ExperimentTimeout"))
        dispatcher.emit(failed(2))
        dispatcher.emit(systematic())
        dispatcher.emit(run_finished(failed(1), failed(2)))
    out, err = capsys.readouterr()
    assert out == "Task failed\nTask failed\nAll tasks completed\n"  # as 1.2
    assert err.splitlines() == [
        "  [timeout] Config(lr=0.5, depth=1): ExperimentTimeout: ran past 60 s (1)",
        "  [error] Config(lr=0.5, depth=2): ValueError: loss diverged at step 2",
        "  Systematic failure in fit: 3 of 3 failures: ValueError at exp.py:12: "
        "loss diverged at step 3",
    ]


def test_the_file_provider_writes_one_line_for_a_systematic_failure(tmp_path: Path) -> None:
    log = tmp_path / "notifications.log"
    with NotificationDispatcher(FileSystemNotificationProvider(log)) as dispatcher:
        for event in EVENTS:
            dispatcher.emit(event)
    assert log.read_text().splitlines() == [
        "Task completed",
        "Task failed",
        "Task failed",
        "Task failed",
        "Systematic failure in fit: 3 of 3 failures: ValueError at exp.py:12: "
        "loss diverged at step 3",
        "All tasks completed",
    ]


def test_kind_counts_most_first() -> None:
    failures = [failed(1, "timeout"), failed(2), failed(3, "oom"), failed(4), failed(5, "timeout")]
    failures.append(failed(6))
    assert kind_counts(failures) == "3 error, 2 timeout, 1 oom"
    assert kind_counts([]) == ""


# --- E-mail ------------------------------------------------------------------------------------


def test_an_email_arrives_for_a_systematic_failure_once(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    provider = EmailNotificationProvider(smtp(server), "bot@example.org", "me@example.org")
    with NotificationDispatcher(provider) as dispatcher:
        dispatcher.emit(started())
        dispatcher.emit(failed(1, kind="timeout", exc_type="ExperimentTimeout"))
        dispatcher.emit(failed(2))
        dispatcher.emit(failed(3))
        dispatcher.emit(systematic())
        dispatcher.emit(systematic(count=4))  # emitted twice: mailed once
        dispatcher.emit(run_finished(failed(1, "timeout", "ExperimentTimeout"), failed(2)))
    assert server.inbox.subjects() == [
        "[Memento] Task failed",
        "[Memento] Task failed",
        "[Memento] Task failed",
        SYSTEMATIC_TITLE,
        "[Memento] All tasks completed, 2 failed",
    ]
    bodies = [content(m) for m in server.inbox.messages]
    assert bodies[0].startswith("Task failed\n\n")  # 1.2's line first, as every failure mail
    assert "1. [timeout] Config(lr=0.5, depth=1)\n   ExperimentTimeout: ran past 60 s" in bodies[0]
    assert "1. [error] Config(lr=0.5, depth=2)\n   ValueError: loss diverged" in bodies[1]
    mail = bodies[3]
    assert not mail.startswith("Task failed")  # no 1.2 line: 1.2 had no such message
    assert "[error] ValueError: loss diverged at step 3" in mail
    assert "raised at exp.py:12" in mail
    assert f"Store: {STORE}" in mail and "Experiment: fit" in mail
    assert "done: 1, cached: 0, failed: 2 (1 error, 1 timeout)" in bodies[4]
    assert "[timeout] Config(lr=0.5, depth=1)" in bodies[4]


def test_in_digest_mode_the_systematic_failure_is_not_held_back(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    provider = EmailNotificationProvider(
        smtp(server), "bot@example.org", "me@example.org", digest=True, min_interval=3600
    )
    dispatcher = NotificationDispatcher(provider)
    dispatcher.emit(started())
    dispatcher.emit(failed(1))  # the first failure: at once
    dispatcher.emit(failed(2))  # held back by the rate limit...
    dispatcher.emit(failed(3))
    dispatcher.emit(systematic())  # ...but the early warning is not
    assert server.inbox.subjects() == ["[Memento] Task failed", SYSTEMATIC_TITLE]
    dispatcher.emit(failed(4, kind="oom", exc_type="MemoryError"))
    dispatcher.close()  # the digest goes out as before
    assert server.inbox.subjects()[2] == "[Memento] 3 tasks failed"
    digest = content(server.inbox.messages[2])
    assert "3. [oom] Config(lr=0.5, depth=4)\n   MemoryError: ran past 60 s (4)" in digest


def test_a_new_run_may_warn_again(smtp_server: Callable[..., SmtpServer]) -> None:
    server = smtp_server()
    provider = EmailNotificationProvider(smtp(server), "bot@example.org", "me@example.org")
    for _ in range(2):  # the same provider for two runs
        with NotificationDispatcher(provider) as dispatcher:
            dispatcher.emit(started())
            dispatcher.emit(systematic())
            dispatcher.emit(systematic())
            dispatcher.emit(run_finished())
    assert server.inbox.subjects() == [SYSTEMATIC_TITLE, "[Memento] All tasks completed"] * 2


def always_fails(context: Any, config: Any) -> int:
    raise ValueError(f"bad a={config.a}")


def test_a_real_run_mails_the_systematic_failure(
    smtp_server: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    server = smtp_server()
    provider = EmailNotificationProvider(smtp(server), "bot@example.org", "me@example.org")
    memento = Memento(
        always_fails, executor="inline", notification_provider=provider, progress=False
    )
    store = tmp_path / "store.sqlite"
    with pytest.raises(AggregateException):
        memento.run({"parameters": {"a": [1, 2, 3, 4]}}, cache_path=store)
    subjects = server.inbox.subjects()
    pattern = r"\[Memento\] .*3 of 3 failures: ValueError at test_failure_kinds_notify\.py:\d+"
    warnings = [s for s in subjects if re.fullmatch(pattern, s)]
    assert len(warnings) == 1, subjects
    assert subjects.index(warnings[0]) == 3  # right after the third failure, before the 4th
    assert subjects[-1] == "[Memento] All tasks completed, 4 failed"
    body = content(server.inbox.messages[3])
    assert "[error] ValueError: bad a=" in body and f"Store: {store}" in body
    summary = content(server.inbox.messages[-1])
    assert "failed: 4 (4 error)" in summary


# --- Webhook and Apprise -----------------------------------------------------------------------


def test_webhook_text_carries_kinds_and_the_systematic_failure(
    http_server: Callable[[int], HttpServer],
) -> None:
    server = http_server(200)
    provider = WebhookNotificationProvider(server.url, min_interval=0)
    with NotificationDispatcher(provider) as dispatcher:
        dispatcher.emit(started())
        dispatcher.emit(failed(1, kind="oom", exc_type="MemoryError"))
        dispatcher.emit(systematic())
        dispatcher.emit(run_finished(failed(1, kind="oom", exc_type="MemoryError")))
    assert len(server.bodies) == 3
    # The payload is Slack's: one "text" field, which carries the kinds.
    assert all(set(body) == {"text"} for body in server.bodies)
    first, warning, summary = (body["text"] for body in server.bodies)
    assert "1. [oom] Config(lr=0.5, depth=1)\n   MemoryError: ran past 60 s (1)" in first
    assert warning.startswith(SYSTEMATIC_TITLE + "\n\n")
    assert "loss diverged at step 3" in warning and f"Store: {STORE}" in warning
    assert "failed: 1 (1 oom)" in summary


def test_apprise_sends_the_systematic_failure_as_a_failure(
    http_server: Callable[[int], HttpServer],
) -> None:
    pytest.importorskip("apprise")
    server = http_server(200)
    port = server.url.split(":")[2].split("/")[0]
    provider = AppriseNotificationProvider(f"json://127.0.0.1:{port}/notify/{TOKEN}")
    with NotificationDispatcher(provider) as dispatcher:
        dispatcher.emit(started())
        dispatcher.emit(systematic())
    (body,) = server.bodies
    assert body["title"] == SYSTEMATIC_TITLE and body["type"] == "failure"
    assert "[error] ValueError: loss diverged at step 3" in body["message"]


# --- Your own provider -------------------------------------------------------------------------


class Sink(MessageProvider):
    """A user's provider on the public base: keeps messages; cannot send while ``broken``."""

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


def test_a_systematic_failure_that_cannot_be_sent_is_logged_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink()
    sink.broken = True
    sink.notify(started())
    sink.notify(systematic())  # never raises into the run
    (record,) = warnings_of(caplog)
    assert "ConnectionError" in record.getMessage() and "***" in record.getMessage()
    assert TOKEN not in caplog.text


def test_the_summary_counts_every_failure_by_kind_beyond_those_listed() -> None:
    sink = Sink(min_interval=3600)
    sink.notify(started())
    for i in range(30):
        sink.notify(failed(i, kind="timeout" if i % 3 == 0 else "error"))
    # An event that lists no failures (run_all): the provider's own count is used.
    sink.notify(
        RunFinished(done=0, cached=0, failed=30, elapsed=timedelta(seconds=9), store_path=STORE)
    )
    summary = sink.sent[-1]
    assert "done: 0, cached: 0, failed: 30 (20 error, 10 timeout)" in summary.body
    assert "30 experiments failed (the first 20 are listed):" in summary.body


def test_systematic_failures_of_two_experiments_in_one_run_are_both_sent() -> None:
    sink = Sink(min_interval=3600)
    sink.notify(started())
    sink.notify(systematic(experiment="fit"))
    sink.notify(systematic(experiment="score"))
    sink.notify(systematic(experiment="score"))
    assert [m.title for m in sink.sent] == [
        SYSTEMATIC_TITLE,
        "[Memento] score: 3 of 3 failures: ValueError at exp.py:12",
    ]
    assert all(m.bad_news and m.legacy == "" for m in sink.sent)
