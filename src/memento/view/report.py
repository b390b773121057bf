"""A self-contained HTML report of a store: summary, sortable results table, metric figures.

The page needs no network: styles and a small script are inlined, plots are inline SVG drawn
here, and a Content-Security-Policy forbids loading anything. Every value that comes from
the store (parameters, errors, tracebacks, metric names) is HTML-escaped.

What the figures show is computed by :mod:`memento.results.figures` (so that the PNG and SVG
files of ``--format`` and ``results.plot()``, drawn by matplotlib, show the same numbers):
curves are one line per group of ``by`` (mean, with a band of one std), or per config when
there are few; final values are drawn against each numeric parameter with error bars; a
sortable table gives each group's means and stds.

Example::

    from memento.view.report import write_report

    write_report("memento.sqlite", "report.html", by="model", where={"dataset": "mnist"})

or ``memento report memento.sqlite --by model -o report.html``.
"""

from __future__ import annotations

import datetime
import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from memento._util.text import display_value, format_bytes, format_seconds, truncate
from memento.results.figures import (
    CurveFigure,
    Figures,
    FinalFigure,
    GroupTable,
    Line,
    build_figures,
    metric_names,
    short_label,
    style,
)
from memento.results.plotting import save_figures
from memento.results.reading import (
    StoreSummary,
    config_label,
    count_kinds,
    filter_records,
    flat_records,
    kinds_text,
    read_records,
    summarize,
)
from memento.store.backends import open_store, store_location

#: Characters of a legend label shown (the full label is its tooltip).
_WIDTH, _HEIGHT = 640, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 16, 44


def write_report(
    store: str | os.PathLike[str] | None,
    output: str | os.PathLike[str],
    *,
    experiment: str | None = None,
    load_values: bool = False,
    by: str | None = None,
    where: Mapping[str, Any] | None = None,
    metrics: str | Iterable[str] | None = None,
) -> dict[str, int]:
    """Write the report of ``store`` (default: ``$MEMENTO_CACHE_PATH`` or
    ``memento.sqlite``) to ``output``; return ``{"results": n, "plots": m}``.

    ``by`` groups the curves by a parameter; ``where`` keeps the results whose parameters
    match (as :func:`memento.results.reading.filter_records`); ``metrics`` keeps some metrics
    or keys of the returned dict. Return values are shown only when plain (see
    :mod:`memento.store.safe_pickle`); ``load_values=True`` unpickles them all, which runs
    code from the store."""
    records, summary, title = _read(store, experiment, load_values, where)
    figures = build_figures(records, by=by, metrics=metrics)
    page = build_report(records, summary, title=f"memento report: {title}", figures=figures)
    Path(output).write_text(page, encoding="utf-8")
    return {"results": len(records), "plots": len(figures)}


def write_figures(
    store: str | os.PathLike[str] | None,
    directory: str | os.PathLike[str],
    fmt: Literal["png", "svg"],
    *,
    experiment: str | None = None,
    load_values: bool = False,
    by: str | None = None,
    where: Mapping[str, Any] | None = None,
    metrics: str | Iterable[str] | None = None,
) -> list[Path]:
    """Write each figure of the report as ``DIRECTORY/<name>.png`` (or ``.svg``), drawn by
    matplotlib (the ``plot`` extra); return the files written."""
    records, _, _ = _read(store, experiment, load_values, where, summary=False)
    return save_figures(build_figures(records, by=by, metrics=metrics), directory, fmt)


def _read(
    store: str | os.PathLike[str] | None,
    experiment: str | None,
    load_values: bool,
    where: Mapping[str, Any] | None,
    *,
    summary: bool = True,
) -> tuple[list[dict[str, Any]], StoreSummary | None, str]:
    """The records (filtered by ``where``), the store's summary (when asked for) and the
    report's title."""
    with open_store(store_location(store), readonly=True) as opened:
        records = read_records(opened, experiment=experiment, load_values=load_values)
        summarized = summarize(opened) if summary else None
        # A file's name; a server store's URL without its password.
        title = Path(opened.location).name if opened.directory is not None else opened.name
    if where:
        records = filter_records(records, where)
    return records, summarized, title


