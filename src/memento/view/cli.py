"""The ``memento`` command: look into a store without the experiment's code.

::

    memento status  [STORE]                       counts by state, running, failed, stale
    memento results [STORE] [--format table|csv|json|parquet] [-o FILE] [--where k=v] [--status S]
    memento show    [STORE] KEY_OR_PREFIX         one result: config, summary, metrics, traceback
    memento forget  [STORE] (--failed | --stale | --key K | --all) [--yes]
    memento report  [STORE] [-o report.html] [--by P] [--where k=v] [--metric M] [--format F]
    memento import-1.2 OLD NEW -e SCRIPT.py:FUNC  copy a memento-ml 1.2 store's results
    memento run TARGET [--matrix FILE] [-p ...]   launch a grid (see memento.view.launch)

``STORE`` defaults to ``$MEMENTO_CACHE_PATH``, else ``memento.sqlite`` in the working
directory (a directory means ``memento.sqlite`` inside it). Every command except ``forget``
opens the store read-only, so they all work while a run is writing to it. A store that is
missing, corrupt or of an unknown version gives a one-line error and exit status 1.
See docs/cli.md.
"""

from __future__ import annotations

import csv
import datetime
import functools
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from memento import __version__
from memento._util.text import display_value, truncate
from memento._util.text import format_bytes as _bytes
from memento._util.text import format_seconds as _seconds
from memento.exceptions import MissingExtra, StoreError
from memento.results.export import write_parquet
from memento.results.provenance import describe
from memento.results.reading import (
    config_label,
    filter_records,
    flat_records,
    kinds_text,
    parse_where,
    read_records,
    summarize,
)
from memento.store.backends import open_store, store_location, url_scheme
from memento.store.connection import DATABASE_ERRORS
from memento.store.outputs import folder_files
from memento.store.safe_pickle import StoredValue
from memento.view.import_legacy import import_legacy_store
from memento.view.report import write_figures, write_report

F = TypeVar("F", bound=Callable[..., Any])

#: Items listed per section of ``memento status`` before "... and N more".
LIST_LIMIT = 20
_FORMATS = ("table", "csv", "json", "parquet")
_STATUSES = ("done", "failed", "stale")

_load_values_option = click.option(
    "--load-values",
    is_flag=True,
    help="Unpickle every return value. This runs code stored in the pickles: only for a "
    "store you trust. Without it, plain values are shown and others as their type and size.",
)


_where_option = click.option(
    "--where",
    "where",
    multiple=True,
    metavar="NAME=VALUE",
    help="Keep results whose parameter NAME equals VALUE (repeatable).",
)


# -- shared plumbing ------------------------------------------------------------------------------
def _store_path(store: str | None) -> str:
    """Where ``store`` (or the default) is: a server URL as given, else a file that exists."""
    location = store_location(store)
    if url_scheme(location) is not None:
        return location
    path = Path(location)
    if not path.exists():
        hint = (
            "give the store's path (memento status runs/grid.sqlite) or set MEMENTO_CACHE_PATH"
            if store is None
            else "check the path"
        )
        raise StoreError(f"No memento store at {path}: {hint}.")
    return location


@contextmanager
def _open(store: str | None) -> Iterator[Any]:
    """The store, read-only (works while a run writes to it)."""
    with open_store(_store_path(store), readonly=True) as opened:
        yield opened.open()  # connected now, so that a bad file fails here with a StoreError


