"""memento-ml 1.2's notification API, against a real SMTP server (aiosmtpd on 127.0.0.1).

Direct calls of the three 1.2 methods, one mail per event by default, overrides and duck-typed
providers in real runs (process executor), 1.2's properties, and ``with provider as conn`` on
the file-backed cache and checkpoint providers.
"""

from __future__ import annotations

import smtplib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from experiments import fail_on_three
from servers import SmtpServer, free_port

from memento import AggregateException, Memento, TaskManager, delayed
from memento.compat.caching import FileSystemCacheProvider
from memento.compat.checkpointing import FileSystemCheckpointing
from memento.notifications import (
    EmailNotificationProvider,
    FileSystemNotificationProvider,
    NotificationDispatcher,
    SmtpConfiguration,
    WebhookNotificationProvider,
    as_provider,
)

pytestmark = pytest.mark.timeout(120)


MATRIX = {"parameters": {"a": [1, 2, 3]}}  # fail_on_three fails for a == 3


def text(raw: bytes) -> str:
    return raw.decode().replace("\r\n", "\n")


def body(message: Any) -> str:
    return str(message.get_content()).replace("\r\n", "\n")


def config_for(server: SmtpServer) -> SmtpConfiguration:
    return SmtpConfiguration("127.0.0.1", server.port, require_tls=False)


def run(provider: Any, store: Path, matrix: dict[str, Any] = MATRIX, workers: int = 2) -> Any:
    memento = Memento(
        fail_on_three, notification_provider=provider, num_workers=workers, progress=False
    )  # executor="process", the default
    return memento.run(matrix, cache_path=store)


# --- 1. the three methods, called directly ---------------------------------------------------


@pytest.fixture(params=["SmtpConfiguration", "smtplib.SMTP"])
def direct_provider(
    request: pytest.FixtureRequest, smtp_server: Callable[..., SmtpServer]
) -> Iterator[tuple[EmailNotificationProvider, SmtpServer]]:
    server = smtp_server()
    if request.param == "SmtpConfiguration":
        yield (
            EmailNotificationProvider(
                config_for(server), "bot@example.org", ["me@example.org", "you@example.org"]
            ),
            server,
        )
        return
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        yield (
            EmailNotificationProvider(
                client, "bot@example.org", ["me@example.org", "you@example.org"]
            ),
            server,
        )


def test_direct_calls_send_one_12_mail_each(
    direct_provider: tuple[EmailNotificationProvider, SmtpServer],
) -> None:
    provider, server = direct_provider
    provider.task_completed()
    provider.task_failure()
    provider.all_tasks_completed()

    inbox = server.inbox
    assert inbox.subjects() == [
        "[Memento] Task completed",
        "[Memento] Task failed",
        "[Memento] All tasks completed",
    ]
    assert [body(m) for m in inbox.messages] == [
        "Task completed\n",
        "Task failed\n",
        "All tasks completed\n",
    ]
    for message, raw in zip(inbox.messages, inbox.raw):
        assert message["From"] == "Memento <bot@example.org>"
        assert "\nTo: me@example.org,you@example.org\n" in text(raw)  # joined with ",", as 1.2
        assert message.get_content_type() == "text/plain"
    assert inbox.recipients == [["me@example.org", "you@example.org"]] * 3


def test_a_direct_call_that_cannot_deliver_raises_as_in_12() -> None:
    closed = SmtpConfiguration("127.0.0.1", free_port(), require_tls=False)
    provider = EmailNotificationProvider(closed, "bot@example.org", "me@example.org", timeout=5)
    with pytest.raises(OSError):
        provider.task_failure()


def test_12_properties(smtp_server: Callable[..., SmtpServer]) -> None:
    server = smtp_server()
    config = config_for(server)
    provider = EmailNotificationProvider(config, "bot@example.org", ["me@example.org"])
    assert provider.smpt is config
    assert provider.from_addr == "bot@example.org"
    assert provider.to_addrs == ["me@example.org"]
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        on_client = EmailNotificationProvider(client, "bot@example.org", ("a@x.org", "b@x.org"))
        assert on_client.smpt == SmtpConfiguration("localhost", 0)
        assert on_client.to_addrs == ("a@x.org", "b@x.org")
    with pytest.raises(AttributeError):
        provider.from_addr = "other@example.org"  # type: ignore[misc]  # read-only, as 1.2


