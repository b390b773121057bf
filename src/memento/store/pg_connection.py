"""PostgreSQL connections, written once for the backend: connecting (errors as one line
without the password), one connection per process made when first needed, and a message of
several statements sent as one transaction.

The connection is in autocommit mode and every use is an explicit transaction: one message
(PostgreSQL runs the statements of a message as one transaction, all or nothing; psycopg's
``ClientCursor`` binds the parameters here, so that a message may hold several), or
``BEGIN`` ... ``COMMIT``. psycopg (the ``postgres`` extra) is imported on first use.
"""

from __future__ import annotations

import functools
import os
import threading
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit

from memento._util.optional import optional_import
from memento.exceptions import StoreError
from memento.store.backends import redact

if TYPE_CHECKING:
    import psycopg

Row = tuple[Any, ...]
#: A statement and its parameters.
Sql = tuple[str, Sequence[Any]]


@functools.cache
def driver() -> types.ModuleType:
    return optional_import("psycopg", "postgres", "A PostgreSQL store")


def message(statements: Sequence[Sql]) -> tuple[str, list[Any]]:
    """Statements as the text and parameters of one message."""
    return "; ".join(text for text, _ in statements), [a for _, args in statements for a in args]


def secrets(url: str) -> list[str]:
    """The password of ``url`` (in its user part or query), as written and decoded."""
    try:
        parts = urlsplit(url)
        found = [parts.password or "", parts.netloc.rpartition("@")[0].partition(":")[2]]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in ("password", "sslpassword")]
    except ValueError:
        return []
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def one_line(url: str, exc: BaseException) -> str:
    """A psycopg error as one line of text, without ``url``'s password."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in secrets(url):
        text = text.replace(secret, "***")
    return redact(text)


def connect(url: str, *, readonly: bool) -> psycopg.Connection[Row]:
    pg = driver()
    try:
        conn: psycopg.Connection[Row] = pg.connect(
            url,
            autocommit=True,
            connect_timeout=30,
            application_name="memento",
            cursor_factory=pg.ClientCursor,
        )
        if readonly:
            conn.execute("SET default_transaction_read_only = on")
    except pg.Error as exc:
        raise StoreError(
            f"Cannot connect to the PostgreSQL store {redact(url)}: {one_line(url, exc)}. "
            "Check the URL, and that the server runs and lets this user in."
        ) from None
    return conn


class Connected:
    """A connection made when first needed, one use at a time; after a fork the child
    leaves the parent's connection alone (closing it would end the parent's session) and
    connects anew.

    The connection is in autocommit mode and every use is an explicit transaction: one
    message (PostgreSQL runs the statements of a message as one transaction, all or nothing;
    psycopg's ``ClientCursor`` binds the parameters here, so that a message may hold several),
    or ``BEGIN`` ... ``COMMIT``, rolled back on any error.
    """

    url: str
    readonly: bool = False
    _conn: psycopg.Connection[Row] | None = None
    _pid: int = 0

    def __init__(self, url: str) -> None:
        driver()  # a missing extra is said at once, not at the first query
        self.url = url
        self._lock = threading.RLock()

    @property
    def name(self) -> str:
        return redact(self.url)

    def _connection(self) -> psycopg.Connection[Row]:
        if self._conn is not None and (self._pid != os.getpid() or self._conn.closed):
            self._conn = None  # psycopg never closes a connection of another process
        if self._conn is None:
            self._conn = connect(self.url, readonly=self.readonly)
            self._pid = os.getpid()
            self._connected()
        return self._conn

    def _connected(self) -> None:
        """What to check on a new connection."""

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Row]]:
        """A cursor; psycopg's errors become :class:`StoreError`, and a transaction an error
        left open is rolled back."""
        with self._guarded() as conn, conn.cursor() as cursor:
            yield cursor

    @contextmanager
    def _guarded(self) -> Iterator[psycopg.Connection[Row]]:
        """The connection, one use at a time; after an error it is recovered (see
        :meth:`_recover`) and psycopg's errors become :class:`StoreError`."""
        pg = driver()
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except BaseException as exc:
                self._recover(conn)
                if isinstance(exc, pg.Error):
                    self._fail(exc)
                raise

    def _recover(self, conn: psycopg.Connection[Row]) -> None:
        """After an error: roll back what it left open, or drop a lost connection."""
        pg = driver()
        try:
            if not (conn.broken or conn.closed):
                if conn.info.transaction_status != pg.pq.TransactionStatus.IDLE:
                    conn.rollback()
                return
        except pg.Error:
            pass
        self._conn = None

    def _send(self, *statements: Sql) -> int:
        """Run ``statements`` as one message (one round trip, one transaction); how many
        rows the first one touched."""
        with self._cursor() as cursor:
            cursor.execute(*message(statements))
            return cursor.rowcount

    def _send_bound(self, *statements: Sql) -> None:
        """Run ``statements`` as one transaction in one round trip (a pipeline), each with
        its parameters bound by the server: for large writes, whose values would cost much to
        quote into the text of one message."""
        with (
            self._guarded() as conn,
            conn.pipeline(),
            conn.transaction(),
            driver().Cursor(conn) as cursor,
        ):
            for text, args in statements:
                cursor.execute(text, args)

    def _fail(self, exc: BaseException) -> NoReturn:
        raise StoreError(f"PostgreSQL store {self.name}: {one_line(self.url, exc)}") from None

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_conn", "_pid", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.RLock())


__all__ = ["Connected", "Row", "Sql", "connect", "driver", "message", "one_line", "secrets"]