def _clean_errors(func: F) -> F:
    """Turn the errors a user can cause into a one-line message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
        except DATABASE_ERRORS as exc:
            raise click.ClickException(f"The store cannot be read: {exc}") from None
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


class _Table:
    """A plain text table: columns separated by two spaces, numbers right-aligned, no
    trailing spaces. Colours (for a terminal) are added after alignment; ``click.echo``
    drops them when the output is not a terminal."""

    _NUMERIC = {"done", "stale", "failed", "running", "total", "points", "runtime"}
    _COLOURS = {"done": "green", "failed": "red", "stale": "yellow"}

    def __init__(self, *headers: str, title: str | None = None) -> None:
        self.headers = list(headers)
        self.title = title
        self.rows: list[list[str]] = []

    def add_row(self, *cells: Any) -> None:
        self.rows.append([" ".join(str(c).split()) if c is not None else "" for c in cells])

    def lines(self) -> list[str]:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        right = [h in self._NUMERIC for h in self.headers]

        def line(cells: Sequence[str], styled: bool) -> str:
            out = []
            for cell, width, r in zip(cells, widths, right, strict=True):
                text = cell.rjust(width) if r else cell.ljust(width)
                colour = self._COLOURS.get(cell) if styled else None
                out.append(click.style(text, fg=colour) if colour else text)
            return "  ".join(out).rstrip()

        result = [click.style(self.title, bold=True)] if self.title else []
        result.append(click.style(line(self.headers, False), bold=True))
        result.append("  ".join("-" * w for w in widths))
        result.extend(line(row, True) for row in self.rows)
        return result

    def echo(self) -> None:
        for text in self.lines():
            click.echo(text)


def _ago(ts: float | None) -> str:
    if not ts:
        return "never"
    when = datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
    delta = time.time() - ts
    if delta < 0:
        return when
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if delta >= size:
            n = int(delta // size)
            return f"{when} ({n} {unit}{'s' if n != 1 else ''} ago)"
    return f"{when} (just now)"


def _short(name: str) -> str:
    """``pkg.module:train`` -> ``train`` (the qualified name, which is usually enough)."""
    return name.split(":", 1)[-1]


def _cell(value: Any, limit: int = 60) -> str:

    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, str):
        text = value
    else:
        text = display_value(value)
    return truncate(" ".join(text.split()), limit)


# -- the group ------------------------------------------------------------------------------------
class _Commands(click.Group):
    """The group, with ``memento run`` (:mod:`memento.view.launch`) loaded only when asked
    for: it brings the driver, the executors and YAML, which ``status``, ``results`` and
    ``show`` do not need."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "run"])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "run":
            from memento.view.launch import run_command

            return run_command
        return super().get_command(ctx, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="memento")
def cli() -> None:
    """Look into a memento store: what ran, what failed, what is stale, and the results.

    STORE defaults to $MEMENTO_CACHE_PATH, else ./memento.sqlite.
    """


# -- status ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("store", required=False)
@_clean_errors
def status(store: str | None) -> None:
    """Counts by state for each experiment; running, failed (with each failure's kind) and
    stale results.

    A result is stale when its code fingerprint differs from the latest one written for the
    same experiment (it was computed by an older version of the code).
    """

    with _open(store) as opened:
        summary = summarize(opened)
    click.echo(f"Store          {summary.path}")
    click.echo(f"Last activity  {_ago(summary.last_activity)}")
    active = []
    for run in summary.active_runs:
        gone = " (its process is gone: interrupted)" if run.driver_alive is False else ""
        active.append(f"pid {run.pid} on {run.host}, started {_ago(run.started)}{gone}")
    runs_line = f"Runs           {summary.runs_total}"
    if active:
        runs_line += f", {len(active)} in progress: " + "; ".join(active)
    click.echo(runs_line)
    if summary.holders:
        click.echo()
        held = _Table("holder", "run", "claimed", "running", "lease", title="Claimed by drivers")
        for h in summary.holders:
            lease = (
                f"expires in {_seconds(max(0.0, h['expires_in']))}"
                if h["alive"]
                else "holder gone: another driver may take these over"
            )
            held.add_row(h["holder"], h["run_id"], h["count"], h["running"], lease)
        held.echo()
    if not summary.counts:
        click.echo("\nNo results yet.")
        return
    click.echo()
    counts = _Table("experiment", "done", "stale", "failed", "running", "total")
    for c in summary.counts:
        counts.add_row(c.experiment, c.done, c.stale, c.failed, c.running, c.total)
    counts.echo()
    if summary.failed:
        # The kinds of the failures (memento.exceptions.FAILURE_KINDS): "3 error, 2 timeout".
        click.echo(f"failed: {len(summary.failed)} ({kinds_text(summary.failed_kinds)})")
    many = len(summary.counts) > 1

    def listing(
        title: str,
        rows: list[dict[str, Any]],
        columns: Sequence[str],
        cells: Callable[[dict[str, Any]], list[str]],
        hint: str,
    ) -> None:
        if not rows:
            return
        headers = ["key", *(["experiment"] if many else []), *columns]
        table = _Table(*headers, title=f"{title} ({len(rows)})")
        for row in rows[:LIST_LIMIT]:
            experiment = [_short(row["experiment"])] if many else []
            table.add_row(row["key"][:12], *experiment, *cells(row))
        click.echo()
        table.echo()
        if len(rows) > LIST_LIMIT:
            click.echo(f"... and {len(rows) - LIST_LIMIT} more ({hint})")

    now = time.time()
    listing(
        "Running",
        summary.running,
        ["config", "submitted"],
        lambda r: [_cell(config_label(r["params"]), 70), _seconds(now - r["submitted"]) + " ago"],
        "oldest first",
    )
    listing(
        "Failed",
        summary.failed,
        ["config", "kind", "error"],
        lambda r: [_cell(config_label(r["params"]), 50), r["kind"], _cell(r["error"], 70)],
        "memento results --status failed",
    )
    listing(
        "Stale",
        summary.stale,
        ["config"],
        lambda r: [_cell(config_label(r["params"]), 90)],
        "memento results --status stale",
    )
    if summary.stale:
        click.echo(
            "Stale: computed by an older version of the experiment's code. Recompute with "
            'Memento(..., on_code_change="rerun"), or drop with: memento forget --stale'
        )


