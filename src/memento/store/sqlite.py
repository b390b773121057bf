"""The result store: one SQLite file (WAL), plus a directory beside it for large values and
checkpoints.

Layout for ``cache_path="runs/grid.sqlite"``::

    runs/grid.sqlite            the database (schema in docs/store.md)
    runs/grid.sqlite-wal/-shm   SQLite's write-ahead log while a run writes
    runs/grid.sqlite.d/values/       return values too large to keep inline (atomic files)
    runs/grid.sqlite.d/checkpoints/  checkpoints, written by the workers themselves

Every outcome is committed by the driver in its own transaction as it arrives (several that
arrive together share one), so a crash of anything loses at most the experiments in flight.
The store can be read with plain SQL, and opened read-only, while a run writes to it.

An empty file (what ``tempfile.NamedTemporaryFile(delete=False)`` leaves) is a new store. Any
other file is looked at read-only before it is opened for writing, so that a file that is not
a memento store (a memento-ml 1.2 store, another program's database) is refused untouched:
not even its journal mode changes.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import memento.store.queries as queries
from memento.exceptions import LegacyStoreError, StoreError
from memento.store.base import (
    PROVENANCE_COLUMNS,
    RESULT_COLUMNS,
    BaseStore,
    StoredOutcome,
    info_text,
    metrics_json,
    provenance_row,
)
from memento.store.connection import connect_readonly, retry_when_busy, transaction
from memento.store.leases import LEASE_COLUMNS, Claim, Lease, decide, lease_row
from memento.store.mounts import network_filesystem
from memento.store.outputs import remove_recorded
from memento.store.paths import (
    INLINE_LIMIT,
    check_writable_place,
    remove_side_file,
    side_directory,
    side_file,
    side_file_mode,
    value_file_name,
    write_side_file,
)
from memento.store.queries import is_legacy_store
from memento.store.values import extension

logger = logging.getLogger("memento")

STORE_FORMAT = "memento-store"
SCHEMA_VERSION = 5
DEFAULT_FILENAME = "memento.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    key           TEXT PRIMARY KEY,
    experiment    TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    params        TEXT NOT NULL,
    value         BLOB,
    value_file    TEXT,
    error_type    TEXT,
    error_message TEXT,
    traceback     TEXT,
    error         BLOB,
    attempts      INTEGER NOT NULL DEFAULT 1,
    host          TEXT,
    pid           INTEGER,
    start_time    REAL,
    end_time      REAL,
    runtime       REAL,
    cpu_time      REAL,
    peak_rss      INTEGER,
    peak_vms      INTEGER,
    metrics       TEXT,
    progress      REAL,
    fingerprint   TEXT,
    version       TEXT,
    run_id        TEXT,
    updated       REAL NOT NULL,
    output        TEXT,
    value_format  TEXT,
    value_info    TEXT,
    output_dir    TEXT,
    kind          TEXT,
    stacks        TEXT
);
CREATE INDEX IF NOT EXISTS results_by_experiment ON results (experiment, status);
CREATE TABLE IF NOT EXISTS runs (
    run_id     TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    host       TEXT,
    pid        INTEGER,
    started    REAL NOT NULL,
    finished   REAL,
    total      INTEGER,
    to_run     INTEGER,
    cached     INTEGER,
    done       INTEGER DEFAULT 0,
    failed     INTEGER DEFAULT 0,
    state      TEXT NOT NULL DEFAULT 'running',
    fingerprint TEXT
);
CREATE TABLE IF NOT EXISTS running (
    key        TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    experiment TEXT NOT NULL,
    params     TEXT NOT NULL,
    submitted  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    key        TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    updated    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    key        TEXT PRIMARY KEY,
    executor   TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    submitted  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    key        TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    host       TEXT NOT NULL,
    pid        INTEGER,
    claimed    REAL NOT NULL,
    heartbeat  REAL NOT NULL,
    expires    REAL NOT NULL,
    timeout    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_run ON leases (run_id);
CREATE TABLE IF NOT EXISTS provenance (
    run_id     TEXT PRIMARY KEY,
    recorded   REAL NOT NULL,
    git_root   TEXT,
    git_commit TEXT,
    dirty      INTEGER,
    diff       TEXT,
    diff_hash  TEXT,
    python     TEXT,
    platform   TEXT,
    host       TEXT,
    command    TEXT,
    packages   TEXT,
    gpus       TEXT
);
"""

