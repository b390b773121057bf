"""Group means over repeats: what :meth:`ResultList.aggregate` and :meth:`StoredResults.aggregate`
give.

A grid run several times (a ``repeat`` or ``seed`` parameter, several datasets) is read as one
number per config, with its spread: the results are grouped by the parameters named in ``by``,
and every parameter left out is what is averaged over. Both result lists first flatten their
results into the same kind of records (``to_records()``), so the grouping is written once, here,
over those flat records. It is computed with :mod:`statistics` rather than pandas' ``groupby``,
so that ``None`` and list-valued parameters form groups like any other value, and the numbers
are exactly those of ``statistics.mean`` and ``statistics.stdev``; pandas only holds the table.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from memento._util.tables import require_pandas
from memento.results.export import PROVENANCE_COLUMNS

#: The statistics given for every aggregated column, in order.
STATS = ("mean", "std", "count")

#: Columns of flat records that describe a run, not what it computed: never aggregated unless
#: asked for by ``columns=``. The union of what ``ResultList.to_records`` and
#: ``StoredResults.to_records`` write around the parameters, the value and the metrics, and
#: the provenance columns.
RUN_COLUMNS = frozenset(
    {
        "status",
        "was_cached",
        "stale",
        "runtime",
        "cpu_time",
        "peak_memory",
        "attempts",
        "error",
        "key",
        "experiment",
        "note",
        *PROVENANCE_COLUMNS,
        *(f"provenance.{c}" for c in PROVENANCE_COLUMNS),
    }
)

#: The column holding each group's number of failed results.
FAILED = "failed"


def aggregate(
    records: Sequence[Mapping[str, Any]],
    by: Sequence[str] | str,
    *,
    parameters: Sequence[str],
    columns: Sequence[str] | None = None,
) -> Any:
    """Mean, std and count of each numeric column of flat ``records``, grouped by parameters.

    Example, over a grid of ``model``, ``lr`` and ``repeat`` whose experiment returns
    ``{"accuracy": ...}`` and records a ``loss`` metric::

        results.aggregate(by=["model", "lr"])

                    accuracy                 metric.loss                 failed
                        mean       std count        mean       std count  count
        model lr
        mlp   0.10  0.904667  0.003215     3    0.219000  0.014799     3      0
              0.01  0.877000  0.002646     3    0.215333  0.022279     3      0
        cnn   0.10  0.938000       NaN     1    0.207000       NaN     1      2
              0.01  0.904667  0.001155     3    0.213333  0.009074     3      0

    The layout is that of pandas' ``frame.groupby(by)[columns].agg(["mean", "std", "count"])``:

    - one row per distinct combination of the ``by`` parameters, **in the order first seen**
      (matrix order for a run, store order for a store; ``.sort_index()`` sorts it), indexed
      by those parameters (a ``MultiIndex`` for several); ``by=[]`` puts every result into one
      row, index ``0``;
    - ``MultiIndex`` columns ``(column, stat)``: for each numeric column of the return value
      (each key of a returned dict of scalars, or ``inner`` for a scalar) and each
      ``metric.<name>`` (the metric's last value), ``mean``, ``std`` and ``count``; select
      with ``frame["accuracy", "mean"]`` or ``frame.xs("mean", axis=1, level=1)``;
    - ``std`` is the sample standard deviation (``ddof=1``, as ``statistics.stdev`` and
      pandas), ``NaN`` for a group with a single value; ``count`` counts the values that went
      into the mean (``None`` and ``NaN`` are missing and left out); booleans count as 0 and 1;
    - only successful results are aggregated: a group's failed results are counted in the
      last column, ``("failed", "count")``, and a group whose results all failed still has
      its row, with ``NaN`` means and ``count`` 0. A value column itself named ``failed`` is
      shown as ``inner.failed``.

    Columns whose values are not all numbers (strings, lists, unloaded values) are left out,
    as are the columns describing the run (status, timing, key...): name any of them in
    ``columns`` (for example ``columns=["accuracy", "runtime"]``) to choose exactly what is
    aggregated.

    :param records: flat records, as ``to_records()`` gives them.
    :param by: the parameters to group by; a single name may be given as a string.
    :param parameters: the parameter names of the records (a parameter whose column was
        renamed ``param.<name>`` to avoid a clash is found under its own name).
    :param columns: the columns to aggregate, instead of every numeric value and metric.
    :raises ValueError: ``by`` names an unknown parameter or one twice, or ``columns`` names
        an unknown or non-numeric column.
    :raises MissingExtra: pandas is not installed.
    """
    pd = require_pandas("aggregate()")
    names = [by] if isinstance(by, str) else list(by)
    _check_unique(names)
    present: dict[str, None] = {}
    for record in records:
        present.update(dict.fromkeys(record))
    param_column = {p: f"param.{p}" if f"param.{p}" in present else p for p in parameters}
    if records:
        _check_known(names, param_column)
    grouped = [param_column.get(name, name) for name in names]
    ok = [r for r in records if r.get("status", "done") != "failed"]
    values = _value_columns(present, set(param_column.values()), ok, columns)
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(tuple(group_label(record.get(c)) for c in grouped), []).append(record)
    data: dict[tuple[str, str], list[Any]] = {}
    for column in values:
        label = f"inner.{column}" if column == FAILED else column
        stats = [_stats(members, column) for members in groups.values()]
        for i, stat in enumerate(STATS):
            data[(label, stat)] = [s[i] for s in stats]
    data[(FAILED, "count")] = [
        sum(r.get("status") == "failed" for r in members) for members in groups.values()
    ]
    frame = pd.DataFrame(data, index=_index(pd, list(groups), names))
    frame.columns = pd.MultiIndex.from_tuples(list(data))
    return frame


def _check_unique(names: list[str]) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"aggregate(by=...) names {', '.join(map(repr, twice))} more than once")


def _check_known(names: list[str], param_column: Mapping[str, str]) -> None:
    unknown = [n for n in names if n not in param_column]
    if unknown:
        known = ", ".join(sorted(param_column)) or "none"
        raise ValueError(
            f"No parameter named {', '.join(map(repr, unknown))} to aggregate by; "
            f"the parameters are: {known}"
        )


def _value_columns(
    present: Mapping[str, None],
    param_columns: set[str],
    ok: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None,
) -> list[str]:
    """The columns to aggregate: those asked for, else every numeric non-parameter column."""
    if columns is None:
        candidates = [c for c in present if c not in param_columns and c not in RUN_COLUMNS]
        return [c for c in candidates if _numeric(ok, c)]
    chosen = list(columns)
    _check_unique(chosen)
    for column in chosen:
        if column not in present or column in param_columns:
            known = [c for c in present if c not in param_columns]
            raise ValueError(
                f"No column named {column!r} to aggregate; the columns are: {', '.join(known)}"
            )
        if not _numeric(ok, column):
            raise ValueError(
                f"Column {column!r} does not hold numbers in every successful result, so it "
                "cannot be averaged; leave it out of columns=..."
            )
    return chosen


def _numeric(records: Sequence[Mapping[str, Any]], column: str) -> bool:
    """Whether ``column`` holds at least one number and nothing but numbers or ``None``."""
    values = [r.get(column) for r in records if r.get(column) is not None]
    return bool(values) and all(isinstance(v, numbers.Real) for v in values)


def _stats(members: Sequence[Mapping[str, Any]], column: str) -> tuple[float, float, int]:
    """``(mean, std, count)`` of ``column`` over the successful ``members``."""
    values = [
        float(v)
        for r in members
        if r.get("status", "done") != "failed"
        and isinstance(v := r.get(column), numbers.Real)
        and not math.isnan(v)
    ]
    if not values:
        return math.nan, math.nan, 0
    if not all(math.isfinite(v) for v in values):
        # statistics works on exact fractions, which an infinity has not.
        return math.fsum(values) / len(values), math.nan, len(values)
    import statistics  # on first use: it loads fractions and decimal (~5 ms of every import)

    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.mean(values), std, len(values)


def group_label(value: Any) -> Any:
    """A parameter value as a group label: lists, dicts and sets by their text, which is
    hashable and keeps pandas from reading a tuple as several index levels."""
    if isinstance(value, (list, tuple, dict, set)):
        return str(value)
    return value


def _index(pd: Any, keys: list[tuple[Any, ...]], names: list[str]) -> Any:
    if not names:
        return pd.RangeIndex(len(keys))
    if len(names) == 1:
        return pd.Index([k[0] for k in keys], name=names[0], tupleize_cols=False)
    return pd.MultiIndex.from_tuples(keys, names=names)


__all__ = ["FAILED", "RUN_COLUMNS", "STATS", "aggregate", "group_label"]