# -- results --------------------------------------------------------------------------------------
@cli.command()
@click.argument("store", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    default="table",
    show_default=True,
    help="Output format (parquet: a file, see --output; needs the 'parquet' extra).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="The Parquet file to write, with --format parquet [default: results.parquet].",
)
@_where_option
@click.option(
    "--status", "status_", type=click.Choice(_STATUSES), help="Keep results in this state."
)
@click.option("--experiment", "-e", help="Keep one experiment (its name or module:name).")
@_load_values_option
@_clean_errors
def results(
    store: str | None,
    fmt: str,
    output: str | None,
    where: tuple[str, ...],
    status_: str | None,
    experiment: str | None,
    load_values: bool,
) -> None:
    """The results, one row per config: parameters, status, timing, metrics, return value."""

    if output is not None and fmt != "parquet":
        raise click.UsageError("--output is for --format parquet; redirect the others: > FILE")
    conditions = parse_where(where)
    with _open(store) as opened:
        records = read_records(
            opened, status=status_, experiment=experiment, load_values=load_values
        )
    if conditions:
        records = filter_records(records, conditions)
    if fmt == "parquet":
        _write_parquet(records, output or "results.parquet")
        return
    out = sys.stdout
    if fmt == "json":
        out.write(json.dumps([_json_record(r) for r in records], indent=2, default=str) + "\n")
        return
    flat = flat_records(records)
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        if flat:
            writer.writerow(list(flat[0]))
            for row in flat:
                writer.writerow([_csv_value(v) for v in row.values()])
        return
    if not flat:
        click.echo("No results match.")
        return
    hidden = {"key", "experiment", "note", "stale", "attempts", "cpu_time", "peak_memory"}
    hidden |= {"python", "platform", "command"}  # provenance: memento show KEY has it all
    columns = [c for c in flat[0] if c not in hidden]
    if len({r["experiment"] for r in records}) > 1:
        columns.insert(0, "experiment")
    table = _Table("key", *columns)
    for row in flat:
        cells = [row["key"][:12]]
        for c in columns:
            value = row[c]
            if c == "status" and row["stale"]:
                value = "stale"
            elif c == "experiment":
                value = _short(value)
            elif c == "runtime":
                value = _seconds(value)
            elif c == "git_commit" and value:
                value = str(value)[:10]
            cells.append(_cell(value, 40))
        table.add_row(*cells)
    table.echo()
    click.echo(f"{len(flat)} result(s)")


def _write_parquet(records: list[dict[str, Any]], output: str) -> None:
    """``records`` as the columns of ``--format csv``, then provenance, in a Parquet file."""
    rows = flat_records(records)
    try:
        count = write_parquet(rows, output, purpose="memento results --format parquet")
    except MissingExtra as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {output} ({count} results)")