def build_report(
    records: Sequence[dict[str, Any]],
    summary: StoreSummary | None = None,
    *,
    title: str = "memento report",
    now: datetime.datetime | None = None,
    by: str | None = None,
    figures: Figures | None = None,
) -> str:
    """The HTML page for ``records`` (as
    :func:`memento.results.reading.read_records` gives them), its curves grouped by ``by``
    (or the ``figures`` given)."""
    now = now or datetime.datetime.now()
    figures = build_figures(records, by=by) if figures is None else figures
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may be fetched: the page must work offline and leak nothing.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head>",
        "<body>",
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(str(summary.path) if summary else "")}'
        f" &middot; generated {_e(now.strftime('%Y-%m-%d %H:%M:%S'))}</p></header>",
        _summary_section(records, summary),
        _plots_section(records, figures),
        _finals_section(figures),
        _groups_section(figures.table),
        _table_section(records),
        _failures_section(records),
        f"<script>{_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


# -- sections -------------------------------------------------------------------------------------
def _summary_section(records: Sequence[dict[str, Any]], summary: StoreSummary | None) -> str:
    done = sum(1 for r in records if r["status"] == "done" and not r["stale"])
    stale = sum(1 for r in records if r["stale"])
    failed = sum(1 for r in records if r["status"] == "failed")
    dirty = sum(1 for r in records if (r.get("provenance") or {}).get("dirty"))
    running = len(summary.running) if summary else 0
    runtime = sum(r["runtime"] or 0.0 for r in records)
    experiments = sorted({r["experiment"] for r in records})
    last = summary.last_activity if summary else None
    cards = [
        ("results", str(len(records)), ""),
        ("done", str(done), "ok"),
        ("failed", str(failed), "bad" if failed else ""),
        ("stale", str(stale), "warn" if stale else ""),
        ("from a dirty tree", str(dirty), "warn" if dirty else ""),
        ("running", str(running), ""),
        ("total runtime", _duration(runtime), ""),
        ("last activity", _timestamp(last) if last else "never", ""),
    ]
    html_cards = "".join(
        f'<div class="card {cls}"><div class="n">{_e(value)}</div><div class="l">{_e(label)}'
        "</div></div>"
        for label, value, cls in cards
    )
    names = "".join(f"<li><code>{_e(n)}</code></li>" for n in experiments)
    kinds = ""
    if failed:
        # What kinds of failure (memento.exceptions.FAILURE_KINDS): "5 failed: 3 error, ...".
        counted = count_kinds(r.get("kind") for r in records if r["status"] == "failed")
        kinds = f'<p class="sub kinds">{failed} failed: {_e(kinds_text(counted))}</p>'
    return (
        '<section id="summary"><h2>Summary</h2>'
        f'<div class="cards">{html_cards}</div>{kinds}'
        f'<p class="sub">Experiments:</p><ul class="experiments">{names}</ul></section>'
    )


def _table_section(records: Sequence[dict[str, Any]]) -> str:
    flat = flat_records(records)
    if not flat:
        return '<section id="results"><h2>Results</h2><p>No results stored yet.</p></section>'
    hidden = {"experiment", "note", "key", "stale"}  # a stale result's status says "stale"
    hidden |= {"python", "platform", "command"}  # provenance beyond the commit: memento show
    if len({r["experiment"] for r in records}) > 1:
        hidden.discard("experiment")
    columns = ["key", *(c for c in flat[0] if c not in hidden and c != "key")]
    if "experiment" not in hidden:
        columns.remove("experiment")
        columns.insert(1, "experiment")
    numeric = {c for c in columns if _numeric_column(row.get(c) for row in flat)}
    head = "".join(
        f'<th data-type="{"num" if c in numeric else "text"}" title="sort by {_e(c)}">{_e(c)}</th>'
        for c in columns
    )
    body = []
    for row in flat:
        cells = []
        for c in columns:
            value = row.get(c)
            if c == "key":
                cells.append(
                    f'<td class="key" title="{_e(value)}"><code>{_e(str(value)[:10])}</code></td>'
                )
                continue
            if c == "status" and row.get("stale"):
                value = "stale"
            cls = f' class="st-{_e(value)}"' if c == "status" else ""
            if c == "dirty" and value is True:
                cls = ' class="st-stale" title="computed from a tree with uncommitted changes"'
            elif c == "git_commit" and value:
                cls = f' title="{_e(value)}"'
            text = _cell_text(c, value)
            sort = _sort_value(value)
            title = f' title="{_e(text)}"' if len(text) > 40 else ""
            shown = truncate(text, 40, marker="\u2026")
            cells.append(f'<td{cls} data-sort="{_e(sort)}"{title}>{_e(shown)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<section id="results"><h2>Results</h2>'
        '<p class="sub">Click a column to sort; type to filter. '
        f'<input id="filter" type="search" placeholder="filter rows" aria-label="filter rows">'
        f' <span id="shown">{len(flat)}</span> of {len(flat)} rows</p>'
        '<div class="scroll"><table id="results-table" class="sortable">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div></section>"
    )


