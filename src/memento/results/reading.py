"""Reading a store without the experiment's code: records, filters, summaries.

:func:`open_results` is the Python entry point; the ``memento`` command (:mod:`memento.view.cli`)
and the HTML report (:mod:`memento.view.report`) are built on the same functions. Everything here
opens the store read-only, so it works while a run is writing to it.

Example::

    from memento import open_results

    records = open_results("runs/grid.sqlite", where={"model": "SVC"}, status="done")
    for r in records:
        print(r["params"], r["metrics"], r["inner"])
    frame = records.to_dataframe()
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memento._util.tables import require_pandas
from memento._util.text import display_value, is_scalar_dict
from memento.exceptions import FAILURE_KINDS, StoreError, kind_of_stored
from memento.keys.fingerprint import is_stale
from memento.results.aggregate import aggregate
from memento.results.export import with_provenance, write_parquet
from memento.results.plotting import plot_records
from memento.store.backends import open_store, store_location
from memento.store.base import BaseStore
from memento.store.leases import holder_dead
from memento.store.safe_pickle import StoredValue

#: The values ``status=`` accepts: ``"stale"`` means done, by older code (see :func:`is_stale`).
STATUSES = ("done", "failed", "stale")
#: Flat columns after the parameters and the return value, in order (``metric.*`` follow).
META_COLUMNS = (
    "status",
    "stale",
    "runtime",
    "cpu_time",
    "peak_memory",
    "attempts",
    "error",
    "kind",
)


class Text(str):
    """A value typed on a command line: it matches a stored value whose text is the same.

    ``Text("0.1")`` matches the number ``0.1`` and the string ``"0.1"``; ``Text("true")``
    matches ``True``; ``Text("SVC")`` matches the class ``SVC`` (stored by name).
    """


class StoredResults(list[dict[str, Any]]):
    """The records :func:`open_results` returns, one dict per stored result, in store order.

    Each record has ``key``, ``experiment``, ``params`` (as displayed: classes and functions
    by name), ``status`` (``"done"`` or ``"failed"``), ``stale``, ``runtime``, ``cpu_time``
    (seconds), ``peak_memory`` (bytes), ``attempts``, ``host``, ``start_time`` and
    ``end_time`` (epoch seconds), ``error`` (``"Type: message"``), ``error_type``,
    ``error_message``, ``traceback``, ``kind`` (a failure's kind, one of
    :data:`memento.exceptions.FAILURE_KINDS`; ``None`` for a success), ``stacks`` (the
    experiment's Python thread stacks when it timed out, else ``None``), ``metrics`` (name
    -> last y), ``series`` (name -> list of ``[x, y]``), ``inner`` (the return value, or
    ``None``), ``note`` (why ``inner`` is ``None`` when it could not be loaded),
    ``fingerprint``, ``version``, ``run_id`` and ``updated``.
    """

    def __init__(
        self, records: Iterable[dict[str, Any]] = (), path: Path | str | None = None
    ) -> None:
        super().__init__(records)
        self.path = path

    def to_records(self) -> list[dict[str, Any]]:
        """Flat dicts, the same columns for each: parameters, return value, status, timing,
        error, kind, ``metric.<name>`` (last values), ``key``, ``experiment`` and ``note``."""
        return flat_records(self)

    def to_dataframe(self) -> Any:
        """A pandas DataFrame of :meth:`to_records` (needs the ``pandas`` extra)."""
        pd = require_pandas("StoredResults.to_dataframe()")
        records = self.to_records()
        return pd.DataFrame.from_records(records, columns=list(records[0]) if records else None)

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_records` to ``path`` as a Parquet file, one typed column each, then
        the provenance columns when records carry one (needs the ``parquet`` extra: ``pip
        install 'memento-grid[parquet]'``); return the path. See :mod:`memento.results.export`.
        """
        write_parquet(self.to_records(), path, purpose="StoredResults.to_parquet()")
        return Path(path)

    def aggregate(self, by: Sequence[str] | str, *, columns: Sequence[str] | None = None) -> Any:
        """Mean, std and count of the return value's columns and of each metric's last value,
        one row per combination of the ``by`` parameters (needs the ``pandas`` extra).

        Example::

            open_results("runs/grid.sqlite", status="done").aggregate(by=["model", "lr"])

        The same table as :meth:`ResultList.aggregate` (see
        :func:`memento.results.aggregate.aggregate`); filter first with ``open_results``'
        ``where``, ``status`` and ``experiment`` to choose what is aggregated. Stale results
        (done by older code) count as done ones; ``memento forget --stale`` drops them.
        """
        names = {name: None for r in self for name in r["params"]}
        return aggregate(self.to_records(), by, parameters=list(names), columns=columns)

    def plot(self, by: str | None = None, metric: str | Sequence[str] | None = None) -> list[Any]:
        """matplotlib Figures of the metric curves (mean and std band per group of ``by``) and
        of the final values against each numeric parameter (needs the ``plot`` extra).

        Example::

            figures = results.plot(by="model", metric="loss")

        The figures of ``memento report`` (see :mod:`memento.results.figures`).
        """
        return plot_records(self, by=by, metric=metric, purpose="StoredResults.plot()")


