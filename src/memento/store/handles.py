"""SQLite plumbing shared by :mod:`memento.compat.caching` and
:mod:`memento.compat.checkpointing`: one connection per process (reopened after ``fork``),
stores opened safely by several processes at once, and temporary database files removed by
the process that made them."""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memento.exceptions import LegacyStoreError, StoreError
from memento.store.sqlite import Store, side_directory

_abandoned: list[Any] = []  # connections inherited through fork: kept alive, never used


class SQLiteHandle:
    """One SQLite connection per process (and a lock for its threads), opened lazily.

    A connection must not be used across ``fork``, so a forked child opens its own; the
    inherited one is kept referenced and untouched, since closing it could disturb the parent.
    """

    def __init__(self, path: Path | None, connection: sqlite3.Connection | None) -> None:
        self.path = path
        self._given = connection
        self._store: Store | None = None
        self._pid = -1
        self._lock = threading.RLock()

    def _conn(self) -> sqlite3.Connection:
        if self._given is not None:
            return self._given
        if self._pid != os.getpid():
            if self._store is not None:
                _abandoned.append(self._store)
            self._lock = threading.RLock()
            assert self.path is not None
            self._store = open_store(self.path)
            self._pid = os.getpid()
        assert self._store is not None
        return self._store.conn

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._lock:
            yield conn

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front (waiting on
        the busy timeout), so concurrent writers queue instead of failing mid-transaction.
        On a caller's connection with a transaction already open, the write joins it."""
        conn = self._conn()
        with self._lock:
            own = not conn.in_transaction
            if own:
                conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if own:
                    conn.execute("ROLLBACK")
                raise
            if own:
                conn.execute("COMMIT")

    def close(self) -> None:
        if self._store is not None and self._pid == os.getpid():
            self._store.close()
        self._store = None
        self._pid = -1


def open_store(path: Path, *, timeout: float = 30.0) -> Store:
    """Open (creating if needed) the memento store at ``path``, tolerating other processes
    creating it at the same moment (brief 'database is locked' or half-made schema)."""
    deadline = time.monotonic() + timeout
    half_made = 0
    while True:
        store = Store(path)
        try:
            store.conn  # noqa: B018 - opens, creates the schema
            return store
        except LegacyStoreError:
            store.close()
            raise  # its message says what to do; retrying cannot change it
        except StoreError as exc:
            store.close()
            text = str(exc)
            if "locked" in text and time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            if "not a memento store" in text and half_made < 50:
                # Another process may be between creating the file and its schema.
                half_made += 1
                time.sleep(0.01)
                continue
            if "not a memento store" in text:
                raise StoreError(f"{text}; give a new filepath") from None
            raise


def warn_both(what: str) -> None:
    """1.2 took a connection and a filepath and used the connection: still so, but say it."""
    warnings.warn(
        f"{what} got both a connection and a filepath; the connection is used and the "
        "filepath ignored (pass only one)",
        UserWarning,
        stacklevel=3,
    )


def temporary_database(suffix: str) -> Path:
    """A new, empty file in the temporary directory, removed (with its WAL files and side
    directory) when this process exits."""
    fd, name = tempfile.mkstemp(prefix="memento-", suffix=suffix)
    os.close(fd)
    path = Path(name)
    atexit.register(_remove_database, path, os.getpid())
    return path


def _remove_database(path: Path, owner: int) -> None:
    if os.getpid() != owner:
        return
    for extra in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(f"{path}{extra}")
        except OSError:
            pass
    shutil.rmtree(side_directory(path), ignore_errors=True)