def _plots_section(records: Sequence[dict[str, Any]], figures: Figures) -> str:
    if not figures.curves:
        recorded = any(r["series"] for r in records)
        why = "No numeric values to plot." if recorded else "No metrics were recorded."
        return f'<section id="plots"><h2>Metrics</h2><p>{why}</p></section>'
    shown = "".join(_curve_figure(f) for f in figures.curves)
    drawn = {f.metric for f in figures.curves}
    left = [n for n in metric_names(r for r in records if r["status"] == "done") if n not in drawn]
    note = f'<p class="sub">No numeric values to plot: {_e(", ".join(left))}.</p>' if left else ""
    return f'<section id="plots"><h2>Metrics</h2><div class="plots">{shown}</div>{note}</section>'


def _finals_section(figures: Figures) -> str:
    if not figures.finals:
        return ""
    shown = "".join(_final_figure(f) for f in figures.finals)
    return f'<section id="finals"><h2>Final values</h2><div class="plots">{shown}</div></section>'


def _groups_section(table: GroupTable) -> str:
    if table.by is None or not table.columns or not table.rows:
        return ""  # one group of everything: the results table says it all
    heads = [(table.by, "text"), ("configs", "num")]
    for c in table.columns:
        heads += [(f"{c} mean", "num"), (f"{c} std", "num")]
    head = "".join(
        f'<th data-type="{kind}" title="sort by {_e(name)}">{_e(name)}</th>' for name, kind in heads
    )
    body = []
    for label, count, stats in table.rows:
        cells = [
            f'<td data-sort="{_e(label)}" title="{_e(label)}">{_e(truncate(label, 40, marker="…"))}'
            "</td>",
            f'<td data-sort="{count}">{count}</td>',
        ]
        for stat in stats:
            for value in (stat.mean, stat.std) if stat else (None, None):
                text = "" if value is None else f"{value:.4g}"
                cells.append(f'<td data-sort="{_sort_value(value)}">{_e(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<section id="groups"><h2>Group means</h2><p class="sub">Final values by {_e(table.by)}: '
        "mean and standard deviation (n &minus; 1) over the configs of each group. Click a "
        'column to sort.</p><div class="scroll"><table id="groups-table" class="sortable">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div></section>"
    )


def _failures_section(records: Sequence[dict[str, Any]]) -> str:
    failed = [r for r in records if r["status"] == "failed"]
    if not failed:
        return ""
    items = "".join(
        f"<details><summary><code>{_e(r['key'][:10])}</code> {_e(config_label(r['params']))}"
        f' &mdash; <span class="kind">{_e(r.get("kind") or "error")}</span>'
        f' &mdash; <span class="err">{_e(r["error"] or "")}</span></summary>'
        f"<pre>{_e(r['traceback'] or r['error'] or '')}</pre>{_stacks(r)}</details>"
        for r in failed
    )
    return f'<section id="failures"><h2>Failures ({len(failed)})</h2>{items}</section>'


def _stacks(record: Mapping[str, Any]) -> str:
    """A timed-out failure's thread stacks (faulthandler's text), whole, when stored."""
    stacks = record.get("stacks")
    if not stacks:
        return ""
    return f'<p class="sub">Stacks when it timed out:</p><pre class="stacks">{_e(stacks)}</pre>'


# -- plots ----------------------------------------------------------------------------------------
def _curve_figure(figure: CurveFigure) -> str:
    """One metric's curves: a line (and a std band) per group, as an inline SVG."""
    points = [
        (x, m + d * s)
        for line in figure.lines
        for x, m, s in zip(line.xs, line.mean, line.std)
        for d in (-1, 1)
    ]
    axes = _Axes(points)
    series = [_curve_svg(i, line, axes) for i, line in enumerate(figure.lines)]
    return _figure(figure.title, figure.x_label, figure.kind, axes, series, figure)


