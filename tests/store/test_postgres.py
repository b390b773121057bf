"""What only the PostgreSQL backend has to get right (the rest is tests/store/test_contract.py):
its URL and the password in it, connection errors, a database that is not a store, creating
the schema once when drivers race, a read-only look that creates nothing, checkpoints in the
database, and psycopg staying optional."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from postgres import fresh_database, with_database

import memento.store.leases
import memento.store.pg_connection as pg_connection
import memento.store.postgres as pg
from memento.exceptions import MissingExtra, StoreError
from memento.store.backends import open_checkpoints, open_store
from memento.store.base import StoredOutcome
from memento.store.sqlite import SCHEMA_VERSION

psycopg = pytest.importorskip("psycopg")


def tables_of(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in rows}


def password_of(url: str) -> str:
    password = urlsplit(url).password
    if not password:
        pytest.skip("the test server's URL has no password")
    return password


def test_urls_open_a_postgres_store(postgres_database: str) -> None:
    store = open_store(postgres_database)
    assert isinstance(store, pg.PostgresStore)
    assert store.directory is None and store.checkpoint_directory is None
    assert store.checkpoint_url == store.location == postgres_database
    alias = "postgres://" + postgres_database.partition("://")[2]
    with open_store(alias) as other:
        assert isinstance(other, pg.PostgresStore) and other.run_count() == 0


def test_the_password_is_never_shown(postgres_database: str) -> None:
    password = password_of(postgres_database)
    store = pg.PostgresStore(postgres_database)
    provider = open_checkpoints(postgres_database)
    for shown in (repr(store), store.name, repr(provider), repr(pickle.loads(pickle.dumps(store)))):
        assert password not in shown and ":***@" in shown

    parts = urlsplit(postgres_database)
    wrong_password = postgres_database.replace(f":{password}@", ":not-the-password@")
    no_database = with_database(postgres_database, "memento_no_such_database")
    refused = urlunsplit(parts._replace(netloc=f"memento:{password}@127.0.0.1:{free_port()}"))
    for url, why in (
        (wrong_password, "password authentication failed"),
        (no_database, "does not exist"),
        (refused, "refused"),
    ):
        with pytest.raises(StoreError) as failed:
            pg.PostgresStore(url).open()
        message = str(failed.value)
        assert why in message and "\n" not in message
        assert password not in message and "not-the-password" not in message
        assert "***" in message


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_database_that_is_not_a_store_is_refused_untouched(postgres_database: str) -> None:
    with psycopg.connect(postgres_database) as conn:
        conn.execute("CREATE TABLE accounts (id int)")
    for readonly in (False, True):
        with pytest.raises(StoreError, match="is a PostgreSQL database but not a memento store"):
            pg.PostgresStore(postgres_database, readonly=readonly).open()
    assert tables_of(postgres_database) == {"accounts"}


def test_a_newer_schema_is_refused(postgres_database: str) -> None:
    pg.PostgresStore(postgres_database).open().close()
    with psycopg.connect(postgres_database) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"schema version '99'.*Upgrade memento"):
            pg.PostgresStore(postgres_database, readonly=readonly).open()


def test_the_schema_is_the_sqlite_stores(postgres_database: str) -> None:
    pg.PostgresStore(postgres_database).open().close()
    expected = {"meta", "results", "runs", "running", "checkpoints", "jobs", "leases", "provenance"}
    assert tables_of(postgres_database) == expected
    with psycopg.connect(postgres_database) as conn:
        meta: dict[str, str] = dict(conn.execute("SELECT name, value FROM meta").fetchall())
    assert meta["format"] == "memento-store"
    assert meta["schema_version"] == str(SCHEMA_VERSION)


def test_reading_an_empty_database_creates_nothing(postgres_database: str) -> None:
    with pg.PostgresStore(postgres_database, readonly=True) as store:
        assert store.run_count() == 0 and list(store.rows()) == [] and store.leases() == {}
        with pytest.raises(StoreError, match="read-only"):
            store.start_run("r", "m:f", total=1, to_run=1, cached=0)
    assert tables_of(postgres_database) == set()


def open_at_once(stores: list[pg.PostgresStore]) -> list[BaseException]:
    """Open ``stores`` from threads released together; the errors they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def open_one(store: pg.PostgresStore) -> None:
        try:
            start.wait(timeout=30)
            store.open()
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_drivers_opening_a_new_database_at_once_create_it_once(postgres_url: str) -> None:
    for _ in range(3):
        stores = [pg.PostgresStore(url) for url in [fresh_database()] * 4]
        assert open_at_once(stores) == []
        assert {s.run_count() for s in stores} == {0}
        for store in stores:
            store.close()


