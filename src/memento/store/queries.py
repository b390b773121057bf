"""The SQLite backend's read-side SQL: the plan's look-up, result rows, and what
``memento status`` and ``open_results`` summarise; and the look at a memento-ml 1.2 file.

Functions of an open connection, so that a read-only one (or the in-memory stand-in for an
empty file) serves as well as the writer's. :class:`memento.store.sqlite.SQLiteStore` is
their only caller outside this module.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from memento.exceptions import StoreError
from memento.store.base import (
    PROVENANCE_COLUMNS,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    provenance_record,
    result_record,
)
from memento.store.connection import connect_readonly
from memento.store.leases import LEASE_COLUMNS, Lease, lease_of

#: Keys per ``IN (...)``: well under SQLite's limit on bound parameters.
CHUNK = 500
#: The tables memento-ml 1.2 creates (``FileSystemCacheProvider``, ``FileSystemCheckpointing``).
LEGACY_TABLES = ("cache", "checkpoint_table")


def tables(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def is_empty(conn: sqlite3.Connection) -> bool:
    """No tables, indexes or views at all: an empty file, or a database nobody filled yet."""
    return not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]


def columns_of(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def is_legacy_store(conn: sqlite3.Connection) -> bool:
    """Whether the database behind ``conn`` was written by memento-ml 1.2: no ``meta`` table,
    and a ``cache`` or ``checkpoint_table`` table with 1.2's columns ``(key, ts, value)``."""
    present = tables(conn)
    if "meta" in present:
        return False
    return any(
        name in present and columns_of(conn, name) == {"key", "ts", "value"}
        for name in LEGACY_TABLES
    )


def read_legacy_store(path: Path) -> tuple[list[tuple[bytes, str]], int]:
    """The ``(key, value)`` rows of a memento-ml 1.2 file's ``cache`` table, newest first, and
    its number of checkpoints, read through a read-only connection."""
    if not path.is_file():
        raise StoreError(f"No memento-ml 1.2 store at {path}: check the path.")
    try:
        conn = connect_readonly(path)
        try:
            if not is_legacy_store(conn):
                raise StoreError(
                    f"{path} is not a memento-ml 1.2 store (it has no 1.2 'cache' or "
                    "'checkpoint_table' table); nothing to import."
                )
            present = {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
            rows: list[tuple[bytes, str]] = []
            if "cache" in present:
                rows = conn.execute("SELECT key, value FROM cache ORDER BY ts DESC").fetchall()
            count = 0
            if "checkpoint_table" in present:
                (count,) = conn.execute("SELECT count(*) FROM checkpoint_table").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} cannot be read as a memento-ml 1.2 store ({exc})") from None
    return rows, count


