"""SQLite connections, written once for every part of the store: the one write transaction,
the one retry while another connection holds a lock, and read-only opening.

A lock error is recognised by SQLite's result code (``SQLITE_BUSY``, ``SQLITE_LOCKED``),
which ``sqlite3`` exceptions carry from Python 3.11 on; before that, by the text SQLite gives
those two codes (``sqlite3_errstr``), which is fixed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from memento.store.paths import writable_place

T = TypeVar("T")

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
#: What SQLite says for those codes, whatever the statement (Python 3.10 has no code).
_BUSY_TEXTS = ("database is locked", "database table is locked", "database schema is locked")


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` says another connection holds a lock that this one needs."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (_SQLITE_BUSY, _SQLITE_LOCKED)  # an extended code's primary one
    return str(exc).startswith(_BUSY_TEXTS)


def retry_when_busy(action: Callable[[], T], *, seconds: float = 30.0) -> T:
    """``action()``, tried again while another connection holds a lock it needs.

    The busy timeout covers most statements; not changing the journal mode (an exclusive lock
    taken without waiting), nor a ``BEGIN IMMEDIATE`` racing a new store's schema.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front (waiting on the
    busy timeout), so concurrent writers queue instead of failing mid-transaction; committed
    at the end of the block, rolled back if it raised. On a connection with a transaction
    already open (a caller's own connection), the block joins it and leaves it open."""
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


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that cannot write to ``path`` or create anything beside it.

    The path goes into a ``file:`` URI percent-encoded, so ``?``, ``#`` and ``%`` in it are
    file name characters, not URI syntax.
    """
    base = Path(path).absolute().as_uri()
    conn = sqlite3.connect(base + "?mode=ro", uri=True, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        if writable_place(path):
            raise
        # A read-only place (an archive, a read-only mount): reading a WAL database needs
        # its -shm file, which cannot be created here. Nothing can write to the file there
        # either, so SQLite may treat it as immutable (no locks, no -shm).
        conn.close()
        conn = sqlite3.connect(
            base + "?mode=ro&immutable=1", uri=True, timeout=30, check_same_thread=False
        )
    return conn


#: What the SQLite backend lets through besides :class:`~memento.exceptions.StoreError`
#: (a file damaged while it is read): the ``memento`` command reports these in one line.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)

__all__ = ["DATABASE_ERRORS", "connect_readonly", "is_busy", "retry_when_busy", "transaction"]
