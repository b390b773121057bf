"""SQLite plumbing of memento-ml 1.2's file-backed providers (:mod:`memento.compat.caching`,
:mod:`memento.compat.checkpointing`): one connection per process (reopened after ``fork``),
the connection ``with provider as conn`` gives, and temporary database files removed by the
process that made them. Their tables are :mod:`memento.store.kv`."""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memento.store.connection import transaction
from memento.store.paths import side_directory
from memento.store.sqlite import SQLiteStore

#: What a 1.2 provider's ``connection=`` must be.
Connection = sqlite3.Connection

_abandoned: list[Any] = []  # connections inherited through fork: kept alive, never used


class SQLiteHandle:
    """One SQLite connection per process (and a lock for its threads), opened lazily.

    A connection must not be used across ``fork``, so a forked child opens its own; the
    inherited one is kept referenced and untouched, since closing it could disturb the parent.
    """

    def __init__(self, path: Path | None, connection: sqlite3.Connection | None) -> None:
        self.path = path
        self._given = connection
        self._store: SQLiteStore | None = None
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
            self._store = SQLiteStore(self.path).open()
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
        """A write transaction (:func:`~memento.store.connection.transaction`); on a caller's
        connection with a transaction already open, the write joins it."""
        conn = self._conn()
        with self._lock, transaction(conn):
            yield conn

    def close(self) -> None:
        if self._store is not None and self._pid == os.getpid():
            self._store.close()
        self._store = None
        self._pid = -1


def check_connection(connection: object) -> None:
    """Refuse a ``connection=`` that is not a ``sqlite3.Connection`` (``None`` is fine)."""
    if connection is not None and not isinstance(connection, sqlite3.Connection):
        raise TypeError(f"connection must be a sqlite3.Connection, got {type(connection).__name__}")


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


_entered = threading.local()  # per thread: {id(provider): [connections from __enter__]}


def enter_connection(
    owner: object, path: Path | None, given: sqlite3.Connection | None
) -> sqlite3.Connection:
    """A connection for ``with owner as conn`` (1.2's file-backed providers): ``given``, or a
    new connection to ``path`` that :func:`exit_connection` commits and closes."""
    if given is not None:
        return given  # the caller's connection stays theirs, as in 1.2
    assert path is not None
    conn = sqlite3.connect(path, timeout=30.0)
    stacks: dict[int, list[sqlite3.Connection]] = _entered.__dict__.setdefault("stacks", {})
    stacks.setdefault(id(owner), []).append(conn)  # with-blocks may nest
    return conn


def exit_connection(owner: object, *, failed: bool) -> None:
    """End the innermost ``with owner as conn`` of this thread. 1.2 left its connection open,
    with any write it held uncommitted (and the file locked) until garbage collection."""
    stacks: dict[int, list[sqlite3.Connection]] = _entered.__dict__.get("stacks", {})
    stack = stacks.get(id(owner))
    if not stack:
        return  # built on a given connection
    conn = stack.pop()
    if not stack:
        del stacks[id(owner)]
    try:
        if failed:
            conn.rollback()
        else:
            conn.commit()
    finally:
        conn.close()


class SharedFileProvider:
    """What memento-ml 1.2's file-backed providers share: ``with provider as conn`` gives a
    connection to their file, and a copy sent to another process opens its own there.

    A subclass sets ``_connection`` (a connection it was built on, else ``None``) and
    ``_rows``, and says where its file is (:meth:`_file`), how to reopen its rows in another
    process (:meth:`_reopen`) and how to build a provider that can travel (``_share_hint``).
    """

    _connection: sqlite3.Connection | None
    _rows: Any
    _share_hint = "build it with a filepath to share it between processes"

    def _file(self) -> Path | None:
        raise NotImplementedError

    def _reopen(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> sqlite3.Connection:
        return enter_connection(self, self._file(), self._connection)

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        exit_connection(self, failed=exc_type is not None)

    def __getstate__(self) -> dict[str, Any]:
        if self._connection is not None:
            raise TypeError(
                f"A {type(self).__name__} built on a sqlite3 connection cannot be sent to "
                f"another process; {self._share_hint}"
            )
        state = dict(self.__dict__)
        state["_rows"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._rows = self._reopen()


__all__ = [
    "Connection",
    "SQLiteHandle",
    "SharedFileProvider",
    "check_connection",
    "enter_connection",
    "exit_connection",
    "temporary_database",
    "warn_both",
]