def _json_record(record: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "key",
        "experiment",
        "params",
        "status",
        "stale",
        "runtime",
        "cpu_time",
        "peak_memory",
        "attempts",
        "host",
        "start_time",
        "end_time",
        "error",
        "kind",
        "metrics",
        "inner",
        "note",
    )

    out = {k: record[k] for k in keep}
    inner = record["inner"]
    out["inner"] = repr(inner) if isinstance(inner, StoredValue) else _json_safe(inner)
    out["metrics"] = {k: _json_safe(v) for k, v in record["metrics"].items()}
    return out


def _json_safe(value: Any) -> Any:

    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        try:
            return _json_safe(item())
        except Exception:
            pass
    return display_value(value)


def _csv_value(value: Any) -> Any:

    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return value
    return display_value(value)


# -- show -----------------------------------------------------------------------------------------
@cli.command()
@click.argument("store_or_key", metavar="[STORE] KEY_OR_PREFIX")
@click.argument("key", required=False, metavar="")
@_load_values_option
@_clean_errors
def show(store_or_key: str, key: str | None, load_values: bool) -> None:
    """One result: its config, a summary, its metrics, and for a failure its kind, its
    traceback and, for a timeout, where its threads were when it was stopped."""

    store = store_or_key if key is not None else None
    prefix = (key if key is not None else store_or_key).strip()
    if not prefix:
        raise click.UsageError("Give a key, or the first characters of one.")
    with _open(store) as opened:
        matches = read_records(opened, key_prefix=prefix, load_values=load_values, with_output=True)
        running = sorted(row for row in opened.in_flight() if row[0].startswith(prefix))
    if not matches and running:
        k, _run_id, experiment, params, submitted = running[0]
        if len(running) == 1:
            click.echo(
                f"{k} is running ({experiment}, submitted {_ago(submitted)}); config: {params}"
            )
            return
    if not matches:
        raise click.ClickException(f"No result has a key starting with {prefix!r}.")
    if len(matches) > 1:
        lines = [
            f"  {r['key']}  {_short(r['experiment'])}  {config_label(r['params'])}"
            for r in matches[:LIST_LIMIT]
        ]
        if len(matches) > LIST_LIMIT:
            lines.append(f"  ... and {len(matches) - LIST_LIMIT} more")
        raise click.ClickException(
            f"Key prefix {prefix!r} is ambiguous: {len(matches)} results match; give more "
            "characters. Candidates:\n" + "\n".join(lines)
        )
    _show_record(matches[0])


