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

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memento.exceptions import LegacyStoreError, StoreError
from memento.store.paths import check_writable_place, file_inside, writable_place

STORE_FORMAT = "memento-store"
SCHEMA_VERSION = 2
DEFAULT_FILENAME = "memento.sqlite"
#: Values whose pickle is larger than this go to a file in the side directory.
INLINE_LIMIT = 512 * 1024
_CHUNK = 500

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
    output        TEXT
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
"""

_RESULT_COLUMNS = (
    "key",
    "experiment",
    "status",
    "params",
    "value",
    "value_file",
    "error_type",
    "error_message",
    "traceback",
    "error",
    "attempts",
    "host",
    "pid",
    "start_time",
    "end_time",
    "runtime",
    "cpu_time",
    "peak_rss",
    "peak_vms",
    "metrics",
    "progress",
    "fingerprint",
    "version",
    "run_id",
    "updated",
    "output",
)

#: What turns a store of an older schema version into the next one: columns added, nothing
#: removed or renamed, so that an older store reads as if it had been written by this version.
_MIGRATIONS: dict[int, tuple[tuple[str, str, str], ...]] = {
    # version 2: each experiment's captured output; each run's code fingerprint.
    1: (("results", "output", "TEXT"), ("runs", "fingerprint", "TEXT")),
}


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


def side_directory(path: Path) -> Path:
    """The directory beside the store file that holds its large values and checkpoints."""
    return path.with_name(path.name + ".d")


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


#: The tables memento-ml 1.2 creates (``FileSystemCacheProvider``, ``FileSystemCheckpointing``).
LEGACY_TABLES = ("cache", "checkpoint_table")


def is_legacy_store(conn: sqlite3.Connection) -> bool:
    """Whether the database behind ``conn`` was written by memento-ml 1.2: no ``meta`` table,
    and a ``cache`` or ``checkpoint_table`` table with 1.2's columns ``(key, ts, value)``."""
    tables = _tables(conn)
    if "meta" in tables:
        return False
    for name in LEGACY_TABLES:
        if name in tables:
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({name})")}
            if columns == {"key", "ts", "value"}:
                return True
    return False


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _is_empty(conn: sqlite3.Connection) -> bool:
    """No tables, indexes or views at all: an empty file, or a database nobody filled yet."""
    return not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]


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


@dataclass
class StoredOutcome:
    """One row to write: everything the store keeps about one finished experiment."""

    key: str
    experiment: str
    status: str
    #: The parameters as JSON text, non-JSON values shown by name.
    params: str
    value: bytes | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    error: bytes | None = None
    attempts: int = 1
    host: str = ""
    pid: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    runtime: float | None = None
    cpu_time: float | None = None
    peak_rss: int | None = None
    peak_vms: int | None = None
    metrics: dict[str, list[tuple[Any, Any]]] = field(default_factory=dict)
    progress: float | None = None
    fingerprint: str = ""
    version: str | None = None
    run_id: str = ""
    #: What the experiment printed (stdout and stderr, interleaved; the end of it when long).
    output: str | None = None


