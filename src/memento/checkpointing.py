"""memento-ml 1.2's ``FileSystemCheckpointing``: checkpoints kept in a store's SQLite file.

``Memento.run`` itself keeps checkpoints as atomic files beside the store (see
:class:`memento.context.FileCheckpoints`); this class serves code that builds a
:class:`~memento.context.Context` by hand.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import tempfile
import time
from collections.abc import Callable
from typing import Any

from memento.store import Store


class FileSystemCheckpointing:
    """Checkpoints in an SQLite file, safe to share between processes.

    Example::

        checkpoints = FileSystemCheckpointing("memento.sqlite")
        context = Context("my-key", checkpoints)
        context.checkpoint({"epoch": 3})
        checkpoints.get("my-key")     # {"epoch": 3}

    :param filepath: the SQLite file (a memento store; created when missing). Defaults to a new
        temporary file.
    :param key: a key provider used by :meth:`make_key`.
    :param connection: an open ``sqlite3.Connection`` to use instead of ``filepath``.
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str] | None = None,
        key: Callable[..., Any] | None = None,
        connection: sqlite3.Connection | None = None,
    ) -> None:
        from memento.caching import default_key_provider

        self.key = key or default_key_provider
        self._connection = connection
        if connection is None:
            if filepath is None:
                fd, filepath = tempfile.mkstemp(suffix="_memento.checkpoint.sqlite")
                os.close(fd)
                os.unlink(filepath)
            self._store: Store | None = Store(filepath)
            self._store.conn  # noqa: B018 - create the schema now
        else:
            self._store = None
            connection.execute(
                "CREATE TABLE IF NOT EXISTS checkpoints "
                "(key TEXT PRIMARY KEY, value BLOB NOT NULL, updated REAL NOT NULL)"
            )
            connection.commit()

    @property
    def filepath(self) -> str | None:
        return str(self._store.path) if self._store is not None else None

    def _conn(self) -> sqlite3.Connection:
        return self._connection if self._connection is not None else self._store.conn  # type: ignore[union-attr]

    def get(self, key: Any) -> Any:
        """The checkpoint stored under ``key``; ``KeyError`` when there is none."""
        import cloudpickle

        row = self._conn().execute(
            "SELECT value FROM checkpoints WHERE key = ?", (_text(key),)
        ).fetchone()
        if row is None:
            raise KeyError(f"No checkpoint for key {_text(key)!r}")
        return cloudpickle.loads(row[0])

    def set(self, key: Any, item: Any) -> None:
        """Store ``item`` under ``key``, replacing any earlier checkpoint (one transaction)."""
        import cloudpickle

        data = cloudpickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        conn = self._conn()
        with conn if self._connection is not None else _Immediate(conn):
            conn.execute(
                "INSERT OR REPLACE INTO checkpoints (key, value, updated) VALUES (?, ?, ?)",
                (_text(key), data, time.time()),
            )

    def remove(self, key: Any) -> None:
        """Delete the checkpoint under ``key`` (no error when there is none)."""
        conn = self._conn()
        with conn if self._connection is not None else _Immediate(conn):
            conn.execute("DELETE FROM checkpoints WHERE key = ?", (_text(key),))

    def contains(self, key: Any) -> bool:
        """Whether a checkpoint exists under ``key``."""
        row = self._conn().execute(
            "SELECT 1 FROM checkpoints WHERE key = ?", (_text(key),)
        ).fetchone()
        return row is not None

    def make_key(self, *args: Any, **kwargs: Any) -> Any:
        """A key for the given arguments, from the key provider."""
        return self.key(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FileSystemCheckpointing({self.filepath or self._connection!r})"


class _Immediate:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _text(key: Any) -> str:
    if isinstance(key, bytes):
        return key.hex()
    return str(key)


__all__ = ["FileSystemCheckpointing"]