def open_results(
    path: str | os.PathLike[str] | None = None,
    *,
    where: Mapping[str, Any] | None = None,
    status: str | None = None,
    experiment: str | None = None,
    load_values: bool = False,
) -> StoredResults:
    """Read the results stored at ``path``, without needing the experiment's code.

    Example::

        failed = open_results("memento.sqlite", status="failed")
        svc = open_results("memento.sqlite", where={"model": "SVC", "C": 1.0})

    :param path: the store; defaults to ``$MEMENTO_CACHE_PATH``, else ``memento.sqlite``.
    :param where: keep records whose parameters equal these values. Values compare with the
        stored (displayed) parameters: numbers by value, strings and booleans exactly, other
        objects (classes, functions) by their displayed name; a :class:`Text` by its text.
    :param status: ``"done"``, ``"failed"`` or ``"stale"`` (done by older code).
    :param experiment: keep one experiment function: its full name (``module:qualname``) or
        its qualified name alone.
    :param load_values: ``False`` (the default) runs no code from the store: plain return
        values (numbers, strings, bytes, ``None``, booleans, and lists, tuples, dicts and
        sets of them) are in ``inner``; any other value is a
        :class:`~memento.store.safe_pickle.StoredValue` (``<pickled sklearn.svm.SVC, 12 KiB>``,
        with ``.load()``) and ``note`` says it was not loaded. ``True`` unpickles every value,
        which runs code named by its pickle: only for a store you trust (a value whose
        classes cannot be imported here gets ``inner=None`` and a ``note`` saying why).
    :raises StoreError: the store is missing, corrupt or of an unknown version.
    :raises ValueError: an unknown status, experiment or parameter name.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    with open_store(store_location(path), readonly=True) as store:
        records = read_records(store, status=status, experiment=experiment, load_values=load_values)
        # A file store's path (as before); a server store's URL without its password.
        shown: Path | str = getattr(store, "path", None) or store.name
    if where:
        records = filter_records(records, where)
    return StoredResults(records, shown)


def read_records(
    store: BaseStore,
    *,
    status: str | None = None,
    experiment: str | None = None,
    key_prefix: str | None = None,
    load_values: bool = False,
    with_output: bool = False,
) -> list[dict[str, Any]]:
    """Records of ``store`` (see :class:`StoredResults`), optionally filtered; each one's
    captured ``output`` only ``with_output`` (``memento show`` asks for it)."""
    try:
        name = resolve_experiment(store, experiment) if experiment is not None else None
        latest_prints = latest_fingerprints(store)
        status_filter = "done" if status == "stale" else status
        rows = list(
            store.rows(
                status=status_filter,
                experiment=name,
                key_prefix=key_prefix,
                with_output=with_output,
            )
        )
    except (StoreError, ValueError):
        raise
    except Exception as exc:  # a database error, bad JSON: the file is damaged
        raise StoreError(f"{store.name} cannot be read as a memento store ({exc})") from None
    run_ids = sorted({row["run_id"] for row in rows if row["run_id"]})
    provenance = store.provenance(run_ids) if run_ids else {}
    records = []
    for row in rows:
        record = _record(store, row, latest_prints, load_values, provenance)
        if status == "stale" and not record["stale"]:
            continue
        records.append(record)
    return records


def _record(
    store: BaseStore,
    row: dict[str, Any],
    latest_prints: dict[str, str],
    load_values: bool,
    provenance: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    series = row["metrics"] if isinstance(row["metrics"], dict) else {}
    latest = latest_prints.get(row["experiment"])
    fingerprint = row["fingerprint"] or ""
    inner, note = None, None
    if row["status"] == "done":
        try:
            inner = store.load_value(
                row["value"],
                row["value_file"],
                row.get("value_format"),
                row.get("value_info"),
                plain_only=not load_values,
            )
            if isinstance(inner, StoredValue):
                note = (
                    f"{inner!r} not loaded: loading it runs code from the store; if you trust "
                    "it, pass load_values=True (memento ... --load-values)"
                )
        except Exception as exc:  # a StoreError too: a value file outside the store
            note = f"the return value could not be loaded ({type(exc).__name__}: {exc})"
            if row.get("value_format") in (None, "pickle"):
                note += "; load it where the experiment's code can be imported"
    error = None
    if row["status"] == "failed":
        error = f"{row['error_type'] or 'Exception'}: {row['error_message'] or ''}".rstrip(": ")
    return {
        "key": row["key"],
        "experiment": row["experiment"],
        "params": row["params"],
        "status": row["status"],
        "stale": row["status"] == "done" and is_stale(fingerprint, latest),
        "runtime": row["runtime"],
        "cpu_time": row["cpu_time"],
        "peak_memory": row["peak_rss"],
        "attempts": row["attempts"],
        "host": row["host"],
        "start_time": row["start_time"],
        "end_time": row["end_time"],
        "error": error,
        "error_type": row["error_type"],
        "error_message": row["error_message"],
        "traceback": row["traceback"],
        "kind": _kind(row),
        "stacks": row.get("stacks") or None,
        "output": row.get("output"),
        "metrics": {name: _last_y(points) for name, points in series.items()},
        "series": series,
        "inner": inner,
        "note": note,
        "value_format": row.get("value_format") or ("pickle" if row["status"] == "done" else None),
        "value_info": row.get("value_info"),
        "output_dir": row.get("output_dir"),
        "provenance": provenance.get(row["run_id"] or ""),
        "fingerprint": fingerprint,
        "version": row["version"],
        "run_id": row["run_id"],
        "updated": row["updated"],
    }


def _kind(row: Mapping[str, Any]) -> str | None:
    """A row's failure kind: its ``kind`` column, or for a row stored before kinds existed
    the kind its error type implies; ``None`` for a success."""
    if row["status"] != "failed":
        return None
    return kind_of_stored(row.get("kind"), row.get("error_type"))


def _last_y(points: Any) -> Any:
    try:
        return points[-1][1] if points else None
    except (IndexError, KeyError, TypeError):
        return None


def latest_fingerprints(store: BaseStore) -> dict[str, str]:
    """Each experiment's current code fingerprint: that of its most recent run.

    There is no code at hand when reading a store, so a result is *stale* when its
    fingerprint differs from the one its experiment's last run had. Runs are never deleted
    by ``forget``, so forgetting results does not change which others are stale. Stores
    written before runs recorded their fingerprint fall back to the last written result.
    """
    return store.latest_fingerprints()


def experiments(store: BaseStore) -> list[str]:
    """The experiment names in the store (results and in-flight ones), sorted."""
    return sorted(store.experiment_names())


def resolve_experiment(store: BaseStore, name: str) -> str:
    """The full name of the experiment ``name`` designates (full name or qualified name)."""
    names = experiments(store)
    if name in names:
        return name
    matches = [n for n in names if n.split(":", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(names) or "none"
        raise ValueError(f"No experiment {name!r} in {store.name}; experiments: {known}")
    raise ValueError(f"Experiment name {name!r} is ambiguous: {', '.join(matches)}")


# -- filters --------------------------------------------------------------------------------------
def filter_records(records: list[dict[str, Any]], where: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The records whose parameters match every ``name: value`` of ``where``."""
    if not records:
        return []
    known = {name for r in records for name in r["params"]}
    unknown = [name for name in where if name not in known]
    if unknown:
        raise ValueError(
            f"No parameter named {', '.join(map(repr, unknown))}; the parameters are: "
            f"{', '.join(sorted(known))}"
        )
    return [
        r
        for r in records
        if all(
            name in r["params"] and value_matches(r["params"][name], wanted)
            for name, wanted in where.items()
        )
    ]


