"""The figures of a grid, as data: what to draw, computed once for every renderer.

A grid of 30 configs drawn one line per config is unreadable, so the figures here summarise:
configs are grouped by a parameter (``by="model"``), and each group is one line, the mean over
its configs, with their standard deviation as a band or error bars. Two renderers draw them:
the HTML report (:mod:`memento.view.report`, inline SVG) and matplotlib
(:mod:`memento.results.plotting`, for notebooks and paper figures). Nothing here draws, so both
show the same numbers.

- :class:`CurveFigure`: one metric's curve, y against x. Metrics recorded with an explicit x
  (``context.record({"loss": (epoch, y)})``) align on x; metrics recorded with the default
  timestamp are plotted against the seconds since that experiment's first record, interpolated
  onto a common grid. The two kinds never share an axis: a metric recorded both ways gives two
  figures.
- :class:`FinalFigure`: a final value (a metric's last y, or a key of the returned dict) against
  a numeric parameter (``lr``), one line per group, mean and std over everything else (repeats,
  other parameters). The x axis is logarithmic when the values span two decades or more.
- :class:`GroupTable`: each group's mean, std and count of every final value.

Example::

    figures = build_figures(records, by="model", metrics=["loss"])
    for figure in figures.curves:
        print(figure.title, [line.label for line in figure.lines])

``records`` are those of :func:`memento.results.reading.read_records`;
:func:`result_records` turns a :class:`~memento.results.result.ResultList` into the same shape.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from memento._util.tables import MetricTable, plain_number
from memento._util.text import display_value, plain_value
from memento.results.aggregate import group_label

#: Distinguishable colours (Tableau 10 and two more); beyond them lines cycle with dashes.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#79706e",
    "#1b3a6b",
    "#86bc86",
)
#: Dash patterns (on, off lengths), one per turn through :data:`PALETTE`.
DASHES: tuple[tuple[int, ...], ...] = ((), (6, 3), (2, 2), (8, 3, 2, 3))
#: Without ``by``, one line per config up to this many configs, else one mean line.
MAX_LINES = 10
#: Points per line at most (a longer line is thinned, its last point kept).
MAX_POINTS = 400
#: Points of the common time grid that timestamped curves are interpolated onto.
TIME_POINTS = 200
#: Parameters never used as the x of a final-value figure (they are what is averaged over).
AVERAGED = frozenset({"repeat", "seed"})

Kind = Literal["x", "time"]


def style(i: int) -> tuple[str, tuple[int, ...]]:
    """The ``i``-th line's colour and dash pattern (solid for the first 12)."""
    return PALETTE[i % len(PALETTE)], DASHES[(i // len(PALETTE)) % len(DASHES)]


@dataclass(frozen=True)
class Line:
    """One line: a group's mean (``std`` its spread, 0 for a single config) at each x;
    ``counts`` is how many configs each point averages."""

    label: str
    xs: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    counts: tuple[int, ...]
    configs: int
    #: Its colour and dash (:func:`style`): a group keeps its style in every figure.
    index: int = 0


@dataclass(frozen=True)
class CurveFigure:
    """One metric, y against x (``kind="x"``) or against elapsed seconds (``"time"``)."""

    metric: str
    kind: Kind
    lines: tuple[Line, ...]
    legend_title: str
    split: bool = False  # the metric was recorded both ways: say which this is in the title

    @property
    def x_label(self) -> str:
        return "seconds since the experiment's first record" if self.kind == "time" else "x"

    @property
    def title(self) -> str:
        if not self.split:
            return self.metric
        return f"{self.metric} (against {'time' if self.kind == 'time' else 'x'})"

    @property
    def name(self) -> str:
        """A file name for it (no extension)."""
        return _file_name(f"{self.metric}-{self.kind}" if self.split else self.metric)


@dataclass(frozen=True)
class FinalFigure:
    """A final value against a numeric parameter, one line per group, with error bars."""

    quantity: str
    param: str
    log_x: bool
    lines: tuple[Line, ...]
    legend_title: str

    @property
    def title(self) -> str:
        return f"final {self.quantity} against {self.param}"

    @property
    def name(self) -> str:
        return _file_name(f"final-{self.quantity}-vs-{self.param}")


@dataclass(frozen=True)
class Stat:
    """Mean, std (0 for one value) and count of one final value over a group's configs."""

    mean: float
    std: float
    count: int


@dataclass(frozen=True)
class GroupTable:
    """Each group's final values: ``rows`` of (group label, configs, one :class:`Stat` or
    ``None`` per column)."""

    by: str | None
    columns: tuple[str, ...]
    rows: tuple[tuple[str, int, tuple[Stat | None, ...]], ...]


@dataclass(frozen=True)
class Figures:
    """Everything :func:`build_figures` computes."""

    curves: tuple[CurveFigure, ...]
    finals: tuple[FinalFigure, ...]
    table: GroupTable

    def __len__(self) -> int:
        return len(self.curves) + len(self.finals)


def build_figures(
    records: Sequence[Mapping[str, Any]],
    *,
    by: str | None = None,
    metrics: str | Iterable[str] | None = None,
) -> Figures:
    """The figures of the successful ``records``, grouped by the parameter ``by``.

    ``metrics`` keeps some metrics or keys of the returned dict (default: all).

    :raises ValueError: ``by`` is not a parameter, or a name of ``metrics`` is neither a
        metric nor a key of the returned values.
    """
    done = [r for r in records if r["status"] == "done"]
    if by is not None:
        known = sorted({p for r in records for p in r["params"]})
        if by not in known:
            raise ValueError(
                f"No parameter named {by!r} to group by; the parameters are: {', '.join(known)}"
            )
    names, keys = metric_names(done), value_keys(done)
    chosen = _choose(metrics, names + [k for k in keys if k not in names])
    groups = group_records(done, by)
    curves = [f for name in names if name in chosen for f in _curves(name, groups, by)]
    quantities = [q for q in chosen if q in names or q in keys]
    finals = [
        figure
        for param in numeric_params(done, exclude={by} if by else set())
        for q in quantities
        if (figure := _final(q, param, groups, by)) is not None
    ]
    return Figures(tuple(curves), tuple(finals), _table(quantities, groups, by))


# -- grouping -----------------------------------------------------------------------------------
def group_records(
    records: Sequence[Mapping[str, Any]], by: str | None
) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """``(label, records)`` per value of the parameter ``by`` (numbers sorted by value, text
    naturally: ``run 2`` before ``run 10``), or one group of every record when ``by`` is
    ``None``."""
    if by is None:
        return [("all", list(records))] if records else []
    # Grouped by the value itself (1, 1.0 and "1", or 0.1 and 0.1000001, stay apart), shown
    # by its text.
    groups: dict[Any, tuple[str, list[Mapping[str, Any]]]] = {}
    order: dict[Any, tuple[int, float, tuple[tuple[int, str], ...]]] = {}
    for r in records:
        value = r["params"].get(by)
        group = (type(value).__name__, group_label(value))
        label = value_text(value)
        groups.setdefault(group, (label, []))[1].append(r)
        order[group] = (0, float(value), ()) if _is_number(value) else (1, 0.0, _natural(label))
    return [groups[g] for g in sorted(groups, key=lambda g: order[g])]


def _natural(text: str) -> tuple[tuple[int, str], ...]:
    """A sort key putting ``run 2`` before ``run 10``."""
    return tuple(
        (int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", text)
    )


def value_text(value: Any) -> str:
    """A parameter value as a short label: ``0.001``, ``mlp``, ``True``, ``None``."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else display_value(value)


#: The characters of a legend entry (see :func:`short_label`).
LABEL_CHARS = 32


def short_label(text: str, width: int = LABEL_CHARS) -> str:
    """``text`` cut to ``width`` characters in the middle (``a long varia…number 14``): labels
    of one legend often share a prefix, and their ends tell them apart."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "\u2026" + text[len(text) - tail :]


def varying_label(record: Mapping[str, Any], varying: Sequence[str]) -> str:
    """``lr=0.1, model=mlp``: the parameters that differ between the configs drawn."""
    return ", ".join(f"{p}={value_text(record['params'].get(p))}" for p in varying) or "config"


def metric_names(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The metrics recorded by any of ``records``, in first-seen order."""
    names: dict[str, None] = {}
    for r in records:
        names.update(dict.fromkeys(r["series"]))
    return list(names)


def value_keys(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Keys of the returned dicts with a numeric value (``"value"`` for a returned number)."""
    keys: dict[str, None] = {}
    for r in records:
        keys.update(dict.fromkeys(k for k, v in _values(r).items() if _is_number(v)))
    return list(keys)


def numeric_params(records: Sequence[Mapping[str, Any]], exclude: set[str]) -> list[str]:
    """Parameters with numbers only, at least two distinct, outside ``exclude`` and
    :data:`AVERAGED`."""
    found = []
    for p in dict.fromkeys(p for r in records for p in r["params"]):
        if p in exclude or p in AVERAGED:
            continue
        values = [r["params"].get(p) for r in records]
        if all(_is_number(v) for v in values) and len(set(values)) > 1:
            found.append(p)
    return found


def _choose(metrics: str | Iterable[str] | None, known: list[str]) -> list[str]:
    if metrics is None:
        return known
    wanted = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in wanted if m not in known]
    if unknown:
        raise ValueError(
            f"No metric or value key named {', '.join(map(repr, unknown))}; there are: "
            f"{', '.join(known) or 'none'}"
        )
    return list(dict.fromkeys(wanted))


# -- curves -------------------------------------------------------------------------------------
def _curves(
    name: str, groups: list[tuple[str, list[Mapping[str, Any]]]], by: str | None
) -> list[CurveFigure]:
    """The figures of metric ``name``: one per kind of x it was recorded with."""
    by_kind: dict[Kind, list[tuple[int, str, list[list[tuple[float, float]]]]]] = {}
    for index, (label, members) in enumerate(groups):
        split: dict[Kind, list[list[tuple[float, float]]]] = {}
        for r in members:
            kind, points = curve_points(r["series"].get(name) or [])
            if points:
                split.setdefault(kind, []).append(points)
        for kind, curves in split.items():
            by_kind.setdefault(kind, []).append((index, label, curves))
    figures = []
    for kind, grouped in by_kind.items():
        total = sum(len(curves) for _, _, curves in grouped)
        if by is None and total <= MAX_LINES:
            lines, names = _single_lines(name, kind, groups[0][1])
            title = f"one line per config ({', '.join(names)})" if names else "one line per config"
        elif by is None:
            lines = [_mean_line(f"all {total} configs", grouped[0][2], kind, 0)]
            title = f"mean \u00b1 std over {total} configs"
        else:
            lines = [_mean_line(label, curves, kind, i) for i, label, curves in grouped]
            title = f"by {by}: mean \u00b1 std over each group's configs"
        figures.append(CurveFigure(name, kind, tuple(lines), title, split=len(by_kind) > 1))
    return sorted(figures, key=lambda f: f.kind)


def curve_points(points: Sequence[Any]) -> tuple[Kind, list[tuple[float, float]]]:
    """A stored series as numeric ``(x, y)`` and its kind: timestamps (x then counts seconds
    from the first record), or explicit x (its index when some x is not a number)."""
    numeric_x = bool(points) and all(_is_number(p[0]) for p in points)
    timestamps = numeric_x and all(1e9 < float(p[0]) < 1e10 for p in points)
    origin = min(float(p[0]) for p in points) if timestamps else 0.0
    line = [
        (float(p[0]) - origin if numeric_x else float(i), float(p[1]))
        for i, p in enumerate(points)
        if _is_number(p[1])
    ]
    if timestamps:
        line.sort(key=lambda point: point[0])  # in time order, for interpolation
    return ("time" if timestamps else "x"), line


def _single_lines(
    name: str, kind: Kind, records: Sequence[Mapping[str, Any]]
) -> tuple[list[Line], list[str]]:
    """One line per config, labelled by the parameters that differ; when ``name=value``
    labels would not fit a legend entry, by the values alone, and the names are returned
    (for the caption) so that a cut never hides the value that tells two lines apart."""
    drawn, curves = [], []
    for r in records:
        curve_kind, points = curve_points(r["series"].get(name) or [])
        if curve_kind == kind and points:
            drawn.append(r)
            curves.append(points)
    varying = _varying(drawn)
    labels = [varying_label(r, varying) for r in drawn]
    names: list[str] = []
    if varying and max(map(len, labels), default=0) > LABEL_CHARS:
        names = varying
        labels = [", ".join(value_text(r["params"].get(p)) for p in varying) for r in drawn]
    lines = []
    for i, (points, label) in enumerate(zip(curves, labels)):
        xs, ys = _thin(points)
        zeros, ones = (0.0,) * len(xs), (1,) * len(xs)
        lines.append(Line(label, xs, ys, zeros, ones, 1, i))
    return lines, names


def _varying(records: Sequence[Mapping[str, Any]]) -> list[str]:
    names = dict.fromkeys(p for r in records for p in r["params"])
    return [p for p in names if len({repr(r["params"].get(p)) for r in records}) > 1]


def _mean_line(label: str, curves: list[list[tuple[float, float]]], kind: Kind, index: int) -> Line:
    """The mean and std over ``curves``: aligned on x, or interpolated onto a time grid."""
    if kind == "time":
        end = max(c[-1][0] for c in curves)
        count = TIME_POINTS if end > 0 else 1
        grid = [end * i / max(count - 1, 1) for i in range(count)]
        columns = [[y for c in curves if (y := _interpolate(c, t)) is not None] for t in grid]
    else:
        at: dict[float, list[float]] = {}
        for c in curves:
            for x, y in dict(c).items():  # the last y of a repeated x
                at.setdefault(x, []).append(y)
        grid = sorted(at)
        columns = [at[x] for x in grid]
    kept = [(x, ys) for x, ys in zip(grid, columns) if ys]
    stats = [_stat(ys) for _, ys in kept]
    xs, means = _thin([(x, s.mean) for (x, _), s in zip(kept, stats)])
    _, stds = _thin([(x, s.std) for (x, _), s in zip(kept, stats)])
    _, counts = _thin([(x, float(s.count)) for (x, _), s in zip(kept, stats)])
    return Line(label, xs, means, stds, tuple(int(c) for c in counts), len(curves), index)


def _interpolate(curve: list[tuple[float, float]], t: float) -> float | None:
    """``curve``'s y at ``t`` (linear between its points); ``None`` outside its span."""
    if t < curve[0][0] or t > curve[-1][0]:
        return None
    i = bisect.bisect_left(curve, (t, -math.inf))
    if i == 0:
        return curve[0][1]
    (x0, y0), (x1, y1) = curve[i - 1], curve[i]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (t - x0) / (x1 - x0)


def _thin(points: list[tuple[float, float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if len(points) > MAX_POINTS:
        step = math.ceil(len(points) / MAX_POINTS)
        points = points[::step] + ([points[-1]] if (len(points) - 1) % step else [])
    return tuple(x for x, _ in points), tuple(y for _, y in points)


# -- final values -------------------------------------------------------------------------------
def final_value(record: Mapping[str, Any], quantity: str) -> float | None:
    """A metric's last y, else the returned dict's key ``quantity``, when it is a number."""
    if quantity in record["series"]:
        value = record["metrics"].get(quantity)
    else:
        value = _values(record).get(quantity)
    return float(value) if _is_number(value) else None


def _final(
    quantity: str, param: str, groups: list[tuple[str, list[Mapping[str, Any]]]], by: str | None
) -> FinalFigure | None:
    lines = []
    for index, (label, members) in enumerate(groups):
        at: dict[float, list[float]] = {}
        for r in members:
            y = final_value(r, quantity)
            if y is not None:
                at.setdefault(float(r["params"][param]), []).append(y)
        if at:
            xs = tuple(sorted(at))
            stats = [_stat(at[x]) for x in xs]
            means, stds = tuple(s.mean for s in stats), tuple(s.std for s in stats)
            counts = tuple(s.count for s in stats)
            lines.append(Line(label, xs, means, stds, counts, len(members), index))
    if not lines:
        return None
    xs_all = [x for line in lines for x in line.xs]
    log_x = min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 100
    what = f"one line per {by}" if by else "all configs"
    title = f"{what}; error bars: std over the other parameters and repeats"
    return FinalFigure(quantity, param, log_x, tuple(lines), title)


def _table(
    quantities: list[str], groups: list[tuple[str, list[Mapping[str, Any]]]], by: str | None
) -> GroupTable:
    rows = []
    for label, members in groups:
        cells = []
        for q in quantities:
            values = [v for r in members if (v := final_value(r, q)) is not None]
            cells.append(_stat(values) if values else None)
        rows.append((label, len(members), tuple(cells)))
    return GroupTable(by, tuple(quantities), tuple(rows))


def _stat(values: Sequence[float]) -> Stat:
    """Mean and sample standard deviation (n - 1; 0 for one value)."""
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return Stat(mean, math.sqrt(var), n)


# -- results from a run -------------------------------------------------------------------------
def result_records(results: Iterable[Any]) -> list[dict[str, Any]]:
    """:class:`~memento.results.result.Result` objects as the records figures are built from
    (``params``, ``status``, ``series``, ``metrics``, ``inner``)."""
    records = []
    for result in results:
        series = {name: _rows(table) for name, table in result.metrics.items()}
        records.append(
            {
                "params": {k: plain_value(v) for k, v in result.config.asdict().items()},
                "status": result.status,
                "series": series,
                "metrics": {name: (rows[-1][1] if rows else None) for name, rows in series.items()},
                "inner": result.inner,
            }
        )
    return records


def _rows(table: Any) -> list[list[Any]]:
    if isinstance(table, MetricTable):
        return [[x, y] for x, y in table.rows]
    return [[x, y] for x, y in zip(table["x"].tolist(), table["y"].tolist())]


# -- small helpers ------------------------------------------------------------------------------
def _values(record: Mapping[str, Any]) -> dict[str, Any]:
    inner = record.get("inner")
    if isinstance(inner, dict):
        return {str(k): plain_number(v) for k, v in inner.items()}
    return {"value": inner} if _is_number(inner) else {}


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "figure"


__all__ = [
    "AVERAGED",
    "DASHES",
    "MAX_LINES",
    "MAX_POINTS",
    "PALETTE",
    "CurveFigure",
    "FinalFigure",
    "Figures",
    "GroupTable",
    "Line",
    "Stat",
    "build_figures",
    "curve_points",
    "final_value",
    "group_records",
    "metric_names",
    "numeric_params",
    "result_records",
    "short_label",
    "style",
    "value_keys",
    "value_text",
    "varying_label",
]
