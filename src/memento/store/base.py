"""The store seam: what the driver, the plan, the executors, ``open_results``, the report and
the ``memento`` command may ask of a store. :class:`~memento.store.sqlite.SQLiteStore` is the
first backend; a second one (PostgreSQL, say) is one new module with a subclass of
:class:`BaseStore`, plus its URL scheme in :func:`memento.store.backends.open_store`.

A backend keeps the records of docs/store.md (results, runs, in-flight experiments, engine
job ids) under the same names: :meth:`BaseStore.lookup` and :meth:`BaseStore.rows` take and
give the ``results`` columns by name, and the tuples below are in the order their docstrings
give. A file store keeps large values and checkpoints in :attr:`BaseStore.directory`, which
cluster executors check the workers can reach; a server store (``directory`` is ``None``)
keeps them in the database, and workers write checkpoints there through
:attr:`BaseStore.checkpoint_url`.

Leases (:mod:`memento.store.leases`) let several drivers share one grid: :meth:`claim`,
:meth:`heartbeat`, :meth:`release` and :meth:`leases`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memento.exceptions import StoreError
from memento.store.leases import Claim, Lease
from memento.store.values import decode

#: The ``results`` columns (docs/store.md), in the order :meth:`BaseStore.rows` gives them.
RESULT_COLUMNS = (
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
    "value_format",
    "value_info",
    "output_dir",
    "kind",
    "stacks",
)

#: The ``provenance`` columns (docs/store.md): one row per run, what produced its results.
#: ``command``, ``packages`` and ``gpus`` are JSON text; ``dirty`` is 0/1 (``None``: unknown).
PROVENANCE_COLUMNS = (
    "run_id",
    "recorded",
    "git_root",
    "git_commit",
    "dirty",
    "diff",
    "diff_hash",
    "python",
    "platform",
    "host",
    "command",
    "packages",
    "gpus",
)
#: The provenance columns kept as JSON text.
PROVENANCE_JSON = ("command", "packages", "gpus")


#: The ``runs`` columns :meth:`BaseStore.runs` gives, in its order.
RUN_COLUMNS = ("run_id", "experiment", "host", "pid", "started", "finished", "state", "total",
               "done", "failed")  # fmt: skip


def metrics_json(metrics: dict[str, list[tuple[Any, Any]]]) -> str | None:
    """A result's metrics as the ``metrics`` column keeps them (JSON; ``None`` for none)."""
    if not metrics:
        return None
    return json.dumps({k: [list(p) for p in v] for k, v in metrics.items()}, default=repr)


