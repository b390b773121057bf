"""The PostgreSQL backend: a whole store in one database (``postgresql://user@host/dbname``),
for drivers and workers on several machines that share no file system.

Everything lives in the database: results with their values of any size (``bytea``, no side
files), runs, in-flight experiments, engine job ids, leases, and the checkpoints the workers
write themselves (:func:`checkpoints`). The tables have the names, columns and meaning of the
SQLite store's (docs/store.md); ``results`` and ``runs`` also have a ``seq`` column, standing
in for SQLite's ``rowid`` (the order rows were written in).

A round trip to the server is what a store costs, so a method is one message where it can be
(the statements of one message are one transaction to PostgreSQL); a claim, which decides
between reading and writing, is an explicit ``BEGIN`` ... ``COMMIT`` of two.

Times are the server's clock (``clock_timestamp()``), so that drivers on hosts whose clocks
disagree still agree on when a lease expires and on which results are newer than a plan.
Claims are serialized by one transaction-scoped advisory lock; creating the schema by another,
so two drivers opening a new database at once create it once.

psycopg (the ``postgres`` extra) is imported only here, when a store is built. Its errors
become :class:`~memento.exceptions.StoreError` naming the URL without its password, which
never appears in a message, a ``repr`` or a log.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memento._util.checkpoint_format import unpack_checkpoint
from memento.exceptions import StoreError
from memento.store.base import (
    PROVENANCE_COLUMNS,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    BaseStore,
    StoredOutcome,
    info_text,
    metrics_json,
    provenance_record,
    provenance_row,
    result_record,
)
from memento.store.leases import LEASE_COLUMNS, Claim, Lease, decide, lease_of, lease_row
from memento.store.outputs import remove_recorded
from memento.store.pg_connection import Connected, Row, Sql, driver, message
from memento.store.sqlite import SCHEMA_VERSION, STORE_FORMAT

if TYPE_CHECKING:
    import psycopg

#: The server's clock, in epoch seconds (what ``updated``, leases and :meth:`now` are in).
NOW = "extract(epoch FROM clock_timestamp())::double precision"
#: Advisory lock ids (arbitrary constants, "memento" in ASCII, then 1 and 2).
CLAIM_LOCK = 0x6D656D656E746F01
SCHEMA_LOCK = 0x6D656D656E746F02

#: The SQLite store's schema (docs/store.md) in PostgreSQL's types, plus ``seq``.
_SCHEMA = """
CREATE TABLE meta (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE results (
    key text PRIMARY KEY, experiment text NOT NULL,
    status text NOT NULL CHECK (status IN ('done', 'failed')), params text NOT NULL,
    value bytea, value_file text, error_type text, error_message text, traceback text,
    error bytea, attempts bigint NOT NULL DEFAULT 1, host text, pid bigint,
    start_time double precision, end_time double precision, runtime double precision,
    cpu_time double precision, peak_rss bigint, peak_vms bigint, metrics text,
    progress double precision, fingerprint text, version text, run_id text,
    updated double precision NOT NULL, output text, seq bigserial NOT NULL,
    value_format text, value_info text, output_dir text, kind text, stacks text
);
CREATE INDEX results_by_experiment ON results (experiment, status);
CREATE INDEX results_by_seq ON results (seq);
CREATE TABLE runs (
    run_id text PRIMARY KEY, experiment text NOT NULL, host text, pid bigint,
    started double precision NOT NULL, finished double precision, total bigint,
    to_run bigint, cached bigint, done bigint DEFAULT 0, failed bigint DEFAULT 0,
    state text NOT NULL DEFAULT 'running', fingerprint text, seq bigserial NOT NULL
);
CREATE TABLE running (
    key text PRIMARY KEY, run_id text NOT NULL, experiment text NOT NULL,
    params text NOT NULL, submitted double precision NOT NULL
);
CREATE INDEX running_by_run ON running (run_id);
CREATE TABLE checkpoints (
    key text PRIMARY KEY, value bytea NOT NULL, updated double precision NOT NULL
);
CREATE TABLE jobs (
    key text PRIMARY KEY, executor text NOT NULL, job_id text NOT NULL,
    submitted double precision NOT NULL
);
CREATE TABLE leases (
    key text PRIMARY KEY, run_id text NOT NULL, host text NOT NULL, pid bigint,
    claimed double precision NOT NULL, heartbeat double precision NOT NULL,
    expires double precision NOT NULL, timeout double precision NOT NULL
);
CREATE INDEX leases_by_run ON leases (run_id);
CREATE TABLE provenance (
    run_id text PRIMARY KEY, recorded double precision NOT NULL, git_root text,
    git_commit text, dirty bigint, diff text, diff_hash text, python text, platform text,
    host text, command text, packages text, gpus text
)
"""
#: What brings a store of an older schema version up to this one (run under the schema lock).
_TO_5 = (
    "ALTER TABLE results ADD COLUMN IF NOT EXISTS kind text, ADD COLUMN IF NOT EXISTS stacks text"
)
_MIGRATIONS = {
    "3": (
        "ALTER TABLE results ADD COLUMN IF NOT EXISTS value_format text, "
        "ADD COLUMN IF NOT EXISTS value_info text, ADD COLUMN IF NOT EXISTS output_dir text",
        _SCHEMA[_SCHEMA.index("CREATE TABLE provenance") :].replace(
            "CREATE TABLE", "CREATE TABLE IF NOT EXISTS"
        ),
        _TO_5,
    ),
    "4": (_TO_5,),
}

_RUN_COLUMNS = ", ".join(RUN_COLUMNS)
#: What a claim reads, after taking the lock, in one statement (so one snapshot): the clock,
#: one row without a key; then the stored result and the lease of each key that has either.
_CLAIM_READ = (
    f"SELECT {NOW}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL UNION ALL "
    "SELECT NULL, k.key, r.updated, r.run_id, l.key, l.run_id, l.host, l.pid, l.claimed,"
    " l.heartbeat, l.expires FROM unnest(%s::text[]) AS k(key)"
    " LEFT JOIN results r ON r.key = k.key LEFT JOIN leases l ON l.key = k.key"
    " WHERE r.key IS NOT NULL OR l.key IS NOT NULL"
)


def _upsert(table: str, columns: Sequence[str], rows: Sequence[Row], *, clock: str = "") -> Sql:
    """One ``INSERT ... ON CONFLICT (key) DO UPDATE`` of all ``rows`` (the last of each key
    wins: one statement may not touch a row twice); ``clock`` is a column the server's clock
    fills, after the given ones. The rows travel as one array per column (``unnest``): a
    statement of a few parameters, whatever the number of rows, which psycopg and the server
    parse in no time."""
    unique = list({row[0]: row for row in rows}.values())
    names = [*columns, clock] if clock else list(columns)
    arrays = ", ".join(f"%s::{_COLUMN_TYPES[table][c]}[]" for c in columns)
    values = ", ".join([*(f"u.{c}" for c in columns), *([NOW] if clock else [])])
    text = (
        f"INSERT INTO {table} ({', '.join(names)}) SELECT {values} "
        f"FROM unnest({arrays}) AS u({', '.join(columns)}) "
        "ON CONFLICT (key) DO UPDATE SET "
        + ", ".join(
            f"{c} = EXCLUDED.{c}" for c in names[1:] + (["seq"] if table == "results" else [])
        )
    )
    return text, [[row[i] for row in unique] for i in range(len(columns))]


def _column_types(schema: str) -> dict[str, dict[str, str]]:
    """Each table's column types, read from ``schema`` (what :func:`_upsert` casts to)."""
    types_: dict[str, dict[str, str]] = {}
    for table, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\);?\n(?=CREATE|$)", schema, re.S):
        for name, kind in re.findall(r"(\w+) (text|bytea|bigint|double precision|bigserial)", body):
            types_.setdefault(table, {})[name] = "bigint" if kind == "bigserial" else kind
    return types_