class Store:
    """A memento store at ``path``. Opened lazily; ``readonly=True`` never writes or creates.

    Example::

        with Store("memento.sqlite", readonly=True) as store:
            for row in store.rows(status="failed"):
                print(row["params"], row["error_type"])
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path).absolute()
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None

    @property
    def directory(self) -> Path:
        return side_directory(self.path)

    @property
    def checkpoint_directory(self) -> Path:
        return self.directory / "checkpoints"

    def exists(self) -> bool:
        return self.path.is_file()

    # -- connection ------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if self.readonly:
            return self._open_readonly()
        if self.path.is_file() and self.path.stat().st_size:
            # Look before writing: opening for writing may roll back a journal and switches
            # the file to WAL, which would modify a file that is not a memento store.
            self._open_readonly().close()
        check_writable_place(self.path)
        try:
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 30000")
            _when_unlocked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            # NORMAL in WAL mode: a committed transaction survives any process crash
            # (kill -9 included); only an OS crash or power cut can lose the last commits.
            conn.execute("PRAGMA synchronous = NORMAL")
            # Checking and creating the schema is one transaction, so that processes opening
            # a new store at the same moment never see each other's half-made schema.
            with _transaction(conn):
                if "meta" in _tables(conn):
                    if self._check_format(conn) < SCHEMA_VERSION:
                        _migrate(conn)
                elif not _is_empty(conn):
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
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable memento store ({exc})") from None
        return conn

    def _open_readonly(self) -> sqlite3.Connection:
        """A read-only connection; for an empty file (a new store), an empty in-memory one."""
        if not self.path.is_file():
            raise StoreError(f"No memento store at {self.path}")
        try:
            conn = connect_readonly(self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a readable memento store ({exc})") from None
        try:
            if _is_empty(conn):
                conn.close()
                return _empty_store()
            if is_legacy_store(conn):
                raise LegacyStoreError(self.path)
            if self._check_format(conn) < SCHEMA_VERSION:
                _present_as_current(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.path} is not a readable memento store ({exc})") from None
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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------------------
    def lookup(self, keys: Sequence[str], columns: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """Rows of ``results`` for the given keys that exist, as key -> tuple of ``columns``."""
        cols = ", ".join(("key", *columns))
        found: dict[str, tuple[Any, ...]] = {}
        conn = self.conn
        if len(keys) > 4 * _CHUNK:
            # Many keys: one sequential scan beats thousands of index probes when they are
            # a good part of the table.
            (rows,) = conn.execute("SELECT count(*) FROM results").fetchone()
            if 4 * len(keys) >= rows:
                wanted = set(keys)
                for row in conn.execute(f"SELECT {cols} FROM results"):
                    if row[0] in wanted:
                        found[row[0]] = row[1:]
                return found
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT {cols} FROM results WHERE key IN ({marks})", chunk):
                found[row[0]] = row[1:]
        return found

    def rows(
        self,
        *,
        status: str | None = None,
        experiment: str | None = None,
        key_prefix: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """All result rows as dicts (``params`` and ``metrics`` decoded from JSON)."""
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
        cursor = self.conn.execute(
            f"SELECT {', '.join(_RESULT_COLUMNS)} FROM results{where} ORDER BY rowid", args
        )
        for row in cursor:
            record = dict(zip(_RESULT_COLUMNS, row))
            record["params"] = json.loads(record["params"])
            record["metrics"] = json.loads(record["metrics"]) if record["metrics"] else {}
            yield record

    def load_value(
        self, value: bytes | None, value_file: str | None, *, plain_only: bool = False
    ) -> Any:
        """Unpickle a stored return value (inline blob or side file).

        ``plain_only=True`` runs no code from the store: plain values are decoded, anything
        else comes back as a :class:`memento.store.safe_pickle.StoredValue` (see that module).
        """
        import cloudpickle

        if value_file:
            value = self.side_file(value_file).read_bytes()
        if value is None:
            return None
        if plain_only:
            from memento.store.safe_pickle import load_plain

            return load_plain(value)
        return cloudpickle.loads(value)

    def side_file(self, name: str) -> Path:
        """The file ``name`` (as a row stores it) inside the side directory, checked."""
        return file_inside(self.directory, name, self.path)

    # -- writes ----------------------------------------------------------------------------
    def write_outcomes(self, outcomes: Iterable[StoredOutcome]) -> None:
        """Store outcomes in one transaction; large values go to atomic side files first."""
        now = time.time()
        rows = []
        keys = []
        for o in outcomes:
            value_file = None
            value = o.value
            if value is not None and len(value) > INLINE_LIMIT:
                from memento._util.files import atomic_write

                value_file = f"values/{o.key}.pkl"
                atomic_write(self.directory / value_file, value)
                # mkstemp made it 0600: give it the store file's permissions, so that whoever
                # can read the store can read its values. (Tighter meanwhile, never looser.)
                _ = self.conn  # the store file exists from here on
                os.chmod(self.directory / value_file, self.path.stat().st_mode & 0o777)
                value = None
            keys.append((o.key,))
            rows.append(
                (
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
                    _metrics_json(o.metrics),
                    o.progress,
                    o.fingerprint,
                    o.version,
                    o.run_id,
                    now,
                    o.output,
                )
            )
        if not rows:
            return
        conn = self.conn
        marks = ",".join("?" * len(_RESULT_COLUMNS))
        with _transaction(conn):
            conn.executemany(
                f"INSERT OR REPLACE INTO results ({', '.join(_RESULT_COLUMNS)}) VALUES ({marks})",
                rows,
            )
            conn.executemany("DELETE FROM running WHERE key = ?", keys)

    def mark_running(self, run_id: str, experiment: str, items: Iterable[tuple[str, str]]) -> None:
        """Note experiments as in flight (``items`` are (key, params JSON))."""
        now = time.time()
        rows = [(key, run_id, experiment, params, now) for key, params in items]
        with _transaction(self.conn):
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
        with _transaction(self.conn):
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
        with _transaction(self.conn):
            self.conn.execute(
                "UPDATE runs SET finished = ?, done = ?, failed = ?, state = ? WHERE run_id = ?",
                (time.time(), done, failed, state, run_id),
            )
            self.conn.execute("DELETE FROM running WHERE run_id = ?", (run_id,))

    def record_jobs(self, executor: str, jobs: Iterable[tuple[str, str]]) -> None:
        """Remember engine job ids (``(key, job_id)``), so a re-run can collect them."""
        now = time.time()
        rows = [(key, executor, job_id, now) for key, job_id in jobs]
        with _transaction(self.conn):
            self.conn.executemany(
                "INSERT OR REPLACE INTO jobs (key, executor, job_id, submitted) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )

    def find_jobs(self, executor: str, keys: Sequence[str]) -> dict[str, str]:
        """Job ids remembered for ``keys`` by ``executor``: key -> job id."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = list(keys[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            for key, job_id in self.conn.execute(
                f"SELECT key, job_id FROM jobs WHERE executor = ? AND key IN ({marks})",
                [executor, *chunk],
            ):
                found[key] = job_id
        return found

    def forget_jobs(self, keys: Sequence[str]) -> None:
        with _transaction(self.conn):
            self.conn.executemany("DELETE FROM jobs WHERE key = ?", [(k,) for k in keys])

    def delete(self, keys: Sequence[str]) -> int:
        """Forget the results of ``keys`` (and their side files); returns how many were removed."""
        found = self.lookup(keys, ["value_file"])
        # Every path is checked before anything is deleted, so a crafted row stops it all.
        files = [self.side_file(name) for (name,) in found.values() if name]
        with _transaction(self.conn):
            self.conn.executemany("DELETE FROM results WHERE key = ?", [(k,) for k in found])
        for file in files:
            try:
                file.unlink()
            except FileNotFoundError:
                pass
        return len(found)


def _schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return int(row[0])


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store of an older schema up to date, inside the caller's transaction (so that
    two processes opening the same old store migrate it once)."""
    version = _schema_version(conn)
    while version < SCHEMA_VERSION:
        for table, column, kind in _MIGRATIONS[version]:
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
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
    for table, columns in added.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        extra = "".join(f", NULL AS {c}" for c in columns if c not in present)
        conn.execute(f"CREATE TEMP VIEW {table} AS SELECT *{extra} FROM main.{table}")


def _when_unlocked(statement: Any, seconds: float = 30.0) -> Any:
    """Run ``statement()``, retrying while another connection holds the lock it needs.

    Changing the journal mode takes an exclusive lock without waiting on the busy timeout.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            return statement()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error (autocommit connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def _metrics_json(metrics: dict[str, list[tuple[Any, Any]]]) -> str | None:
    if not metrics:
        return None
    return json.dumps({k: [list(p) for p in v] for k, v in metrics.items()}, default=repr)


def hostname() -> str:
    return socket.gethostname()


__all__ = [
    "DEFAULT_FILENAME",
    "Store",
    "StoredOutcome",
    "connect_readonly",
    "default_store_path",
    "is_legacy_store",
    "side_directory",
]