#: What turns a store of an older schema version into the next one: columns added, nothing
#: removed or renamed, so that an older store reads as if it had been written by this version.
_MIGRATIONS: dict[int, tuple[tuple[str, str, str], ...]] = {
    # version 2: each experiment's captured output; each run's code fingerprint.
    1: (("results", "output", "TEXT"), ("runs", "fingerprint", "TEXT")),
    # version 3: the leases table (below).
    2: (),
    # version 4: how each value is stored, and what it is; each experiment's output folder;
    # the provenance table (below). Values without a format are pickles, as before.
    3: (
        ("results", "value_format", "TEXT"),
        ("results", "value_info", "TEXT"),
        ("results", "output_dir", "TEXT"),
    ),
    # version 5: each failure's kind (error, timeout, crash, oom, interrupted,
    # infrastructure; NULL for a success, and for failures stored before: see
    # memento.exceptions.kind_of_stored), and the threads' stacks when it timed out.
    4: (("results", "kind", "TEXT"), ("results", "stacks", "TEXT")),
}
#: The tables a version added (created from _SCHEMA by the migration to it).
_NEW_TABLES: dict[int, tuple[str, ...]] = {2: ("leases",), 3: ("provenance",)}


def default_store_path(cache_path: str | os.PathLike[str] | None = None) -> Path:
    """``cache_path``, else ``$MEMENTO_CACHE_PATH``, else ``memento.sqlite`` in the cwd.

    ``None`` and ``""`` both fall through to the environment, as in memento-ml 1.2. A path
    naming an existing directory means ``memento.sqlite`` inside it.
    """
    raw = os.fspath(cache_path) if cache_path is not None else ""
    if not raw:
        raw = os.environ.get("MEMENTO_CACHE_PATH", "")
    path = Path(raw) if raw else Path(DEFAULT_FILENAME)
    path = path.expanduser()
    if path.is_dir():
        path = path / DEFAULT_FILENAME
    return path.absolute()


def _empty_store() -> sqlite3.Connection:
    """An in-memory store with the schema and nothing in it: what reading an empty file sees."""
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.executescript(_SCHEMA)
    conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", _meta_rows())
    conn.commit()
    return conn


def _meta_rows() -> list[tuple[str, str]]:
    return [
        ("format", STORE_FORMAT),
        ("schema_version", str(SCHEMA_VERSION)),
        ("created", str(time.time())),
    ]


