"""Metric tables: what ``context.collect_metrics()`` and ``Result.metrics`` give, a pandas
``DataFrame`` with columns ``x`` and ``y`` when pandas is installed (as in memento-ml 1.2), else
the light :class:`MetricTable`; and the optional pandas import both sides use."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from memento._util.optional import optional_import


def plain_number(value: Any) -> Any:
    """numpy scalars and other number-likes become plain Python numbers."""
    if isinstance(value, (int, float)) and type(value) in (int, float, bool):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except Exception:
            return value
    return value


class Column(tuple[Any, ...]):
    """One column of a :class:`MetricTable`: a tuple with a few pandas-like conveniences."""

    def tolist(self) -> list[Any]:
        return list(self)

    to_list = tolist

    @property
    def values(self) -> list[Any]:
        return list(self)

    @property
    def iloc(self) -> Column:
        return self

    def last(self) -> Any:
        return self[-1] if self else None


class MetricTable:
    """A recorded metric without pandas: rows of ``(x, y)``, with columns ``x`` and ``y``.

    When pandas is installed, metrics are pandas ``DataFrame`` objects instead (see
    :func:`metric_table`); this light table stands in for them otherwise. Example::

        table = result.metrics["loss"]
        table["y"]            # Column of y values: list(table["y"]), table["y"][-1]
        table.x, table.y      # the same columns as attributes
        table.to_dataframe()  # a pandas DataFrame with columns x and y (needs pandas)

    Other attribute look-ups are forwarded to the pandas DataFrame when pandas is installed, so
    memento-ml 1.2 code that treated metrics as DataFrames keeps working.
    """

    columns = ("x", "y")

    def __init__(self, rows: Iterable[Sequence[Any]] = ()) -> None:
        self._rows = [(r[0], r[1]) for r in rows]

    @property
    def rows(self) -> list[tuple[Any, Any]]:
        return list(self._rows)

    @property
    def x(self) -> Column:
        return Column(r[0] for r in self._rows)

    @property
    def y(self) -> Column:
        return Column(r[1] for r in self._rows)

    @overload
    def __getitem__(self, item: str) -> Column: ...

    @overload
    def __getitem__(self, item: int) -> tuple[Any, Any]: ...

    def __getitem__(self, item: str | int) -> Column | tuple[Any, Any]:
        if item == "x":
            return self.x
        if item == "y":
            return self.y
        if isinstance(item, int):
            return self._rows[item]
        raise KeyError(f"A metric table has columns 'x' and 'y', not {item!r}")

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return iter(self._rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MetricTable):
            return self._rows == other._rows
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def empty(self) -> bool:
        return not self._rows

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self._rows), 2)

    def to_dataframe(self) -> Any:
        """The table as a pandas DataFrame with columns ``x`` and ``y``."""
        pd = require_pandas("MetricTable.to_dataframe()")
        return pd.DataFrame(self._rows, columns=["x", "y"])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            frame = self.to_dataframe()
        except ImportError:
            raise AttributeError(
                f"MetricTable has no attribute {name!r} (install pandas for DataFrame methods)"
            ) from None
        return getattr(frame, name)

    def __repr__(self) -> str:
        shown = ", ".join(f"({x!r}, {y!r})" for x, y in self._rows[:5])
        more = ", ..." if len(self._rows) > 5 else ""
        return f"MetricTable([{shown}{more}])"


def metric_table(points: Iterable[Sequence[Any]]) -> Any:
    """One metric's ``(x, y)`` points as a table with columns ``x`` and ``y``.

    A pandas ``DataFrame`` (default index, dtypes inferred from the values, as memento-ml 1.2
    built them) when pandas can be imported, else a :class:`MetricTable`. Example::

        metric_table([(0, 0.9), (1, 0.5)])["y"].mean()   # 0.7
    """
    pd = optional_pandas()
    if pd is None:
        return MetricTable(points)
    return pd.DataFrame([(p[0], p[1]) for p in points], columns=["x", "y"])


def optional_pandas() -> Any | None:
    """pandas if it can be imported, else ``None``; asked on each call, cheap once imported."""
    pd = sys.modules.get("pandas")
    if pd is not None:
        return pd
    if "pandas" in sys.modules:  # sys.modules["pandas"] = None blocks the import
        return None
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def as_table(table: Any) -> Any:
    """A metric as :func:`metric_table` gives it; DataFrames and other objects pass through."""
    if isinstance(table, MetricTable):
        return metric_table(table.rows) if optional_pandas() is not None else table
    if isinstance(table, (list, tuple)):
        return metric_table(table)
    return table


def last_y(table: Any) -> Any:
    """The last y of a metric table (a DataFrame or a :class:`MetricTable`); ``None`` if empty."""
    if isinstance(table, MetricTable):
        return table.y.last()
    try:
        column = table["y"]
        return plain_number(column.iloc[-1]) if len(column) else None
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def require_pandas(purpose: str) -> Any:
    return optional_import("pandas", "pandas", purpose)


__all__ = [
    "Column",
    "MetricTable",
    "as_table",
    "last_y",
    "metric_table",
    "optional_pandas",
    "plain_number",
    "require_pandas",
]