def _final_figure(figure: FinalFigure) -> str:
    """A final value against a parameter: a line per group, error bars of one std."""
    points = [
        (x, m + d * s)
        for line in figure.lines
        for x, m, s in zip(line.xs, line.mean, line.std)
        for d in (-1, 1)
    ]
    axes = _Axes(points, log_x=figure.log_x, pad=14)
    # Groups shifted a few pixels apart, so that error bars at the same x do not hide each other.
    step = min(4.0, 16 / max(len(figure.lines) - 1, 1))
    middle = (len(figure.lines) - 1) / 2
    series = [_final_svg(i, line, axes, (i - middle) * step) for i, line in enumerate(figure.lines)]
    x_label = figure.param + (" (log scale)" if figure.log_x else "")
    return _figure(figure.title, x_label, "final", axes, series, figure)


def _figure(
    title: str,
    x_label: str,
    kind: str,
    axes: _Axes,
    series: list[str],
    figure: CurveFigure | FinalFigure,
) -> str:
    svg = [
        f'<svg class="chart" data-kind="{_e(kind)}" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'role="img" aria-label="{_e(title)} against {_e(x_label)}">',
        *axes.grid(),
        axes.frame(x_label),
        *series,
        "</svg>",
    ]
    legend = "".join(_legend_item(i, line) for i, line in enumerate(figure.lines))
    return (
        f'<figure class="plot"><figcaption>{_e(title)}</figcaption>{"".join(svg)}'
        f'<p class="lt">{_e(figure.legend_title)}</p><ul class="legend">{legend}</ul></figure>'
    )


def _curve_svg(i: int, line: Line, axes: _Axes) -> str:
    """One group's mean line, its band of one std, and its points when few."""
    colour, dash = style(line.index)
    out = [_group_open(i, line, colour)]
    if len(line.xs) > 1 and any(line.std):
        upper = [(axes.sx(x), axes.sy(m + s)) for x, m, s in zip(line.xs, line.mean, line.std)]
        lower = [(axes.sx(x), axes.sy(m - s)) for x, m, s in zip(line.xs, line.mean, line.std)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower[::-1])
        out.append(f'<polygon class="band" points="{path}"/>')
    if len(line.xs) > 1:
        out.append(_polyline(line, axes, dash))
    if len(line.xs) <= 30:
        out += [
            f'<circle cx="{axes.sx(x):.1f}" cy="{axes.sy(y):.1f}" r="2.2"/>'
            for x, y in zip(line.xs, line.mean)
        ]
    out.append("</g>")
    return "".join(out)


def _final_svg(i: int, line: Line, axes: _Axes, shift: float) -> str:
    """One group's means against the parameter, with error bars, ``shift`` pixels right."""
    colour, dash = style(line.index)
    out = [_group_open(i, line, colour)]
    if len(line.xs) > 1:
        out.append(_polyline(line, axes, dash, shift))
    for x, m, s in zip(line.xs, line.mean, line.std):
        cx, top, bottom = axes.sx(x) + shift, axes.sy(m + s), axes.sy(m - s)
        if s > 0:
            out.append(
                f'<path class="err" d="M{cx:.1f},{top:.1f}V{bottom:.1f}M{cx - 4:.1f},{top:.1f}'
                f'h8M{cx - 4:.1f},{bottom:.1f}h8"/>'
            )
        out.append(f'<circle cx="{cx:.1f}" cy="{axes.sy(m):.1f}" r="3"/>')
    out.append("</g>")
    return "".join(out)


def _group_open(i: int, line: Line, colour: str) -> str:
    configs = f"{line.configs} config{'s' if line.configs != 1 else ''}"
    return (
        f'<g class="series" data-series="{i}" stroke="{colour}" fill="{colour}">'
        f"<title>{_e(line.label)} ({configs})</title>"
    )


def _polyline(line: Line, axes: _Axes, dash: tuple[int, ...], shift: float = 0.0) -> str:
    points = " ".join(
        f"{axes.sx(x) + shift:.1f},{axes.sy(y):.1f}" for x, y in zip(line.xs, line.mean)
    )
    dashes = f' stroke-dasharray="{" ".join(map(str, dash))}"' if dash else ""
    return f'<polyline class="mean" fill="none" stroke-width="1.8"{dashes} points="{points}"/>'


def _legend_item(i: int, line: Line) -> str:
    colour, dash = style(line.index)
    dashes = f' stroke-dasharray="{" ".join(map(str, dash))}"' if dash else ""
    swatch = (
        f'<svg class="sw" viewBox="0 0 18 10" aria-hidden="true"><line x1="0" y1="5" x2="18" '
        f'y2="5" stroke="{colour}" stroke-width="3"{dashes}/></svg>'
    )
    label = short_label(line.label)
    return (
        f'<li data-series="{i}" title="{_e(line.label)} ({line.configs} configs)">{swatch}'
        f"{_e(label)}</li>"
    )


