"""The store: the only code that speaks SQL.

``base`` is the seam (:class:`BaseStore`, the interface every backend implements);
``backends.open_store`` opens a location with its backend; ``sqlite`` is the SQLite backend
(schema, writes) with ``queries`` (its read-side SQL) and ``connection`` (its one
transaction, retry and read-only helpers); ``kv`` and ``handles`` keep memento-ml 1.2's
provider tables; ``paths`` keeps reads, writes and deletions inside the side directory;
``safe_pickle`` reads stored values without running code. ``Store`` is ``SQLiteStore``.
"""

from __future__ import annotations

from memento.store.backends import open_store
from memento.store.base import BaseStore
from memento.store.sqlite import (
    DEFAULT_FILENAME,
    SQLiteStore,
    Store,
    StoredOutcome,
    connect_readonly,
    default_store_path,
    is_legacy_store,
    side_directory,
)

__all__ = [
    "DEFAULT_FILENAME",
    "BaseStore",
    "SQLiteStore",
    "Store",
    "StoredOutcome",
    "connect_readonly",
    "default_store_path",
    "is_legacy_store",
    "open_store",
    "side_directory",
]