def by_keys(
    conn: sqlite3.Connection, sql: str, keys: Sequence[str], first: Sequence[Any] = ()
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql`` (its ``{}`` is where the ``?`` of a chunk of keys go, after the
    parameters ``first``), run over ``keys`` in chunks of :data:`CHUNK`."""
    for start in range(0, len(keys), CHUNK):
        chunk = list(keys[start : start + CHUNK])
        yield from conn.execute(sql.format(",".join("?" * len(chunk))), [*first, *chunk])


# -- leases ----------------------------------------------------------------------------------
def leases(conn: sqlite3.Connection, keys: Sequence[str] | None = None) -> dict[str, Lease]:
    """The leases on ``keys`` (all, when ``None``): key -> :class:`Lease`."""
    select = f"SELECT {', '.join(LEASE_COLUMNS)} FROM leases"
    if keys is None:
        return {row[0]: lease_of(row) for row in conn.execute(select + " ORDER BY claimed")}
    return {row[0]: lease_of(row) for row in by_keys(conn, select + " WHERE key IN ({})", keys)}


# -- results ---------------------------------------------------------------------------------
def lookup(
    conn: sqlite3.Connection, keys: Sequence[str], columns: Sequence[str]
) -> dict[str, tuple[Any, ...]]:
    """Rows of ``results`` for the given keys that exist, as key -> tuple of ``columns``."""
    cols = ", ".join(("key", *columns))
    found: dict[str, tuple[Any, ...]] = {}
    if len(keys) > 4 * CHUNK:
        # Many keys: one sequential scan beats thousands of index probes when they are
        # a good part of the table.
        (count,) = conn.execute("SELECT count(*) FROM results").fetchone()
        if 4 * len(keys) >= count:
            wanted = set(keys)
            for row in conn.execute(f"SELECT {cols} FROM results"):
                if row[0] in wanted:
                    found[row[0]] = row[1:]
            return found
    for row in by_keys(conn, f"SELECT {cols} FROM results WHERE key IN ({{}})", keys):
        found[row[0]] = row[1:]
    return found


def rows(
    conn: sqlite3.Connection,
    status: str | None,
    experiment: str | None,
    key_prefix: str | None,
    with_output: bool = False,
) -> Iterator[dict[str, Any]]:
    """All result rows as dicts (``params`` and ``metrics`` decoded from JSON). The captured
    ``output`` (up to 1 MiB a row) is read only when asked for."""
    columns = RESULT_COLUMNS if with_output else tuple(c for c in RESULT_COLUMNS if c != "output")
    clauses, args = [], []
    if status is not None:
        clauses.append("status = ?")
        args.append(status)
    if experiment is not None:
        clauses.append("experiment = ?")
        args.append(experiment)
    if key_prefix is not None:
        clauses.append("key LIKE ? ESCAPE '\\'")
        args.append(key_prefix.replace("\\", "\\\\").replace("%", "\\%") + "%")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    cursor = conn.execute(f"SELECT {', '.join(columns)} FROM results{where} ORDER BY rowid", args)
    for row in cursor:
        yield result_record(columns, row)


def result_states(conn: sqlite3.Connection) -> Iterator[tuple[Any, ...]]:
    yield from conn.execute(
        "SELECT key, experiment, status, params, fingerprint, error_type, error_message, "
        "updated FROM results ORDER BY rowid"
    )


def find_jobs(conn: sqlite3.Connection, executor: str, keys: Sequence[str]) -> dict[str, str]:
    sql = "SELECT key, job_id FROM jobs WHERE executor = ? AND key IN ({})"
    return dict(by_keys(conn, sql, keys, first=(executor,)))


# -- what status shows -----------------------------------------------------------------------
def latest_fingerprints(conn: sqlite3.Connection) -> dict[str, str]:
    # Runs come last, so that a run's fingerprint wins over its results'.
    latest = dict(
        conn.execute(
            "SELECT experiment, fingerprint FROM results "
            "WHERE fingerprint IS NOT NULL AND fingerprint != '' ORDER BY updated, rowid"
        )
    )
    latest.update(
        conn.execute(
            "SELECT experiment, fingerprint FROM runs "
            "WHERE fingerprint IS NOT NULL AND fingerprint != '' ORDER BY started, rowid"
        )
    )
    return latest


def experiment_names(conn: sqlite3.Connection) -> set[str]:
    names = {r[0] for r in conn.execute("SELECT DISTINCT experiment FROM results")}
    return names | {r[0] for r in conn.execute("SELECT DISTINCT experiment FROM running")}


def in_flight(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT key, run_id, experiment, params, submitted FROM running ORDER BY submitted"
    ).fetchall()


_RUN_COLUMNS = ", ".join(RUN_COLUMNS)


def runs(conn: sqlite3.Connection, limit: int | None, running_only: bool) -> list[tuple[Any, ...]]:
    if running_only:
        query = f"SELECT {_RUN_COLUMNS} FROM runs WHERE state = 'running' ORDER BY started"
        return conn.execute(query).fetchall()
    query = f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started DESC LIMIT ?"
    return conn.execute(query, (-1 if limit is None else limit,)).fetchall()


def provenance(
    conn: sqlite3.Connection, run_ids: Sequence[str] | None
) -> dict[str, dict[str, Any]]:
    """The ``provenance`` rows of ``run_ids`` (all, when ``None``): run id -> record."""
    select = f"SELECT {', '.join(PROVENANCE_COLUMNS)} FROM provenance"
    found = (
        conn.execute(select)
        if run_ids is None
        else by_keys(conn, select + " WHERE run_id IN ({})", run_ids)
    )
    return {row[0]: provenance_record(row) for row in found}


def run_count(conn: sqlite3.Connection) -> int:
    count: int = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    return count


def last_activity(conn: sqlite3.Connection) -> float | None:
    last: float | None = conn.execute(
        "SELECT max(t) FROM (SELECT max(updated) AS t FROM results "
        "UNION ALL SELECT max(max(started), coalesce(max(finished), 0)) FROM runs "
        "UNION ALL SELECT max(submitted) FROM running)"
    ).fetchone()[0]
    return last


__all__ = [
    "CHUNK",
    "LEGACY_TABLES",
    "columns_of",
    "experiment_names",
    "find_jobs",
    "in_flight",
    "is_empty",
    "is_legacy_store",
    "last_activity",
    "latest_fingerprints",
    "lookup",
    "provenance",
    "read_legacy_store",
    "result_states",
    "rows",
    "run_count",
    "runs",
    "tables",
]