def test_large_values_stay_in_the_database(postgres_database: str) -> None:
    big = pickle.dumps(b"v" * (3 * 1024 * 1024))
    with pg.PostgresStore(postgres_database) as store:
        store.write_outcomes([StoredOutcome("k", "m:f", "done", "{}", value=big)])
        ((value, value_file),) = store.lookup(["k"], ["value", "value_file"]).values()
        assert value == big and value_file is None


def test_a_failed_claim_rolls_back_and_lets_go_of_the_lock(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = pg.PostgresStore(postgres_database).open()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("in the middle of a claim")

    monkeypatch.setattr(pg, "decide", broken)
    with pytest.raises(RuntimeError):
        store.claim("run-1", ["a"], since=0.0, lease_timeout=60)
    monkeypatch.setattr(pg, "decide", memento.store.leases.decide)
    with pg.PostgresStore(postgres_database) as other:  # the lock is free again
        assert other.claim("run-2", ["a"], since=0.0, lease_timeout=60).claimed == ["a"]
    assert store.claim("run-1", ["a"], since=0.0, lease_timeout=60).held  # and it still works
    store.close()


def test_a_lost_connection_is_made_again(postgres_database: str) -> None:
    store = pg.PostgresStore(postgres_database).open()
    with psycopg.connect(postgres_database, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'memento' AND datname = current_database()"
        )
    try:
        store.run_count()  # may fail once, with a StoreError, not a psycopg error
    except StoreError:
        pass
    assert store.run_count() == 0
    store.close()


def test_checkpoints_connect_again_after_a_fork(postgres_database: str) -> None:
    pg.PostgresStore(postgres_database).open().close()
    provider = open_checkpoints(postgres_database)
    provider.set("parent", {"step": 1})
    # One connection per process, however many providers a worker builds.
    assert open_checkpoints(postgres_database)._connection() is provider._connection()
    pid = os.fork()
    if pid == 0:  # the child: its own connection, the parent's left alone
        try:
            provider.set("child", {"step": 2})
            os._exit(0 if provider.get("parent") == {"step": 1} else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert provider.get("child") == {"step": 2}  # and the parent's connection still works


def test_psycopg_is_optional(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    pg_connection.driver.cache_clear()
    try:
        with pytest.raises(MissingExtra, match=r"pip install 'memento-grid\[postgres\]'"):
            open_store(postgres_url)
    finally:
        pg_connection.driver.cache_clear()


def test_importing_memento_does_not_import_psycopg(subprocess_env: dict[str, str]) -> None:
    code = (
        "import sys, memento, memento.store.backends, memento.store.postgres\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], env=subprocess_env, check=True, timeout=60)


def test_a_run_stores_its_results_and_checkpoints_in_the_database(
    postgres_database: str, tmp_path: Path
) -> None:
    from stores import make_store

    from memento import Memento, open_results

    make_store(postgres_database, executor="process")  # 12 configs, 4 failed
    assert len(open_results(postgres_database)) == 12
    assert len(open_results(postgres_database, status="failed")) == 4
    assert not list(tmp_path.rglob("*.sqlite*"))  # nothing beside it on disk

    seen: list[Any] = []

    def resumes(context: Any, config: Any) -> int:
        try:
            seen.append(context.restore())
        except KeyError:
            seen.append(None)
        context.checkpoint({"at": config.n})
        seen.append(open_checkpoints(postgres_database).get(context.key))  # in the database
        return int(config.n)

    memento = Memento(resumes, progress=False, executor="thread", num_workers=1)
    memento.run({"parameters": {"n": [1, 2]}}, cache_path=postgres_database)
    assert seen == [None, {"at": 1}, None, {"at": 2}]
    with pg.PostgresStore(postgres_database, readonly=True) as store:
        assert store.run_count() == 2 and store.leases() == {}
    with psycopg.connect(postgres_database) as conn:  # removed once their results landed
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (0,)


def test_storing_a_success_removes_its_checkpoint_in_the_same_transaction(
    postgres_database: str,
) -> None:
    with pg.PostgresStore(postgres_database) as store:
        store.open()
        provider = open_checkpoints(postgres_database)
        for key in ("ok", "failed", "later"):
            provider.set(key, {"state": key})
        store.write_outcomes(
            [
                StoredOutcome("ok", "m:f", "done", "{}"),
                StoredOutcome("failed", "m:f", "failed", "{}"),  # a retry resumes from it
            ]
        )
        assert not provider.contains("ok") and provider.contains("failed")
        store.delete_checkpoints(["ok"])  # what the driver does next: nothing left to do
        store.delete_checkpoints(["later", "failed"])
        assert not provider.contains("later") and not provider.contains("failed")