def result_record(columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    """A ``results`` row (``columns``) as :meth:`BaseStore.rows` gives it: ``params`` and
    ``metrics`` decoded from JSON."""
    record = dict(zip(columns, row))
    record["params"] = json.loads(record["params"])
    record["metrics"] = json.loads(record["metrics"]) if record["metrics"] else {}
    info = record.get("value_info")
    if isinstance(info, str):
        try:
            record["value_info"] = json.loads(info)
        except ValueError:
            record["value_info"] = None
    return record


def info_text(info: str | Mapping[str, Any] | None) -> str | None:
    """A value's description as the ``value_info`` column keeps it (JSON text)."""
    if info is None or isinstance(info, str):
        return info
    return json.dumps(info, separators=(",", ":"), default=str)


def provenance_row(run_id: str, recorded: float, data: Mapping[str, Any]) -> tuple[Any, ...]:
    """A run's provenance (:meth:`memento.run.provenance.Provenance.as_row`) as the
    ``provenance`` columns, in order."""
    values = {**data, "run_id": run_id, "recorded": recorded}
    dirty = values.get("dirty")
    values["dirty"] = None if dirty is None else int(bool(dirty))
    for name in PROVENANCE_JSON:
        values[name] = json.dumps(values.get(name), sort_keys=True, default=str)
    return tuple(values.get(c) for c in PROVENANCE_COLUMNS)


def provenance_record(row: Sequence[Any]) -> dict[str, Any]:
    """A ``provenance`` row (:data:`PROVENANCE_COLUMNS`) as a dict, JSON columns decoded."""
    record = dict(zip(PROVENANCE_COLUMNS, row))
    for name in PROVENANCE_JSON:
        text = record.get(name)
        try:
            record[name] = json.loads(text) if text else None
        except ValueError:
            record[name] = None
    if record.get("dirty") is not None:
        record["dirty"] = bool(record["dirty"])
    return record


@dataclass
class StoredOutcome:
    """One row to write: everything the store keeps about one finished experiment."""

    key: str
    experiment: str
    status: str
    #: The parameters as JSON text, non-JSON values shown by name.
    params: str
    #: The value as its format stored it (:mod:`memento.store.values`), or ``None`` when it is
    #: in ``value_file`` (written by the worker) or there is no value.
    value: bytes | None = None
    #: A side file the worker already wrote (``values/<key>.<ext>``, relative to the side
    #: directory); the store writes one itself for a large ``value``.
    value_file: str | None = None
    #: How the value is stored (``json``, ``npy``, ``npz``, ``parquet``, ``pickle`` or a
    #: registered format) and what it is (``{"type": ..., ...}``).
    value_format: str | None = None
    value_info: str | dict[str, Any] | None = None
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
    #: The experiment's output folder (``context.output_dir``), when it made one.
    output_dir: str | None = None
    #: A failure's kind (:data:`memento.exceptions.FAILURE_KINDS`); ``None`` for a success.
    kind: str | None = None
    #: The Python stacks of the experiment's threads when it timed out (faulthandler's text).
    stacks: str | None = None


class BaseStore(ABC):
    """A memento store: where results, runs, in-flight experiments and job ids are kept.

    Opened lazily (:meth:`open` connects at once); ``readonly=True`` never writes or creates.
    A context manager that closes it. Every write is atomic: one transaction, committed
    before the method returns.
    """

    #: What :func:`~memento.store.backends.open_store` takes to open this store again (a
    #: server store's URL with its password: never show it; show :attr:`name`).
    location: str
    readonly: bool

    @property
    def name(self) -> str:
        """The store as messages, logs and reports show it (a URL without its password)."""
        return self.location

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- opening ---------------------------------------------------------------------------
    @abstractmethod
    def open(self) -> BaseStore:
        """Connect now (creating a new store unless read-only), so that a missing, damaged,
        foreign or too new store fails here, with a :class:`~memento.exceptions.StoreError`."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; a later call connects again."""

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    @abstractmethod
    def directory(self) -> Path | None:
        """The directory of large values and checkpoints (shared with the workers); ``None``
        for a store that keeps them in its database."""

    @property
    def checkpoint_directory(self) -> Path | None:
        """Where workers write checkpoints (``<key>.ckpt``, atomic files), if in files."""
        return None if self.directory is None else self.directory / "checkpoints"

    @property
    def checkpoint_url(self) -> str:
        """For a store that keeps checkpoints in its database, what a worker opens to write
        them (:func:`memento.store.backends.open_checkpoints`); ``""`` otherwise."""
        return ""

    def side_file_mode(self) -> int | None:
        """The permissions for files beside the store (checkpoints): ``None`` for private."""
        return None

    @abstractmethod
    def delete_checkpoints(self, keys: Sequence[str]) -> None:
        """Remove the checkpoints of ``keys`` (their results are stored)."""

    def now(self) -> float:
        """The store's clock (epoch seconds): what leases and ``updated`` times are in."""
        import time

        return time.time()

    # -- plan look-up and values -----------------------------------------------------------
    @abstractmethod
    def lookup(self, keys: Sequence[str], columns: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """The stored results among ``keys``: key -> the tuple of ``columns`` (names of
        docs/store.md's ``results`` columns). Missing keys are left out."""

    def value_path(self, value_file: str) -> Path:
        """The side file a result's ``value_file`` names, checked to be inside the store's
        side directory (a :class:`~memento.exceptions.StoreError` for a server store)."""
        raise StoreError(f"{self.name}: a result names a value file ({value_file!r})")

    def load_value(
        self,
        value: bytes | None,
        value_file: str | None,
        value_format: str | None = None,
        value_info: Any = None,
        *,
        plain_only: bool = False,
    ) -> Any:
        """The return value a result's ``value``, ``value_file``, ``value_format`` and
        ``value_info`` hold (see :mod:`memento.store.values`). ``plain_only=True`` runs no
        code from the store: typed values load as usual, a pickle comes back as plain data
        or a :class:`~memento.store.safe_pickle.StoredValue` (see that module)."""
        if value_file:
            path = self.value_path(value_file)
            return decode(value_format, path=path, info=value_info, trusted=not plain_only)
        if value is None:
            return None
        return decode(value_format, bytes(value), info=value_info, trusted=not plain_only)

    @abstractmethod
    def record_provenance(self, run_id: str, data: Mapping[str, Any]) -> None:
        """Keep (or replace) the provenance of ``run_id``
        (:meth:`memento.run.provenance.Provenance.as_row`)."""

    @abstractmethod
    def provenance(self, run_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """The provenance of ``run_ids`` (every run's, when ``None``): run id -> record
        (:data:`PROVENANCE_COLUMNS`, JSON columns decoded)."""

    # -- writes ----------------------------------------------------------------------------
    @abstractmethod
    def write_outcomes(self, outcomes: Iterable[StoredOutcome]) -> None:
        """Store finished experiments (replacing earlier results of their keys), take them
        off the in-flight list and drop their leases held by the outcome's ``run_id``, in one
        transaction; the checkpoints of those done are removed once it committed."""

    # -- leases (memento.store.leases) -----------------------------------------------------
    @abstractmethod
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
        """Claim ``keys`` for ``run_id`` (this host, this pid), in one transaction.

        A key whose result another run stored at or after ``since`` (store clock; when the
        caller planned) is ``finished``; one leased by a live holder of another run is
        ``held``; the others, including those of dead holders (``reclaimed``, see
        :func:`~memento.store.leases.holder_dead`) and those the caller holds already, are
        ``claimed``: leased to ``run_id`` until ``lease_timeout`` seconds without a heartbeat.
        With ``limit``, the keys are looked at in order until ``limit`` are claimed; those
        after are in none of the lists (see :func:`~memento.store.leases.decide`). With
        ``known`` (each key's ``updated`` when the caller planned, for those that had a
        row), ``finished`` means another run's row appeared or changed since, whatever the
        clocks say.
        """

    @abstractmethod
    def heartbeat(self, run_id: str) -> int:
        """Extend every lease of ``run_id`` by its timeout from now; how many it holds."""

    @abstractmethod
    def release(self, run_id: str, keys: Sequence[str] | None = None) -> None:
        """Drop the leases of ``run_id`` (on ``keys`` only, when given)."""

    @abstractmethod
    def leases(self, keys: Sequence[str] | None = None) -> dict[str, Lease]:
        """The leases on ``keys`` (every lease, when ``None``), live or not: key -> lease."""

    @abstractmethod
    def mark_running(self, run_id: str, experiment: str, items: Iterable[tuple[str, str]]) -> None:
        """Note experiments as in flight for ``run_id`` (``items``: (key, params JSON))."""

    @abstractmethod
    def start_run(
        self,
        run_id: str,
        experiment: str,
        total: int,
        to_run: int,
        cached: int,
        fingerprint: str | None = None,
    ) -> None:
        """Note a run as started; its ``fingerprint`` (the experiment's code fingerprint)
        makes results with another one stale."""

    @abstractmethod
    def finish_run(self, run_id: str, done: int, failed: int, state: str) -> None:
        """Note a run as ended in ``state``; its experiments are no longer in flight, and its
        leases are released."""

    @abstractmethod
    def record_jobs(self, executor: str, jobs: Iterable[tuple[str, str]]) -> None:
        """Remember engine job ids (``(key, job_id)``), so a re-run can collect them."""

    @abstractmethod
    def find_jobs(self, executor: str, keys: Sequence[str]) -> dict[str, str]:
        """Job ids remembered by ``executor`` for ``keys``: key -> job id."""

    @abstractmethod
    def forget_jobs(self, keys: Sequence[str]) -> None:
        """Forget the job ids of ``keys``."""

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> int:
        """Forget the results of ``keys`` (their value files and output folders too); how many
        there were."""

    # -- read-side queries -----------------------------------------------------------------
    @abstractmethod
    def rows(
        self,
        *,
        status: str | None = None,
        experiment: str | None = None,
        key_prefix: str | None = None,
        with_output: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Every result (optionally filtered) as a dict of all its columns, in the order
        they were first written; ``params`` and ``metrics`` decoded from JSON; ``output``
        only ``with_output``."""

    @abstractmethod
    def result_states(self) -> Iterator[tuple[Any, ...]]:
        """Every result, first written first, as ``(key, experiment, status, params JSON,
        fingerprint, error_type, error_message, updated)``."""

    @abstractmethod
    def latest_fingerprints(self) -> dict[str, str]:
        """Each experiment's code fingerprint as of its most recent run (for stores from
        before runs recorded one, its last written result's)."""

    @abstractmethod
    def experiment_names(self) -> set[str]:
        """The experiments with results or in flight."""

    @abstractmethod
    def in_flight(self) -> list[tuple[Any, ...]]:
        """The experiments in flight, first submitted first, as ``(key, run_id, experiment,
        params JSON, submitted)``."""

    @abstractmethod
    def runs(
        self, *, limit: int | None = None, running_only: bool = False
    ) -> list[tuple[Any, ...]]:
        """Runs as ``(run_id, experiment, host, pid, started, finished, state, total, done,
        failed)``: the ``limit`` most recent first, or (``running_only``) the runs still
        running, first started first."""

    @abstractmethod
    def run_count(self) -> int:
        """How many runs the store has seen."""

    @abstractmethod
    def last_activity(self) -> float | None:
        """When anything was last written (epoch seconds); ``None`` for an empty store."""


__all__ = [
    "PROVENANCE_COLUMNS",
    "RESULT_COLUMNS",
    "RUN_COLUMNS",
    "BaseStore",
    "Claim",
    "Lease",
    "StoredOutcome",
    "info_text",
    "metrics_json",
    "provenance_record",
    "provenance_row",
    "result_record",
]