def _stored_as(r: dict[str, Any]) -> str:
    """How a value is stored: ``npy (numpy.ndarray, shape [3, 4], float64)``."""
    stored = r.get("value_info")
    info: dict[str, Any] = stored if isinstance(stored, dict) else {}
    parts = [str(info["type"])] if info.get("type") else []
    if "shape" in info:
        parts.append(f"shape {info['shape']}")
    if "dtype" in info:
        parts.append(str(info["dtype"]))
    if "rows" in info:
        parts.append(f"{info['rows']} rows")
    versions = info.get("versions")
    if isinstance(versions, dict) and versions:
        parts.append(", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    detail = f" ({'; '.join(parts)})" if parts else ""
    return f"{r.get('value_format') or 'pickle'}{detail}"


def _show_output_folder(r: dict[str, Any]) -> None:
    """The experiment's output folder and its files (sizes), when it made one."""
    folder = r.get("output_dir")
    if not folder:
        return
    path = Path(folder)
    try:
        files = folder_files(path.parent, r["key"])
    except (OSError, ValueError) as exc:
        click.echo(f"Output folder {folder} (cannot be listed: {exc})")
        return
    click.echo(f"Output folder {folder}" + ("" if files else " (empty or removed)"))
    for name, size in files[:LIST_LIMIT]:
        click.echo(f"  {name:<40} {_bytes(size)}")
    if len(files) > LIST_LIMIT:
        click.echo(f"  ... and {len(files) - LIST_LIMIT} more")


def _show_record(r: dict[str, Any]) -> None:

    def field(name: str, value: Any) -> None:
        if value not in (None, ""):
            click.echo(f"  {name:<12} {value}")

    state = "done, stale (computed by older code)" if r["stale"] else r["status"]
    if state == "failed":
        state = click.style(state, fg="red")
    click.echo(f"Key         {r['key']}")
    click.echo(f"Experiment  {r['experiment']}")
    click.echo(f"Status      {state}")
    if r["status"] == "failed":
        click.echo(f"Kind        {r.get('kind') or 'error'}")
    click.echo("Config")
    for name, value in r["params"].items():
        field(name, value if isinstance(value, str) else json.dumps(value))
    click.echo("Summary")
    field("started", _ago(r["start_time"]) if r["start_time"] else "")
    field("runtime", _seconds(r["runtime"]))
    field("cpu time", _seconds(r["cpu_time"]))
    field("peak memory", _bytes(r["peak_memory"]))
    field("attempts", r["attempts"])
    field("host", r["host"])
    field("run", r["run_id"])
    field("version", r["version"])
    field("fingerprint", r["fingerprint"])
    if r["status"] == "done":
        value = r["inner"]
        if r["note"] is not None:
            text = f"(not loaded: {r['note']})"
        elif isinstance(value, dict):
            text = ", ".join(f"{k}={display_value(v)}" for k, v in value.items())
        else:
            text = display_value(value)
        click.echo(f"Result      {text}")
        click.echo(f"Stored as   {_stored_as(r)}")
    if r["series"]:
        click.echo("Metrics")
        table = _Table("metric", "points", "last", "min", "max")
        for name, points in r["series"].items():
            ys = [
                p[1]
                for p in points
                if isinstance(p[1], (int, float)) and not isinstance(p[1], bool)
            ]
            table.add_row(
                name,
                len(points),
                _cell(r["metrics"].get(name)),
                _cell(min(ys)) if ys else "",
                _cell(max(ys)) if ys else "",
            )
        for line in table.lines():
            click.echo(f"  {line}")
    if r["status"] == "failed":
        click.echo(f"Error       {click.style(r['error'] or '', fg='red')}")
        if r["traceback"]:
            click.echo("Traceback (from the worker)")
            click.echo(r["traceback"].rstrip())
        if r.get("stacks"):
            # faulthandler's dump of every thread, taken just before the worker was stopped:
            # where it hung. Shown whole, however long.
            click.echo("Stacks when it timed out (each thread of the experiment's process)")
            click.echo(r["stacks"].rstrip())
    _show_output_folder(r)
    if r.get("provenance"):
        click.echo("Provenance")
        for line in describe(r["provenance"]):
            name, _, rest = line.partition("  ")
            if rest:
                field(name, rest)
            else:
                click.echo(f"  {line}")
    if r.get("output"):
        click.echo("Output (stdout and stderr, as the experiment printed them)")
        for line in r["output"].rstrip("\n").split("\n"):
            click.echo(f"  {_VISIBLE.sub(_visible, line)}")


# Control characters of printed output shown as escapes (\x1b, \r), so that a stored
# colour code or carriage return cannot redraw the terminal.
_VISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


# -- forget ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("store", required=False)
@click.option("--failed", is_flag=True, help="Forget the failed results.")
@click.option("--stale", is_flag=True, help="Forget results computed by older code.")
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="KEY",
    help="Forget this result (a unique key prefix is enough; repeatable).",
)
@click.option("--all", "all_", is_flag=True, help="Forget every result.")
@click.option("--experiment", "-e", help="Only results of this experiment.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_clean_errors
def forget(
    store: str | None,
    failed: bool,
    stale: bool,
    keys: tuple[str, ...],
    all_: bool,
    experiment: str | None,
    yes: bool,
) -> None:
    """Delete stored results, so that the next run computes them again."""

    chosen = [
        name
        for name, on in (
            ("--failed", failed),
            ("--stale", stale),
            ("--key", bool(keys)),
            ("--all", all_),
        )
        if on
    ]
    if len(chosen) != 1:
        raise click.UsageError("Choose exactly one of --failed, --stale, --key K or --all.")
    with _open(store) as opened:
        path, shown = opened.location, opened.name
        if keys:
            targets = [_resolve_key(opened, k, experiment) for k in keys]
        else:
            status_ = "failed" if failed else "stale" if stale else None
            found = read_records(opened, status=status_, experiment=experiment, load_values=False)
            targets = [r["key"] for r in found]
    targets = list(dict.fromkeys(targets))
    if not targets:
        click.echo("Nothing to forget.")
        return
    what = chosen[0].lstrip("-")
    if not yes:
        click.confirm(
            f"Forget {len(targets)} result(s) ({what}) from {shown}?", abort=True, err=True
        )
    with open_store(path) as writable:
        removed = writable.delete(targets)
    click.echo(f"Forgot {removed} result(s) from {shown}.")


def _resolve_key(opened: Any, prefix: str, experiment: str | None) -> str:

    found = read_records(opened, key_prefix=prefix, experiment=experiment, load_values=False)
    if not found:
        raise click.ClickException(f"No result has a key starting with {prefix!r}.")
    if len(found) > 1:
        keys = ", ".join(r["key"] for r in found[:LIST_LIMIT])
        raise click.ClickException(
            f"Key prefix {prefix!r} is ambiguous ({len(found)} results match): {keys}"
        )
    key: str = found[0]["key"]
    return key


# -- report ---------------------------------------------------------------------------------------
_REPORT_FORMATS = ("html", "svg", "png")


@cli.command()
@click.argument("store", required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    help="The HTML file to write [default: report.html]; with --format svg or png, the "
    "directory to write one file per figure into [default: figures].",
)
@click.option("--experiment", "-e", help="Only results of this experiment.")
@click.option(
    "--by",
    metavar="PARAM",
    help="Group by this parameter: one line per value (mean, std band), error bars over the rest.",
)
@_where_option
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME",
    help="Only this metric or key of the returned dict (repeatable) [default: all].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_REPORT_FORMATS),
    default="html",
    show_default=True,
    help="html: one self-contained page; svg, png: one file per figure (the 'plot' extra).",
)
@_load_values_option
@_clean_errors
def report(
    store: str | None,
    output: str | None,
    experiment: str | None,
    by: str | None,
    where: tuple[str, ...],
    metrics: tuple[str, ...],
    fmt: str,
    load_values: bool,
) -> None:
    """A self-contained HTML page (summary, metric curves grouped --by a parameter, final
    values, group means, sortable results table), or each figure as SVG or PNG."""

    path = _store_path(store)
    conditions = parse_where(where)
    chosen = list(metrics) or None
    if fmt == "html":
        output = output or "report.html"
        counts = write_report(
            path,
            output,
            experiment=experiment,
            load_values=load_values,
            by=by,
            where=conditions,
            metrics=chosen,
        )
        click.echo(f"Wrote {output} ({counts['results']} results, {counts['plots']} figures).")
        return
    directory = output or "figures"
    try:
        written = write_figures(
            path,
            directory,
            "png" if fmt == "png" else "svg",
            experiment=experiment,
            load_values=load_values,
            by=by,
            where=conditions,
            metrics=chosen,
        )
    except MissingExtra as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {len(written)} {fmt.upper()} figure(s) into {directory}.")
    for file in written:
        click.echo(f"  {file}")