_COLUMN_TYPES = _column_types(_SCHEMA + "\n")


class PostgresStore(Connected, BaseStore):
    """A memento store in the PostgreSQL database ``url`` (``postgresql://`` or
    ``postgres://``, any libpq URL). Opened lazily; ``readonly=True`` never writes or creates.

    Example::

        with PostgresStore("postgresql://me@db.example.org/grid", readonly=True) as store:
            print(store.run_count())
    """

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        super().__init__(url)
        self.location = url
        self.readonly = readonly
        #: Read-only, on a database without the memento tables: reads as an empty store.
        self._no_schema = False

    @property
    def directory(self) -> Path | None:
        return None

    @property
    def checkpoint_url(self) -> str:
        return self.url

    def open(self) -> PostgresStore:
        self._connection()
        return self

    def __enter__(self) -> PostgresStore:
        return self

    # -- schema ----------------------------------------------------------------------------
    def _connected(self) -> None:
        try:
            with self._cursor() as cursor:
                cursor.execute("BEGIN")
                if not self.readonly:
                    # Two drivers opening a new database at once: one creates, one waits.
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                self._no_schema = self._check_schema(cursor)
                cursor.execute("COMMIT")
        except BaseException:
            self.close()
            raise

    def _check_schema(self, cursor: psycopg.Cursor[Row]) -> bool:
        """Check (or, writing to an empty database, create) the schema; whether it is
        missing (read-only, empty database)."""
        cursor.execute(
            "SELECT to_regclass('meta') IS NOT NULL, count(*) FROM pg_tables "
            "WHERE schemaname = current_schema()"
        )
        has_meta, tables = cursor.fetchone() or (False, 0)
        if has_meta:
            self._check_format(cursor)
            return False
        if tables:
            raise StoreError(
                f"{self.name} is a PostgreSQL database but not a memento store; "
                "choose another database"
            )
        if self.readonly:
            return True
        cursor.execute(_SCHEMA)
        cursor.execute(
            f"INSERT INTO meta (name, value) VALUES (%s, %s), (%s, %s), ('created', {NOW}::text)",
            ("format", STORE_FORMAT, "schema_version", str(SCHEMA_VERSION)),
        )
        return False

    def _check_format(self, cursor: psycopg.Cursor[Row]) -> None:
        try:
            cursor.execute("SELECT name, value FROM meta")
        except driver().Error:
            raise StoreError(f"{self.name} is not a memento store (no usable meta table)") from None
        meta: dict[str, str] = dict(cursor.fetchall())
        if meta.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.name} is not a memento store (format {meta.get('format')!r})")
        version = meta.get("schema_version", "")
        if version in _MIGRATIONS and not self.readonly:
            for statement in _MIGRATIONS[version]:
                cursor.execute(statement)
            cursor.execute(
                "UPDATE meta SET value = %s WHERE name = 'schema_version'", (str(SCHEMA_VERSION),)
            )
            return
        if version in _MIGRATIONS:
            raise StoreError(
                f"{self.name} has store schema version {version}, which this memento upgrades "
                f"to {SCHEMA_VERSION} when it opens the store for writing (any run does); it "
                "cannot read it read-only until then."
            )
        if version != str(SCHEMA_VERSION):
            raise StoreError(
                f"{self.name} has store schema version {version!r}; this memento reads version "
                f"{SCHEMA_VERSION}. Upgrade memento, or use another database."
            )

    # -- plumbing --------------------------------------------------------------------------
    def _fetch(self, query: str, args: Sequence[Any] = ()) -> list[Row]:
        """The rows of one query ([] when there is no schema)."""
        with self._cursor() as cursor:
            if self._no_schema:
                return []
            cursor.execute(query, args)
            return cursor.fetchall()

    def _write(self, *statements: Sql) -> int:
        self._check_writable()
        return self._send(*statements)

    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"{self.name} is opened read-only; it cannot be written")

    def now(self) -> float:
        with self._cursor() as cursor:
            cursor.execute(f"SELECT {NOW}")
            return float(_scalar(cursor))

    # -- plan look-up and values -----------------------------------------------------------
    def lookup(self, keys: Sequence[str], columns: Sequence[str]) -> dict[str, Row]:
        unknown = [c for c in columns if c not in RESULT_COLUMNS]
        if unknown:
            raise ValueError(f"Not a results column: {unknown[0]!r}")
        if not keys:
            return {}
        found = self._fetch(
            f"SELECT {', '.join(('key', *columns))} FROM results WHERE key = ANY(%s)", [list(keys)]
        )
        return {row[0]: row[1:] for row in found}

    # -- writes ----------------------------------------------------------------------------
    def write_outcomes(self, outcomes: Iterable[StoredOutcome]) -> None:
        rows = [_result_row(o) for o in outcomes]
        if not rows:
            return
        keys = [row[0] for row in rows]
        run_ids = [row[RESULT_COLUMNS.index("run_id")] for row in rows]
        columns = [c for c in RESULT_COLUMNS if c != "updated"]
        # The checkpoints of the experiments done go in the same transaction as their results:
        # a checkpoint is gone only once its result is stored.
        done = [row[0] for row in rows if row[2] == "done"]
        self._check_writable()
        self._send_bound(
            _upsert("results", columns, rows, clock="updated"),
            ("DELETE FROM running WHERE key = ANY(%s)", [keys]),
            (
                "DELETE FROM leases l USING unnest(%s::text[], %s::text[]) AS o(key, run_id) "
                "WHERE l.key = o.key AND l.run_id = o.run_id",
                [keys, run_ids],
            ),
            ("DELETE FROM checkpoints WHERE key = ANY(%s)", [done]),
        )

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
        self._check_writable()
        lock = ("BEGIN; SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK])
        with self._cursor() as cursor:
            # One claimer at a time, so two never both see a key as free; the results and
            # leases are then read in one statement (one snapshot), so an outcome stored
            # meanwhile is seen with its lease gone, or not at all.
            cursor.execute(*message([lock, (_CLAIM_READ, [list(keys)])]))
            while cursor.nextset():
                pass
            found = cursor.fetchall()
            (now,) = [row[0] for row in found if row[1] is None]
            stored: dict[str, tuple[float, str | None]] = {}
            leased: dict[str, Lease] = {}
            for _, key, updated, result_run, *lease in found:
                if key is not None and updated is not None:
                    stored[key] = (updated, result_run)
                if key is not None and lease[0] is not None:
                    leased[key] = lease_of(lease)
            claim = decide(
                run_id, keys, stored, leased, since=since, now=now, limit=limit, known=known
            )
            rows = [lease_row(key, run_id, now, lease_timeout) for key in claim.claimed]
            writes = [_upsert("leases", LEASE_COLUMNS, rows)] if rows else []
            cursor.execute(*message([*writes, ("COMMIT", [])]))
        return claim

    def heartbeat(self, run_id: str) -> int:
        return self._write(
            (
                f"UPDATE leases SET heartbeat = {NOW}, expires = {NOW} + timeout WHERE run_id = %s",
                [run_id],
            )
        )

    def release(self, run_id: str, keys: Sequence[str] | None = None) -> None:
        if keys is None:
            self._write(("DELETE FROM leases WHERE run_id = %s", [run_id]))
        else:
            only = "DELETE FROM leases WHERE run_id = %s AND key = ANY(%s)"
            self._write((only, [run_id, list(keys)]))

    def leases(self, keys: Sequence[str] | None = None) -> dict[str, Lease]:
        select = f"SELECT {', '.join(LEASE_COLUMNS)} FROM leases"
        if keys is None:
            found = self._fetch(select + " ORDER BY claimed")
        else:
            found = self._fetch(select + " WHERE key = ANY(%s)", [list(keys)])
        return {row[0]: lease_of(row) for row in found}

    def mark_running(self, run_id: str, experiment: str, items: Iterable[tuple[str, str]]) -> None:
        rows = [(key, run_id, experiment, params) for key, params in items]
        if rows:
            columns = ("key", "run_id", "experiment", "params")
            self._write(_upsert("running", columns, rows, clock="submitted"))

    def start_run(
        self,
        run_id: str,
        experiment: str,
        total: int,
        to_run: int,
        cached: int,
        fingerprint: str | None = None,
    ) -> None:
        host, pid = socket.gethostname(), os.getpid()
        self._write(
            (
                "INSERT INTO runs (run_id, experiment, host, pid, started, total, to_run, cached,"
                f" fingerprint) VALUES (%s, %s, %s, %s, {NOW}, %s, %s, %s, %s)",
                [run_id, experiment, host, pid, total, to_run, cached, fingerprint],
            )
        )

    def finish_run(self, run_id: str, done: int, failed: int, state: str) -> None:
        self._write(
            (
                f"UPDATE runs SET finished = {NOW}, done = %s, failed = %s, state = %s "
                "WHERE run_id = %s",
                [done, failed, state, run_id],
            ),
            ("DELETE FROM running WHERE run_id = %s", [run_id]),
            ("DELETE FROM leases WHERE run_id = %s", [run_id]),
        )

    def record_provenance(self, run_id: str, data: Mapping[str, Any]) -> None:
        row = provenance_row(run_id, 0.0, data)
        columns = [c for c in PROVENANCE_COLUMNS if c != "recorded"]
        values = [v for c, v in zip(PROVENANCE_COLUMNS, row) if c != "recorded"]
        self._write(
            (
                f"INSERT INTO provenance ({', '.join(columns)}, recorded) "
                f"VALUES ({', '.join(['%s'] * len(columns))}, {NOW}) ON CONFLICT (run_id) "
                f"DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in columns[1:])}, "
                "recorded = EXCLUDED.recorded",
                values,
            )
        )

    def provenance(self, run_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        select = f"SELECT {', '.join(PROVENANCE_COLUMNS)} FROM provenance"
        if run_ids is None:
            found = self._fetch(select)
        else:
            found = self._fetch(select + " WHERE run_id = ANY(%s)", [list(run_ids)])
        return {row[0]: provenance_record(row) for row in found}

    def record_jobs(self, executor: str, jobs: Iterable[tuple[str, str]]) -> None:
        rows = [(key, executor, job_id) for key, job_id in jobs]
        if rows:
            self._write(_upsert("jobs", ("key", "executor", "job_id"), rows, clock="submitted"))

    def find_jobs(self, executor: str, keys: Sequence[str]) -> dict[str, str]:
        found = self._fetch(
            "SELECT key, job_id FROM jobs WHERE executor = %s AND key = ANY(%s)",
            [executor, list(keys)],
        )
        return {key: job_id for key, job_id in found}

    def forget_jobs(self, keys: Sequence[str]) -> None:
        self._write(("DELETE FROM jobs WHERE key = ANY(%s)", [list(keys)]))

    def delete(self, keys: Sequence[str]) -> int:
        folders = {key: folder for key, (folder,) in self.lookup(keys, ["output_dir"]).items()}
        count = self._write(("DELETE FROM results WHERE key = ANY(%s)", [list(keys)]))
        remove_recorded(folders)
        return count

    def delete_checkpoints(self, keys: Sequence[str]) -> None:
        if keys:
            self._write(("DELETE FROM checkpoints WHERE key = ANY(%s)", [list(keys)]))

    # -- read-side queries -----------------------------------------------------------------
    def rows(
        self,
        *,
        status: str | None = None,
        experiment: str | None = None,
        key_prefix: str | None = None,
        with_output: bool = False,
    ) -> Iterator[dict[str, Any]]:
        columns = (
            RESULT_COLUMNS if with_output else tuple(c for c in RESULT_COLUMNS if c != "output")
        )
        filters = {"status = %s": status, "experiment = %s": experiment}
        filters["starts_with(key, %s)"] = key_prefix
        given = {clause: value for clause, value in filters.items() if value is not None}
        where = f" WHERE {' AND '.join(given)}" if given else ""
        found = self._fetch(
            f"SELECT {', '.join(columns)} FROM results{where} ORDER BY seq", list(given.values())
        )
        return (result_record(columns, row) for row in found)

    def result_states(self) -> Iterator[Row]:
        return iter(
            self._fetch(
                "SELECT key, experiment, status, params, fingerprint, error_type, error_message,"
                " updated FROM results ORDER BY seq"
            )
        )

    def latest_fingerprints(self) -> dict[str, str]:
        # Runs come last, so that a run's fingerprint wins over its results'.
        found = self._fetch(
            "SELECT experiment, fingerprint FROM (SELECT experiment, fingerprint, 0 AS source,"
            " updated AS t, seq FROM results UNION ALL SELECT experiment, fingerprint, 1,"
            " started, seq FROM runs) AS f WHERE fingerprint IS NOT NULL AND fingerprint != ''"
            " ORDER BY source, t, seq"
        )
        return dict(found)

    def experiment_names(self) -> set[str]:
        found = self._fetch("SELECT experiment FROM results UNION SELECT experiment FROM running")
        return {name for (name,) in found}

    def in_flight(self) -> list[Row]:
        return self._fetch(
            "SELECT key, run_id, experiment, params, submitted FROM running ORDER BY submitted, key"
        )

    def runs(self, *, limit: int | None = None, running_only: bool = False) -> list[Row]:
        if running_only:
            return self._fetch(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE state = 'running' ORDER BY started, seq"
            )
        return self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started DESC, seq DESC LIMIT %s", [limit]
        )

    def run_count(self) -> int:
        found = self._fetch("SELECT count(*) FROM runs")
        return int(found[0][0]) if found else 0

    def last_activity(self) -> float | None:
        found = self._fetch(
            "SELECT max(t) FROM (SELECT max(updated) AS t FROM results "
            "UNION ALL SELECT max(greatest(started, finished)) FROM runs "
            "UNION ALL SELECT max(submitted) FROM running) AS times"
        )
        return None if not found or found[0][0] is None else float(found[0][0])


# -- the workers' checkpoints ----------------------------------------------------------------
class PostgresCheckpoints(Connected):
    """A worker's checkpoints in the store's ``checkpoints`` table, one row per key, each
    written in one statement (a reader sees the old checkpoint or the new one). Picklable:
    it travels to the worker without its connection."""

    def get(self, key: str) -> Any:
        """The state checkpointed under ``key``; ``KeyError`` when there is none."""
        return unpack_checkpoint(self.get_saved(key)).state

    def get_saved(self, key: str) -> Any:
        """The checkpoint under ``key`` as it was saved: state, metrics and progress."""
        with self._cursor() as cursor:
            cursor.execute("SELECT value FROM checkpoints WHERE key = %s", (key,))
            row = cursor.fetchone()
        if row is None:
            raise KeyError(f"No checkpoint for key {key!r}")
        import cloudpickle

        return cloudpickle.loads(row[0])

    def set(self, key: str, item: Any) -> None:
        import cloudpickle

        data = cloudpickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        self._send(_upsert("checkpoints", ("key", "value"), [(key, data)], clock="updated"))

    def remove(self, key: str) -> None:
        self._send(("DELETE FROM checkpoints WHERE key = %s", [key]))

    def contains(self, key: str) -> bool:
        with self._cursor() as cursor:
            cursor.execute("SELECT 1 FROM checkpoints WHERE key = %s", (key,))
            return cursor.fetchone() is not None

    def __repr__(self) -> str:
        return f"PostgresCheckpoints({self.name!r})"


@functools.cache
def checkpoints(url: str) -> PostgresCheckpoints:
    """A worker's checkpoint provider for the store at ``url``
    (:func:`memento.store.backends.open_checkpoints` calls this): one per process and URL,
    so a worker's experiments share its one connection (a child after ``fork`` connects
    anew, see :class:`~memento.store.pg_connection.Connected`)."""
    return PostgresCheckpoints(url)


# -- helpers ---------------------------------------------------------------------------------
def _scalar(cursor: psycopg.Cursor[tuple[Any, ...]]) -> Any:
    row = cursor.fetchone()
    return None if row is None else row[0]


def _result_row(o: StoredOutcome) -> tuple[Any, ...]:
    """``o`` as the ``results`` columns but ``updated`` (the server's clock fills it)."""
    values = {
        **{c: getattr(o, c, None) for c in RESULT_COLUMNS},
        "metrics": metrics_json(o.metrics),
        "value_info": info_text(o.value_info),
    }
    return tuple(values[c] for c in RESULT_COLUMNS if c != "updated")


__all__ = ["PostgresCheckpoints", "PostgresStore", "checkpoints"]