def value_matches(stored: Any, wanted: Any) -> bool:
    """Whether a stored (displayed, JSON) parameter value equals ``wanted``.

    Numbers compare by value (``1 == 1.0``) but never equal booleans; strings and booleans
    compare exactly; ``None`` only matches ``None``; other objects compare by their displayed
    text (a class by its name). A :class:`Text` matches when the texts agree.
    """
    if isinstance(wanted, Text):
        return _text_matches(stored, str(wanted))
    if wanted is None or stored is None:
        return wanted is None and stored is None
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return isinstance(wanted, bool) and isinstance(stored, bool) and wanted == stored
    if isinstance(wanted, (int, float)):
        return isinstance(stored, (int, float)) and float(stored) == float(wanted)
    if isinstance(wanted, str):
        return isinstance(stored, str) and stored == wanted
    return isinstance(stored, str) and stored == display_value(wanted)


def _text_matches(stored: Any, raw: str) -> bool:
    if isinstance(stored, str):
        return stored == raw
    if stored is None:
        return raw in ("None", "null", "none")
    if isinstance(stored, bool):
        return raw.lower() == str(stored).lower()
    if isinstance(stored, (int, float)):
        try:
            return float(raw) == float(stored)
        except ValueError:
            return False
    return json.dumps(stored) == raw