class _Axes:
    """The plotting area: round ticks covering the values (decades on a log x), and data ->
    SVG coordinates."""

    width, height = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def __init__(
        self, points: Sequence[tuple[float, float]], *, log_x: bool = False, pad: float = 0.0
    ) -> None:
        xs, ys = [x for x, _ in points], [y for _, y in points]
        self.log_x, self.pad = log_x, pad  # pad: pixels kept free inside the frame, left and right
        self.x_ticks = _log_ticks(min(xs), max(xs)) if log_x else _ticks(min(xs), max(xs))
        self.y_ticks = _ticks(min(ys), max(ys))

    def sx(self, x: float) -> float:
        x0, x1 = self.x_ticks[0], self.x_ticks[-1]
        if self.log_x:
            x, x0, x1 = math.log10(x), math.log10(x0), math.log10(x1)
        return _LEFT + self.pad + (x - x0) / (x1 - x0) * (self.width - 2 * self.pad)

    def sy(self, y: float) -> float:
        y0, y1 = self.y_ticks[0], self.y_ticks[-1]
        return _TOP + self.height - (y - y0) / (y1 - y0) * self.height

    def grid(self) -> list[str]:
        """Grid lines and tick labels, x then y."""
        bottom, right = _TOP + self.height, _LEFT + self.width
        out = [
            f'<line class="grid" x1="{self.sx(t):.1f}" y1="{_TOP}" x2="{self.sx(t):.1f}" '
            f'y2="{bottom}"/><text class="tick" data-axis="x" x="{self.sx(t):.1f}" '
            f'y="{bottom + 16}" text-anchor="middle">{_e(_tick_text(t))}</text>'
            for t in self.x_ticks
        ]
        out += [
            f'<line class="grid" x1="{_LEFT}" y1="{self.sy(t):.1f}" x2="{right}" '
            f'y2="{self.sy(t):.1f}"/><text class="tick" x="{_LEFT - 6}" y="{self.sy(t) + 4:.1f}" '
            f'text-anchor="end">{_e(_tick_text(t))}</text>'
            for t in self.y_ticks
        ]
        return out

    def frame(self, x_label: str) -> str:
        """The frame around the plotting area and the x axis's label."""
        return (
            f'<rect class="frame" x="{_LEFT}" y="{_TOP}" width="{self.width}" '
            f'height="{self.height}"/><text class="axis" x="{_LEFT + self.width / 2:.1f}" '
            f'y="{_HEIGHT - 6}" text-anchor="middle">{_e(x_label)}</text>'
        )


def _ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering [low, high] (at least two distinct ones)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.5:
        ticks.append(round(value, 12))
        value += step
        if len(ticks) > 50:
            break
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten covering [low, high] (both > 0), at least two."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10.0**e for e in range(first, max(last, first + 1) + 1)]


def _tick_text(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:.6g}"


# -- cells ----------------------------------------------------------------------------------------
def _numeric_column(values: Iterable[Any]) -> bool:
    seen = False
    for v in values:
        if v is None:
            continue
        if not (isinstance(v, (int, float)) and not isinstance(v, bool)):
            return False
        seen = True
    return seen


def _sort_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(float(value))
    return "" if value is None else _plain(value)