# --- 2. one mail per event by default; digest on request ----------------------------------------


def test_a_run_mails_each_event_by_default(
    smtp_server: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    server = smtp_server()
    provider = EmailNotificationProvider(config_for(server), "lab@example.org", ["me@example.org"])
    assert provider.digest is False
    with pytest.raises(AggregateException):
        run(provider, tmp_path / "store.sqlite")

    inbox = server.inbox
    subjects = inbox.subjects()
    assert sorted(subjects[:-1]) == [
        "[Memento] Task completed",
        "[Memento] Task completed",
        "[Memento] Task failed",
    ]
    assert subjects[-1] == "[Memento] All tasks completed, 1 failed"
    for message, subject in zip(inbox.messages, subjects):
        legacy = subject.removeprefix("[Memento] ").split(",")[0]
        assert body(message).startswith(legacy + "\n\n")  # 1.2's body, then the details
    (failure,) = [m for m in inbox.messages if m["Subject"] == "[Memento] Task failed"]
    assert "a=3" in body(failure) and "ValueError: a is 3" in body(failure)

    # Cached results are not announced (1.2 ran nothing for them either); the end is.
    run(provider, tmp_path / "store.sqlite", {"parameters": {"a": [1, 2]}})
    assert inbox.subjects()[len(subjects) :] == ["[Memento] All tasks completed"]


def test_digest_stays_available_and_the_default_of_webhooks() -> None:
    assert WebhookNotificationProvider("http://127.0.0.1:9/hook").digest is True
    assert WebhookNotificationProvider("http://127.0.0.1:9/hook").min_interval == 60.0
    email = EmailNotificationProvider(SmtpConfiguration("h", 25), "a@x.org", "b@x.org")
    assert (email.digest, email.min_interval) == (False, 0.0)
    digest = EmailNotificationProvider(
        SmtpConfiguration("h", 25), "a@x.org", "b@x.org", digest=True
    )
    assert (digest.digest, digest.min_interval) == (True, 60.0)


def test_a_digest_run_mails_failures_and_the_summary(
    smtp_server: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    server = smtp_server()
    provider = EmailNotificationProvider(
        config_for(server), "lab@example.org", ["me@example.org"], digest=True
    )
    with pytest.raises(AggregateException):
        run(provider, tmp_path / "store.sqlite")
    assert server.inbox.subjects() == [
        "[Memento] Task failed",
        "[Memento] All tasks completed, 1 failed",
    ]


# --- 3. overrides and duck typing, in real runs -----------------------------------------------


class LabMail(EmailNotificationProvider):
    """A 1.2-style subclass: its own mail for successes, a count of failures, its own end."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = 0
        self.ends = 0

    def task_completed(self) -> None:
        self._send_email(self.create_message("[Lab] one more done", "Another one."))

    def task_failure(self) -> None:
        self.failures += 1
        super().task_failure()  # and the default mail too

    def all_tasks_completed(self) -> None:
        self.ends += 1


def test_a_subclass_overrides_are_called_in_a_run(
    smtp_server: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    server = smtp_server()
    provider = LabMail(config_for(server), "lab@example.org", ["me@example.org"])
    with pytest.raises(AggregateException):
        run(provider, tmp_path / "store.sqlite")
    assert sorted(server.inbox.subjects()) == [
        "[Lab] one more done",
        "[Lab] one more done",
        "[Memento] Task failed",
    ]
    (failure,) = [m for m in server.inbox.messages if m["Subject"] == "[Memento] Task failed"]
    assert "ValueError: a is 3" in body(failure)  # super() sent the detailed default
    assert (provider.failures, provider.ends) == (1, 1)  # told in this process


class Duck:
    """Has 1.2's three methods, subclasses nothing."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def task_completed(self) -> None:
        self.calls.append("completed")

    def task_failure(self) -> None:
        self.calls.append("failure")

    def all_tasks_completed(self) -> None:
        self.calls.append("all")


def test_a_duck_typed_provider_is_accepted_and_called_in_a_run(tmp_path: Path) -> None:
    duck = Duck()
    with pytest.raises(AggregateException):
        run(duck, tmp_path / "store.sqlite")
    assert sorted(duck.calls[:-1]) == ["completed", "completed", "failure"]
    assert duck.calls[-1] == "all"

    in_a_list = Duck()
    run([in_a_list], tmp_path / "store.sqlite", {"parameters": {"a": [4]}})
    assert in_a_list.calls == ["completed", "all"]

    manager = TaskManager(workers=1, notification_provider=(tasks := Duck()))
    manager.add_tasks([delayed(abs)(-1), delayed(abs)(-2)])
    assert manager.run() == [1, 2]
    assert tasks.calls == ["completed", "completed"]


def test_objects_that_are_no_provider_are_rejected_by_name() -> None:
    with pytest.raises(TypeError, match=r"'not a provider' is not a notification provider"):
        as_provider("not a provider")
    with pytest.raises(TypeError, match="task_completed"):
        NotificationDispatcher([Duck(), object()])
    duck = Duck()
    assert repr(as_provider(duck)) == repr(duck)  # warnings name the user's object
    with pytest.raises(TypeError, match="is not a notification provider"):
        Memento(abs, notification_provider=object())  # at construction, before any run


# --- FileSystemNotificationProvider in a run: 1.2's exact lines ---------------------------------


def test_file_provider_writes_the_12_lines_in_a_run(tmp_path: Path) -> None:
    log = tmp_path / "notifications.log"
    with pytest.raises(AggregateException):
        run(FileSystemNotificationProvider(str(log)), tmp_path / "store.sqlite", workers=1)
    assert log.read_text() == "Task completed\nTask completed\nTask failed\nAll tasks completed\n"


# --- 5. with provider as conn --------------------------------------------------------------------


def test_with_cache_provider_gives_a_connection_to_its_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    provider = FileSystemCacheProvider(filepath=str(path))
    provider.set("k1", [1, 2])
    provider.set("k2", "two")
    with provider as database:
        assert isinstance(database, sqlite3.Connection)
        assert database.execute("PRAGMA database_list").fetchone()[2] == str(path)
        rows = database.execute("SELECT key FROM cache ORDER BY key").fetchall()
        database.execute("DELETE FROM cache WHERE key = 'k1'")  # committed at the end
    assert rows == [("k1",), ("k2",)]
    assert not provider.contains("k1") and provider.get("k2") == "two"
    with pytest.raises(sqlite3.ProgrammingError):
        database.execute("SELECT 1")  # closed when the block ended

    with pytest.raises(RuntimeError), provider as database:
        database.execute("DELETE FROM cache")
        raise RuntimeError("the block failed")
    assert provider.contains("k2")  # rolled back

    named = FileSystemCacheProvider(filepath=str(path), table_name="features")
    named.set("f", 1.5)
    with named as outer, named as inner:  # blocks may nest
        assert outer is not inner
        assert inner.execute("SELECT key FROM features").fetchall() == [("f",)]
    with FileSystemCacheProvider() as database:  # the default temporary file
        assert database.execute("SELECT count(*) FROM cache").fetchone() == (0,)


def test_with_a_provider_built_on_a_connection_gives_that_connection() -> None:
    conn = sqlite3.connect(":memory:")
    provider = FileSystemCacheProvider(connection=conn)
    provider.set("k", 1)
    with provider as database:
        assert database is conn
        assert database.execute("SELECT key FROM cache").fetchall() == [("k",)]
    assert conn.execute("SELECT 1").fetchone() == (1,)  # still open: it is the caller's
    checkpoints = FileSystemCheckpointing(connection=conn)
    with checkpoints as database:
        assert database is conn


def test_with_checkpointing_gives_a_connection_to_its_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    checkpoints = FileSystemCheckpointing(str(path))
    checkpoints.set("run-1", {"epoch": 3})
    with checkpoints as database:
        assert isinstance(database, sqlite3.Connection)
        keys = database.execute("SELECT key FROM checkpoints").fetchall()
        database.execute("DELETE FROM checkpoints")
    assert keys == [("run-1",)]
    assert not checkpoints.contains("run-1")
    with FileSystemCheckpointing() as database:
        assert database.execute("SELECT count(*) FROM checkpoints").fetchone() == (0,)