def parse_where(items: Iterable[str]) -> dict[str, Text]:
    """``["model=SVC", "lr=0.1"]`` -> ``{"model": Text("SVC"), "lr": Text("0.1")}``."""
    where: dict[str, Text] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--where takes name=value, got {item!r}")
        where[name.strip()] = Text(value)
    return where


# -- flat records ---------------------------------------------------------------------------------
def flat_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records as flat dicts with the same columns: parameters, the return value (a dict of
    scalars returned by every successful experiment becomes one column per key), status,
    stale, timing, attempts, error, kind, ``metric.<name>``, ``key``, ``experiment``, ``note``;
    then, when results carry their run's provenance, ``git_commit``, ``dirty``, ``python``,
    ``platform`` and ``command`` (:func:`memento.results.export.with_provenance`)."""
    records = list(records)
    done = [r["inner"] for r in records if r["status"] == "done" and r["note"] is None]
    expand = bool(done) and all(is_scalar_dict(v) for v in done)
    params: dict[str, None] = {}
    inner_cols: dict[str, None] = {}
    metric_cols: dict[str, None] = {}
    for r in records:
        params.update(dict.fromkeys(r["params"]))
        if expand and isinstance(r["inner"], dict):
            inner_cols.update(dict.fromkeys(str(k) for k in r["inner"]))
        metric_cols.update(dict.fromkeys(r["metrics"]))
    reserved = {*META_COLUMNS, "key", "experiment", "note", "inner"}
    param_name = {
        p: f"param.{p}" if p in reserved or p.startswith("metric.") else p for p in params
    }
    taken = set(param_name.values()) | reserved
    inner_name = {
        k: f"inner.{k}" if k in taken or k.startswith("metric.") else k for k in inner_cols
    }
    flat = []
    for r in records:
        row: dict[str, Any] = {param_name[p]: r["params"].get(p) for p in params}
        if expand:
            inner = r["inner"] if isinstance(r["inner"], dict) else {}
            by_text = {str(k): v for k, v in inner.items()}
            row.update({inner_name[k]: by_text.get(k) for k in inner_cols})
        else:
            inner = r["inner"]
            row["inner"] = repr(inner) if isinstance(inner, StoredValue) else inner
        # ``kind`` may be missing from records made before kinds existed (or by hand).
        row.update({c: r.get(c) if c == "kind" else r[c] for c in META_COLUMNS})
        row.update({f"metric.{m}": r["metrics"].get(m) for m in metric_cols})
        row["key"] = r["key"]
        row["experiment"] = r["experiment"]
        row["note"] = r["note"]
        flat.append(row)
    return with_provenance(flat, (r.get("provenance") for r in records))


# -- the store as a whole (for `memento status`) ------------------------------------------------ -
@dataclass
class ExperimentCounts:
    """How many results of one experiment are in each state, and its failures by kind."""

    experiment: str
    done: int = 0
    stale: int = 0
    failed: int = 0
    running: int = 0
    #: Failures by kind (:data:`memento.exceptions.FAILURE_KINDS`), only the kinds present.
    failed_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.done + self.stale + self.failed


@dataclass
class RunInfo:
    """One ``Memento.run`` call, from the ``runs`` table."""

    run_id: str
    experiment: str
    host: str
    pid: int | None
    started: float
    finished: float | None
    state: str
    total: int | None
    done: int
    failed: int

    @property
    def driver_alive(self) -> bool | None:
        """Whether the process that runs it still exists (``None``: on another host)."""
        if self.pid is None or self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass
class StoreSummary:
    """What ``memento status`` shows: counts, in-flight, failed and stale results."""

    #: The store, as shown (a server URL without its password).
    path: str
    counts: list[ExperimentCounts]
    running: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    stale: list[dict[str, Any]]
    runs: list[RunInfo]
    last_activity: float | None
    runs_total: int = 0
    active_runs: list[RunInfo] = field(default_factory=list)
    #: Drivers holding leases on experiments (see :func:`lease_holders`).
    holders: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed_kinds(self) -> dict[str, int]:
        """Failures of every experiment by kind, in :data:`FAILURE_KINDS` order (kinds with
        none left out): ``{"error": 3, "timeout": 2}``."""
        return count_kinds(r["kind"] for r in self.failed)


def summarize(store: BaseStore, *, recent_runs: int = 5) -> StoreSummary:
    """Count results by state for each experiment, and list what runs, failed or is stale."""
    try:
        return _summarize(store, recent_runs)
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{store.name} cannot be read as a memento store ({exc})") from None


def _summarize(store: BaseStore, recent_runs: int) -> StoreSummary:
    latest = latest_fingerprints(store)
    counts: dict[str, ExperimentCounts] = {}

    def entry(name: str) -> ExperimentCounts:
        return counts.setdefault(name, ExperimentCounts(name))

    failed, stale = [], []
    for key, experiment, status, params, fingerprint, etype, emsg, updated in store.result_states():
        c = entry(experiment)
        item = {"key": key, "experiment": experiment, "params": _json(params), "updated": updated}
        if status == "failed":
            c.failed += 1
            error = f"{etype or 'Exception'}: {emsg or ''}".rstrip(": ")
            failed.append({**item, "error": error, "error_type": etype})
        elif is_stale(fingerprint, latest.get(experiment)):
            c.stale += 1
            stale.append(item)
        else:
            c.done += 1
    # The kinds of the failures only (a look-up by key: every backend has it).
    kinds = store.lookup([f["key"] for f in failed], ("kind",)) if failed else {}
    by_experiment: dict[str, list[str]] = {}
    for f in failed:
        f["kind"] = kind_of_stored((kinds.get(f["key"]) or (None,))[0], f.pop("error_type"))
        by_experiment.setdefault(f["experiment"], []).append(f["kind"])
    for name, found in by_experiment.items():
        counts[name].failed_kinds = count_kinds(found)
    running = []
    for key, run_id, experiment, params, submitted in store.in_flight():
        entry(experiment).running += 1
        running.append(
            {
                "key": key,
                "run_id": run_id,
                "experiment": experiment,
                "params": _json(params),
                "submitted": submitted,
            }
        )
    runs = [RunInfo(*row) for row in store.runs(limit=recent_runs)]
    active = [RunInfo(*row) for row in store.runs(running_only=True)]
    holders = lease_holders(store, began={r["key"] for r in running})
    return StoreSummary(
        path=store.name,
        counts=[counts[name] for name in sorted(counts)],
        running=running,
        failed=failed,
        stale=stale,
        runs=runs,
        last_activity=store.last_activity(),
        runs_total=store.run_count(),
        active_runs=active,
        holders=holders,
    )


def lease_holders(store: BaseStore, began: set[str] | None = None) -> list[dict[str, Any]]:
    """Who holds experiments of the store (memento.store.leases), most first: ``holder``
    (``host:pid``), ``run_id``, ``host``, ``pid``, ``count`` (claimed), ``running`` (of
    those, begun), ``expires_in`` (seconds, store clock) and ``alive`` (``False`` once the
    lease may be taken over: expired, or its process gone on this host). ``began``: the keys
    in flight, when the caller read them already."""
    leases = store.leases()
    if not leases:
        return []
    now = store.now()
    if began is None:
        began = {row[0] for row in store.in_flight()}
    groups: dict[str, dict[str, Any]] = {}
    for lease in leases.values():
        group = groups.setdefault(
            lease.run_id,
            {
                "holder": lease.holder,
                "run_id": lease.run_id,
                "host": lease.host,
                "pid": lease.pid,
                "count": 0,
                "running": 0,
                "expires_in": lease.expires - now,
                "alive": not holder_dead(lease, now),
            },
        )
        group["count"] += 1
        group["running"] += lease.key in began
        group["expires_in"] = max(group["expires_in"], lease.expires - now)
    return sorted(groups.values(), key=lambda g: -g["count"])


def count_kinds(kinds: Iterable[str | None]) -> dict[str, int]:
    """How many failures of each kind, in :data:`~memento.exceptions.FAILURE_KINDS` order
    (an unknown kind after them, by name; kinds with none left out).

    Example::

        count_kinds(["timeout", "error", "error"])  # {"error": 2, "timeout": 1}
    """
    found: dict[str, int] = {}
    for kind in kinds:
        name = kind or "error"
        found[name] = found.get(name, 0) + 1
    order = {kind: i for i, kind in enumerate(FAILURE_KINDS)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def kinds_text(kinds: Mapping[str, int]) -> str:
    """``{"error": 3, "timeout": 2}`` -> ``"3 error, 2 timeout"`` (``""`` for none)."""
    return ", ".join(f"{n} {kind}" for kind, n in kinds.items())


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def config_label(params: Mapping[str, Any]) -> str:
    """``a=1, model=SVC``: stored parameters as one line (a string is quoted only when it is
    empty or holds ``,``, ``=`` or surrounding spaces, so the line stays unambiguous)."""
    parts = []
    for name, value in params.items():
        if isinstance(value, str):
            plain = value and value == value.strip() and "," not in value and "=" not in value
            parts.append(f"{name}={value}" if plain else f"{name}={value!r}")
        else:
            parts.append(f"{name}={json.dumps(value)}")
    return ", ".join(parts)


__all__ = [
    "ExperimentCounts",
    "RunInfo",
    "StoreSummary",
    "StoredResults",
    "Text",
    "config_label",
    "count_kinds",
    "filter_records",
    "flat_records",
    "kinds_text",
    "latest_fingerprints",
    "open_results",
    "parse_where",
    "read_records",
    "summarize",
    "value_matches",
]