class SQLiteStore(BaseStore):
    """A memento store in the SQLite file ``path`` (``memento.store.Store`` is this class).
    Opened lazily; ``readonly=True`` never writes or creates.

    Example::

        with Store("memento.sqlite", readonly=True) as store:
            for row in store.rows(status="failed"):
                print(row["params"], row["error_type"])

    :attr:`conn` is the open ``sqlite3.Connection``, for tests and plain-SQL readers.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path).absolute()
        self.location = str(self.path)
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None

    @property
    def directory(self) -> Path:
        return side_directory(self.path)

    @property
    def checkpoint_directory(self) -> Path:
        return self.directory / "checkpoints"

    def side_file_mode(self) -> int | None:
        return side_file_mode(self.path)

    def delete_checkpoints(self, keys: Sequence[str]) -> None:
        checkpoints = self.checkpoint_directory
        if not keys or not checkpoints.is_dir():
            return
        for key in keys:
            try:
                (checkpoints / f"{key}.ckpt").unlink()
            except FileNotFoundError:
                pass

    # -- connection ------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def open(self) -> SQLiteStore:
        _ = self.conn
        return self

    # Another process may be creating or migrating the same file at this moment: its locks
    # are brief, so opening waits for them (retry_when_busy) rather than failing.
    def _open(self) -> sqlite3.Connection:
        if self.readonly:
            return self._open_readonly()
        if self.path.is_file() and self.path.stat().st_size:
            # Look before writing: opening for writing may roll back a journal and switches
            # the file to WAL, which would modify a file that is not a memento store.
            self._open_readonly().close()
        check_writable_place(self.path)
        _warn_if_shared(self.path)
        try:
            return retry_when_busy(self._connect)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable memento store ({exc})") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            # Changing the journal mode takes its lock without waiting on the busy timeout.
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a committed transaction survives any process crash
            # (kill -9 included); only an OS crash or power cut can lose the last commits.
            conn.execute("PRAGMA synchronous = NORMAL")
            # Checking and creating the schema is one transaction, so that processes opening
            # a new store at the same moment never see each other's half-made schema.
            with transaction(conn):
                if "meta" in queries.tables(conn):
                    if self._check_format(conn) < SCHEMA_VERSION:
                        _migrate(conn)
                elif not queries.is_empty(conn):
                    raise StoreError(
                        f"{self.path} is an SQLite database but not a memento store; "
                        "choose another cache_path"
                    )
                else:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.executemany(
                        "INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)", _meta_rows()
                    )
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_readonly(self) -> sqlite3.Connection:
        """A read-only connection; for an empty file (a new store), an empty in-memory one."""
        if not self.path.is_file():
            raise StoreError(f"No memento store at {self.path}")
        try:
            return retry_when_busy(self._connect_readonly)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a readable memento store ({exc})") from None

    def _connect_readonly(self) -> sqlite3.Connection:
        conn = connect_readonly(self.path)
        try:
            if queries.is_empty(conn):
                conn.close()
                return _empty_store()
            if is_legacy_store(conn):
                raise LegacyStoreError(self.path)
            if self._check_format(conn) < SCHEMA_VERSION:
                _present_as_current(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_format(self, conn: sqlite3.Connection) -> int:
        """The store's schema version, when this memento can read it (its own or an older
        one it can migrate); a :class:`StoreError` otherwise."""
        try:
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            raise StoreError(f"{self.path} is not a memento store (no meta table)") from None
        if meta.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.path} is not a memento store (format {meta.get('format')!r})")
        version = meta.get("schema_version", "")
        if version.isdigit() and (int(version) == SCHEMA_VERSION or int(version) in _MIGRATIONS):
            return int(version)
        raise StoreError(
            f"{self.path} has store schema version {version!r}; this memento reads versions "
            f"{min(_MIGRATIONS)} to {SCHEMA_VERSION}. Upgrade memento, or use another cache_path."
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SQLiteStore:
        return self

    # -- reads -----------------------------------------------------------------------------
    def lookup(self, keys: Sequence[str], columns: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        return queries.lookup(self.conn, keys, columns)

    def rows(
        self,
        *,
        status: str | None = None,
        experiment: str | None = None,
        key_prefix: str | None = None,
        with_output: bool = False,
    ) -> Iterator[dict[str, Any]]:
        return queries.rows(self.conn, status, experiment, key_prefix, with_output)

    def result_states(self) -> Iterator[tuple[Any, ...]]:
        return queries.result_states(self.conn)

    def latest_fingerprints(self) -> dict[str, str]:
        return queries.latest_fingerprints(self.conn)

    def experiment_names(self) -> set[str]:
        return queries.experiment_names(self.conn)

    def in_flight(self) -> list[tuple[Any, ...]]:
        return queries.in_flight(self.conn)

    def runs(
        self, *, limit: int | None = None, running_only: bool = False
    ) -> list[tuple[Any, ...]]:
        return queries.runs(self.conn, limit, running_only)

    def run_count(self) -> int:
        return queries.run_count(self.conn)

    def last_activity(self) -> float | None:
        return queries.last_activity(self.conn)

    def value_path(self, value_file: str) -> Path:
        return self.side_file(value_file)

    def side_file(self, name: str) -> Path:
        """The file ``name`` (as a row stores it) inside the side directory, checked."""
        return side_file(self.path, name)

    # -- writes ----------------------------------------------------------------------------
    def write_outcomes(self, outcomes: Iterable[StoredOutcome]) -> None:
        """Store outcomes in one transaction; large values go to atomic side files first
        (unless the worker wrote them); then remove the checkpoints of those done, and side
        files that a new outcome no longer names."""
        outcomes = list(outcomes)
        if not outcomes:
            return
        rows = []
        keys = []
        leases = []
        for o in outcomes:
            value_file = o.value_file
            value = o.value
            if value is not None and len(value) > INLINE_LIMIT:
                value_file = value_file_name(o.key, extension(o.value_format))
                _ = self.conn  # the store file exists from here on
                write_side_file(self.path, value_file, value)
                value = None
            keys.append(o.key)
            leases.append((o.key, o.run_id))
            rows.append(_result_row(o, value, value_file))
        conn = self.conn
        marks = ",".join("?" * len(RESULT_COLUMNS))
        # Side files these rows may replace: none when the store never wrote one.
        has_files = (self.directory / "values").is_dir()
        with transaction(conn):
            before = queries.lookup(conn, keys, ("value_file",)) if has_files else {}
            conn.executemany(
                f"INSERT OR REPLACE INTO results ({', '.join(RESULT_COLUMNS)}) VALUES ({marks})",
                rows,
            )
            conn.executemany("DELETE FROM running WHERE key = ?", [(k,) for k in keys])
            conn.executemany("DELETE FROM leases WHERE key = ? AND run_id = ?", leases)
        # After the commit: a checkpoint is gone only once its result is stored.
        self.delete_checkpoints([o.key for o in outcomes if o.status == "done"])
        named = {row[RESULT_COLUMNS.index("value_file")] for row in rows}
        self._remove_side_files(name for (name,) in before.values() if name and name not in named)

    def _remove_side_files(self, names: Iterable[str]) -> None:
        for name in names:
            try:
                remove_side_file(self.path, name)
            except (OSError, StoreError) as exc:  # a crafted row: leave it
                logger.warning("Side file %s not removed: %s", name, exc)

    # -- provenance ------------------------------------------------------------------------
    def record_provenance(self, run_id: str, data: Mapping[str, Any]) -> None:
        marks = ",".join("?" * len(PROVENANCE_COLUMNS))
        with transaction(self.conn):
            self.conn.execute(
                f"INSERT OR REPLACE INTO provenance ({', '.join(PROVENANCE_COLUMNS)}) "
                f"VALUES ({marks})",
                provenance_row(run_id, time.time(), data),
            )

    def provenance(self, run_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        return queries.provenance(self.conn, run_ids)

    # -- leases ----------------------------------------------------------------------------
    def claim(
        self,
        run_id: str,
        keys: Sequence[str],
        *,
        since: float,
        lease_timeout: float,
        limit: int | None = None,
        known: Mapping[str, float] | None = None,
    ) -> Claim:
        conn = self.conn
        # BEGIN IMMEDIATE: one claimer at a time, so two never both see a key as free.
        with transaction(conn):
            now = time.time()
            stored = queries.lookup(conn, keys, ("updated", "run_id"))
            leased = queries.leases(conn, keys)
            claim = decide(
                run_id, keys, stored, leased, since=since, now=now, limit=limit, known=known
            )
            marks = ",".join("?" * len(LEASE_COLUMNS))
            conn.executemany(
                f"INSERT OR REPLACE INTO leases ({', '.join(LEASE_COLUMNS)}) VALUES ({marks})",
                [lease_row(key, run_id, now, lease_timeout) for key in claim.claimed],
            )
        return claim

    def heartbeat(self, run_id: str) -> int:
        now = time.time()
        with transaction(self.conn):
            cursor = self.conn.execute(
                "UPDATE leases SET heartbeat = ?, expires = ? + timeout WHERE run_id = ?",
                (now, now, run_id),
            )
        return cursor.rowcount

    def release(self, run_id: str, keys: Sequence[str] | None = None) -> None:
        with transaction(self.conn):
            if keys is None:
                self.conn.execute("DELETE FROM leases WHERE run_id = ?", (run_id,))
            else:
                self.conn.executemany(
                    "DELETE FROM leases WHERE key = ? AND run_id = ?", [(k, run_id) for k in keys]
                )

    def leases(self, keys: Sequence[str] | None = None) -> dict[str, Lease]:
        return queries.leases(self.conn, keys)

    def mark_running(self, run_id: str, experiment: str, items: Iterable[tuple[str, str]]) -> None:
        """Note experiments as in flight (``items`` are (key, params JSON))."""
        now = time.time()
        rows = [(key, run_id, experiment, params, now) for key, params in items]
        with transaction(self.conn):
            self.conn.executemany(
                "INSERT OR REPLACE INTO running (key, run_id, experiment, params, submitted) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def start_run(
        self,
        run_id: str,
        experiment: str,
        total: int,
        to_run: int,
        cached: int,
        fingerprint: str | None = None,
    ) -> None:
        """Note a run as started; ``fingerprint`` is its experiment's code fingerprint, which
        makes results with another fingerprint stale (see ``reading.latest_fingerprints``)."""
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO runs (run_id, experiment, host, pid, started, total, to_run, cached,"
                " fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    experiment,
                    socket.gethostname(),
                    os.getpid(),
                    time.time(),
                    total,
                    to_run,
                    cached,
                    fingerprint,
                ),
            )

    def finish_run(self, run_id: str, done: int, failed: int, state: str) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE runs SET finished = ?, done = ?, failed = ?, state = ? WHERE run_id = ?",
                (time.time(), done, failed, state, run_id),
            )
            self.conn.execute("DELETE FROM running WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM leases WHERE run_id = ?", (run_id,))

    def record_jobs(self, executor: str, jobs: Iterable[tuple[str, str]]) -> None:
        """Remember engine job ids (``(key, job_id)``), so a re-run can collect them."""
        now = time.time()
        rows = [(key, executor, job_id, now) for key, job_id in jobs]
        with transaction(self.conn):
            self.conn.executemany(
                "INSERT OR REPLACE INTO jobs (key, executor, job_id, submitted) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )

    def find_jobs(self, executor: str, keys: Sequence[str]) -> dict[str, str]:
        return queries.find_jobs(self.conn, executor, keys)

    def forget_jobs(self, keys: Sequence[str]) -> None:
        with transaction(self.conn):
            self.conn.executemany("DELETE FROM jobs WHERE key = ?", [(k,) for k in keys])

    def delete(self, keys: Sequence[str]) -> int:
        """Forget the results of ``keys`` (their side files and output folders too); returns how
        many were removed."""
        found = self.lookup(keys, ["value_file", "output_dir"])
        names = [name for (name, _) in found.values() if name]
        for name in names:
            self.side_file(name)  # every path is checked first: a crafted row stops it all
        with transaction(self.conn):
            self.conn.executemany("DELETE FROM results WHERE key = ?", [(k,) for k in found])
        for name in names:
            remove_side_file(self.path, name)
        remove_recorded({key: folder for key, (_, folder) in found.items()})
        return len(found)


def _result_row(o: StoredOutcome, value: bytes | None, value_file: str | None) -> tuple[Any, ...]:
    """``o`` as the ``results`` columns, in :data:`RESULT_COLUMNS` order (``updated``: now)."""
    return (
        o.key,
        o.experiment,
        o.status,
        o.params,
        value,
        value_file,
        o.error_type,
        o.error_message,
        o.traceback,
        o.error,
        o.attempts,
        o.host,
        o.pid,
        o.start_time,
        o.end_time,
        o.runtime,
        o.cpu_time,
        o.peak_rss,
        o.peak_vms,
        metrics_json(o.metrics),
        o.progress,
        o.fingerprint,
        o.version,
        o.run_id,
        time.time(),
        o.output,
        o.value_format,
        info_text(o.value_info),
        o.output_dir,
        o.kind,
        o.stacks,
    )


#: The store files already warned about being on a network filesystem (once a process).
_WARNED: set[Path] = set()


def _warn_if_shared(path: Path) -> None:
    """Warn once when ``path`` is on a network filesystem: SQLite's locks do not hold across
    hosts there, so drivers on several hosts writing one store can corrupt it."""
    if path in _WARNED:
        return
    _WARNED.add(path)
    fstype = network_filesystem(path.parent)
    if fstype is None:
        return
    logger.warning(
        "The store %s is on a network filesystem (%s). Drivers on one host may share it, "
        "but several hosts must not write to one SQLite file there (its locks do not hold "
        "across hosts, and the store can be corrupted). To share a grid between hosts, use "
        "a PostgreSQL store: cache_path='postgresql://user@host:5432/dbname' (docs/store.md).",
        path,
        fstype,
    )


def _schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return int(row[0])


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store of an older schema up to date, inside the caller's transaction (so that
    two processes opening the same old store migrate it once)."""
    version = _schema_version(conn)
    while version < SCHEMA_VERSION:
        for table, column, kind in _MIGRATIONS[version]:
            if column not in queries.columns_of(conn, table):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        for table in _NEW_TABLES.get(version, ()):
            for statement in _statements_of(table):
                conn.execute(statement)
        version += 1
    conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))


