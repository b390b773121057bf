"""The store: the only code that speaks SQL. ``sqlite`` is the SQLite backend (schema,
values, runs, in-flight rows, jobs); ``paths`` keeps reads and deletions inside the side
directory; ``safe_pickle`` reads stored values without running code."""

from __future__ import annotations

from memento.store.sqlite import (
    DEFAULT_FILENAME,
    Store,
    StoredOutcome,
    connect_readonly,
    default_store_path,
    is_legacy_store,
    side_directory,
)

__all__ = [
    "DEFAULT_FILENAME",
    "Store",
    "StoredOutcome",
    "connect_readonly",
    "default_store_path",
    "is_legacy_store",
    "side_directory",
]