def _cell_text(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in ("runtime", "cpu_time") and isinstance(value, (int, float)):
        return _duration(float(value))
    if column == "peak_memory" and isinstance(value, int):
        return format_bytes(value)
    if column == "git_commit":
        return str(value)[:10]
    if column == "dirty" and isinstance(value, bool):
        return "dirty" if value else "clean"
    if isinstance(value, float):
        return f"{value:.6g}"
    return _plain(value)


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else display_value(value)


def _duration(seconds: float) -> str:
    return format_seconds(seconds, style="words")


def _timestamp(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
:root{--fg:#1d2330;--muted:#5d6675;--line:#d9dde4;--bg:#fff;--alt:#f6f7f9;--ok:#2f7d32;
--bad:#c62828;--warn:#b26a00}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;padding:20px 28px 48px;max-width:1400px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid
var(--line);padding-bottom:4px}
.sub{color:var(--muted);margin:4px 0 8px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:110px;
background:var(--alt)}
.card .n{font-size:20px;font-weight:600}.card .l{color:var(--muted);font-size:12px}
.card.ok .n{color:var(--ok)}.card.bad .n{color:var(--bad)}.card.warn .n{color:var(--warn)}
.experiments{margin:0;padding-left:20px}
.scroll{overflow:auto;max-height:70vh;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
td[data-sort]{font-variant-numeric:tabular-nums}
th{position:sticky;top:0;background:#eef0f4;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
tbody tr:nth-child(even){background:var(--alt)}tbody tr:hover{background:#e8f0fe}
.st-done{color:var(--ok)}.st-failed{color:var(--bad);font-weight:600}
.st-stale{color:var(--warn)}
#filter{font:inherit;padding:2px 8px;border:1px solid var(--line);border-radius:4px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:18px}
figure.plot{margin:0;border:1px solid var(--line);border-radius:8px;padding:10px}
figcaption{font-weight:600;margin-bottom:4px}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:#e6e8ec;stroke-width:1}svg .frame{fill:none;stroke:#aab0ba}
svg .tick,svg .axis{font-size:11px;fill:var(--muted)}
svg .series{transition:opacity .15s}svg.dim .series{opacity:.15}svg.dim .series.hl{opacity:1}
svg .series.hl polyline{stroke-width:3}
svg .band{stroke:none;fill-opacity:.16}svg .err{fill:none;stroke-width:1.3}
svg circle{stroke:none}
.lt{color:var(--muted);font-size:12px;margin:6px 0 0}
.legend{list-style:none;margin:2px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:2px 14px;
font-size:12px;max-height:190px;overflow:auto}
.legend li{cursor:default;white-space:nowrap}.sw{display:inline-block;width:18px;height:10px;
margin-right:5px;vertical-align:-1px}
details{border:1px solid var(--line);border-radius:6px;margin:6px 0;padding:4px 10px}
summary{cursor:pointer}.err{color:var(--bad)}.kind{font-weight:600}
pre{white-space:pre-wrap;font:12px ui-monospace,Menlo,Consolas,monospace;background:var(--alt);
padding:8px;border-radius:4px;overflow:auto}
"""

_JS = """
(function () {
  "use strict";
  var sortable = function (table) {
    var heads = table.tHead.rows[0].cells;
    var body = table.tBodies[0];
    var keyOf = function (row, i, num) {
      var cell = row.cells[i];
      var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort")
                                               : cell.textContent;
      if (!num) { return raw.toLowerCase(); }
      return raw === "" ? null : parseFloat(raw);
    };
    Array.prototype.forEach.call(heads, function (th, i) {
      th.addEventListener("click", function () {
        var num = th.getAttribute("data-type") === "num";
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = keyOf(a, i, num), y = keyOf(b, i, num);
          if (x === y) { return 0; }
          if (x === null || x === "") { return 1; }
          if (y === null || y === "") { return -1; }
          return (x < y ? -1 : 1) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  };
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), sortable);
  var table = document.getElementById("results-table");
  if (table) {
    var heads = table.tHead.rows[0].cells;
    var body = table.tBodies[0];
    // report.html#sort=runtime (or #sort=-runtime, descending) opens the page sorted.
    var wanted = /^#sort=(-?)(.+)$/.exec(window.location.hash);
    if (wanted) {
      Array.prototype.forEach.call(heads, function (th) {
        if (th.textContent === decodeURIComponent(wanted[2])) {
          th.click();
          if (wanted[1] === "-") { th.click(); }
        }
      });
    }
    var filter = document.getElementById("filter");
    var shown = document.getElementById("shown");
    filter.addEventListener("input", function () {
      var q = filter.value.toLowerCase(), n = 0;
      Array.prototype.forEach.call(body.rows, function (r) {
        var hit = r.textContent.toLowerCase().indexOf(q) !== -1;
        r.style.display = hit ? "" : "none";
        if (hit) { n += 1; }
      });
      shown.textContent = String(n);
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("figure.plot"), function (fig) {
    var svg = fig.querySelector("svg");
    Array.prototype.forEach.call(fig.querySelectorAll(".legend li"), function (li) {
      var g = svg.querySelector('g[data-series="' + li.getAttribute("data-series") + '"]');
      li.addEventListener("mouseenter", function () {
        svg.classList.add("dim"); g.classList.add("hl");
      });
      li.addEventListener("mouseleave", function () {
        svg.classList.remove("dim"); g.classList.remove("hl");
      });
    });
  });
  document.body.dataset.rows = table ? String(table.tBodies[0].rows.length) : "0";
  document.body.dataset.plots = String(document.querySelectorAll("svg.chart").length);
  document.body.dataset.ready = "1";
})();
"""


__all__ = ["build_report", "write_figures", "write_report"]
