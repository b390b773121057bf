"""memento-ml 1.2's ``FileSystemCheckpointing``: checkpoints kept in a store's SQLite file.

``Memento.run`` itself keeps checkpoints as atomic files beside the store (see
:class:`memento.worker.context.FileCheckpoints`); this class serves code that builds a
:class:`~memento.worker.context.Context` by hand.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memento.compat.caching import default_key_provider
from memento.store.handles import (
    Connection,
    SharedFileProvider,
    SQLiteHandle,
    check_connection,
    temporary_database,
    warn_both,
)
from memento.store.kv import KeyValueTable
from memento.worker.context import unpack_checkpoint


class FileSystemCheckpointing(SharedFileProvider):
    """Checkpoints in an SQLite file, safe to share between processes.

    Each write is one ``BEGIN IMMEDIATE`` transaction, so several processes may checkpoint into
    the same file at once. A copy sent to another process (it pickles) opens its own connection.

    Example::

        checkpoints = FileSystemCheckpointing("memento.sqlite")
        context = Context("my-key", checkpoints)
        context.checkpoint({"epoch": 3})
        checkpoints.get("my-key")     # {"epoch": 3}

    :param filepath: the SQLite file (a memento store; created when missing). Defaults to a new
        temporary file, removed when the process that made it exits.
    :param key: a key provider used by :meth:`make_key`.
    :param connection: an open ``sqlite3.Connection`` to use instead of ``filepath`` (such a
        provider cannot be sent to another process).
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str] | None = None,
        key: Callable[..., Any] | None = None,
        connection: Connection | None = None,
    ) -> None:
        if connection is not None and filepath is not None:
            warn_both("FileSystemCheckpointing")
            filepath = None
        check_connection(connection)
        self.key = key or default_key_provider
        self._connection = connection
        self._path: Path | None = None
        if connection is None:
            if filepath is None:
                filepath = temporary_database("_memento.checkpoint.sqlite")
            self._path = Path(filepath).expanduser().absolute()
        self._rows = _table(SQLiteHandle(self._path, connection)).create()

    @property
    def filepath(self) -> str | None:
        return str(self._path) if self._path is not None else None

    def get(self, key: Any) -> Any:
        """The state checkpointed under ``key``; ``KeyError`` when there is none."""
        return unpack_checkpoint(self.get_saved(key)).state

    def get_saved(self, key: Any) -> Any:
        """The checkpoint under ``key`` as it was saved (by a
        :class:`~memento.worker.context.Context`: the state with the metrics and progress);
        ``KeyError`` when there is none."""
        import cloudpickle

        row = self._rows.find(_text(key))
        if row is None:
            raise KeyError(f"No checkpoint for key {_text(key)!r}")
        return cloudpickle.loads(row[0])

    def set(self, key: Any, item: Any) -> None:
        """Store ``item`` under ``key``, replacing any earlier checkpoint (one transaction)."""
        import cloudpickle

        data = cloudpickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        self._rows.put(_text(key), data)

    def remove(self, key: Any) -> None:
        """Delete the checkpoint under ``key`` (no error when there is none)."""
        self._rows.delete(_text(key))

    def contains(self, key: Any) -> bool:
        """Whether a checkpoint exists under ``key``."""
        return self._rows.contains(_text(key))

    def make_key(self, *args: Any, **kwargs: Any) -> Any:
        """A key for the given arguments, from the key provider."""
        return self.key(*args, **kwargs)

    def close(self) -> None:
        """Close this process's connection (a later call opens a new one)."""
        self._rows.handle.close()

    def __enter__(self) -> Connection:
        """``with checkpoints as database: database.execute(sql)``, as in memento-ml 1.2.

        Gives a new ``sqlite3.Connection`` to the file, committed (or rolled back, if the block
        raised) and closed when the block ends. The checkpoints are the table ``checkpoints``
        (``key``, ``value`` (the cloudpickle), ``updated``); 1.2 called it
        ``checkpoint_table``. The file is a memento store, so its other tables are there too
        (docs/store.md). A provider built on a ``connection`` gives that connection, untouched.
        """
        return super().__enter__()

    _rows: KeyValueTable

    def _file(self) -> Path | None:
        return self._path

    def _reopen(self) -> Any:
        return _table(SQLiteHandle(self._path, None))

    def __str__(self) -> str:
        return f"Filesystem checkpoint, using {self.filepath or self._connection}"

    def __repr__(self) -> str:
        return f"FileSystemCheckpointing({self.filepath or self._connection!r})"


def _table(handle: SQLiteHandle) -> KeyValueTable:
    return KeyValueTable(handle, "checkpoints", value_files=False)


def _text(key: Any) -> str:
    if isinstance(key, bytes):
        return key.hex()
    return str(key)


__all__ = ["FileSystemCheckpointing"]