def _present_as_current(conn: sqlite3.Connection) -> None:
    """Let a read-only connection to an older store be read as the current schema: a
    temporary view per migrated table, with the added columns as NULL, shadows the table
    (SQLite looks a name up in ``temp`` before ``main``). Nothing is written to the file."""
    added: dict[str, list[str]] = {}
    for version in range(_schema_version(conn), SCHEMA_VERSION):
        for table, column, _kind in _MIGRATIONS[version]:
            added.setdefault(table, []).append(column)
        for table in _NEW_TABLES.get(version, ()):
            # An empty temporary table of the same shape (the file itself has none).
            for statement in _statements_of(table)[:1]:
                conn.execute(statement.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
    for table, columns in added.items():
        present = queries.columns_of(conn, table)
        extra = "".join(f", NULL AS {c}" for c in columns if c not in present)
        conn.execute(f"CREATE TEMP VIEW {table} AS SELECT *{extra} FROM main.{table}")


def _statements_of(table: str) -> list[str]:
    """The statements of _SCHEMA that create ``table`` and its indexes."""
    pattern = re.compile(rf"\b(EXISTS|ON) {table} \(")
    return [st.strip() for st in _SCHEMA.split(";") if pattern.search(st)]


#: ``Store(path)`` opens an SQLite store, as it always did (see :mod:`memento.store.base`).
Store = SQLiteStore

__all__ = [
    "DEFAULT_FILENAME",
    "INLINE_LIMIT",
    "SCHEMA_VERSION",
    "SQLiteStore",
    "Store",
    "StoredOutcome",
    "connect_readonly",
    "default_store_path",
    "is_legacy_store",
    "side_directory",
]
