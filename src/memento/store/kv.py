"""Key-value tables in a store's SQLite file, for memento-ml 1.2's providers:
``FileSystemCacheProvider`` (a table per cache, ``key, value, value_file, updated``; large
values in files of the side directory) and ``FileSystemCheckpointing`` (the store's
``checkpoints`` table, ``key, value, updated``). Values are bytes; the providers pickle.
"""

from __future__ import annotations

import sqlite3
import time

from memento.store.handles import SQLiteHandle
from memento.store.paths import remove_side_file, side_file, write_side_file
from memento.store.sqlite import INLINE_LIMIT

Key = str | bytes | int


class KeyValueTable:
    """The table ``name`` behind ``handle`` (which connects on first use; :meth:`create`
    makes the table when missing).

    ``value_files=True``: a value larger than the store's inline limit goes to a file of the
    side directory (when the handle has a file), written before its row is committed.
    ``name`` must be a checked identifier: it goes into the SQL as is.
    """

    def __init__(self, handle: SQLiteHandle, name: str, *, value_files: bool) -> None:
        self.handle = handle
        self.value_files = value_files
        self._table = f'"{name}"'

    def create(self) -> KeyValueTable:
        """Make the table if it is not there (a memento store has ``checkpoints``; a caller's
        own connection may not)."""
        columns = (
            "key PRIMARY KEY, value BLOB, value_file TEXT, updated REAL NOT NULL"
            if self.value_files
            else "key TEXT PRIMARY KEY, value BLOB NOT NULL, updated REAL NOT NULL"
        )
        with self.handle.writing() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self._table} ({columns})")
        return self

    def find(self, key: Key) -> tuple[bytes | None, str | None] | None:
        """``(value, value_file)`` stored under ``key`` (one of them None), or None."""
        wanted = "value, value_file" if self.value_files else "value, NULL"
        with self.handle.reading() as conn:
            row = conn.execute(
                f"SELECT {wanted} FROM {self._table} WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def read(self, value: bytes | None, value_file: str | None) -> bytes | None:
        """The bytes a row found by :meth:`find` holds (its value file read, checked)."""
        if value_file:
            assert self.handle.path is not None
            return side_file(self.handle.path, value_file).read_bytes()
        return value

    def put(self, key: Key, data: bytes, *, file_name: str | None = None) -> None:
        """Store ``data`` under ``key``, replacing what was there, in one transaction; when
        large, in the value file ``file_name`` (a name for this key alone, in the side
        directory)."""
        path = self.handle.path
        value_file = None
        value: bytes | None = data
        if self.value_files and file_name and path is not None and len(data) > INLINE_LIMIT:
            value_file, value = file_name, None
            write_side_file(path, value_file, data)
        with self.handle.writing() as conn:
            old = self._old_file(conn, key)
            if self.value_files:
                conn.execute(
                    f"INSERT OR REPLACE INTO {self._table} (key, value, value_file, updated) "
                    "VALUES (?, ?, ?, ?)",
                    (key, value, value_file, time.time()),
                )
            else:
                conn.execute(
                    f"INSERT OR REPLACE INTO {self._table} (key, value, updated) VALUES (?, ?, ?)",
                    (key, value, time.time()),
                )
        if old and path is not None and old != value_file:
            remove_side_file(path, old)

    def delete(self, key: Key) -> None:
        """Forget ``key`` (no error when it is not there), with its value file."""
        with self.handle.writing() as conn:
            old = self._old_file(conn, key)
            conn.execute(f"DELETE FROM {self._table} WHERE key = ?", (key,))
        if old and self.handle.path is not None:
            remove_side_file(self.handle.path, old)

    def contains(self, key: Key) -> bool:
        with self.handle.reading() as conn:
            row = conn.execute(f"SELECT 1 FROM {self._table} WHERE key = ?", (key,)).fetchone()
        return row is not None

    def count(self) -> int:
        with self.handle.reading() as conn:
            count: int = conn.execute(f"SELECT count(*) FROM {self._table}").fetchone()[0]
        return count

    def keys(self) -> list[Key]:
        """Every key, oldest write first."""
        with self.handle.reading() as conn:
            rows = conn.execute(f"SELECT key FROM {self._table} ORDER BY updated").fetchall()
        return [row[0] for row in rows]

    def _old_file(self, conn: sqlite3.Connection, key: Key) -> str | None:
        if not self.value_files:
            return None
        row = conn.execute(f"SELECT value_file FROM {self._table} WHERE key = ?", (key,)).fetchone()
        return row[0] if row is not None else None


__all__ = ["Key", "KeyValueTable"]