# -- import-1.2 -----------------------------------------------------------------------------------
@cli.command("import-1.2")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path())
@click.option(
    "--experiment",
    "-e",
    required=True,
    metavar="SCRIPT.py:FUNCTION",
    help="The experiment: SCRIPT.py:FUNCTION or package.module:FUNCTION.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Where 1.2 ran, holding memento_cache/ [default: OLD's directory].",
)
@click.option("--experiment-version", help="The Memento(version=...) the experiment now uses.")
@_clean_errors
def import_12(
    old: str, new: str, experiment: str, cache_dir: str | None, experiment_version: str | None
) -> None:
    """Copy the results of the memento-ml 1.2 store OLD into the memento store NEW, so that
    Memento(FUNCTION).run(matrix, cache_path=NEW) finds them. OLD and memento_cache/ are only
    read; results already in NEW are kept; rows that cannot be loaded are skipped and listed.

    Warning: the results are pickles, and loading them runs code stored in them; the script
    named by --experiment is imported too (not its __main__ block). Import only stores you
    trust. See docs/cli.md.
    """

    report = import_legacy_store(
        old, new, experiment, cache_dir=cache_dir, version=experiment_version
    )
    click.echo("\n".join(report.lines()))


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``memento`` script and of ``python -m memento``."""
    try:
        cli.main(args=args, prog_name="memento")
    except BrokenPipeError:  # `memento results | head`: the reader left, nothing to report
        # Point stdout at /dev/null so that Python's exit-time flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


__all__ = ["cli", "main"]
