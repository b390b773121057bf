"""Results of a run: :class:`Result` objects, their metrics tables, and the list ``run`` returns."""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

from memento.context import plain_number
from memento.display import display_value, is_scalar_dict, plain_value
from memento.matrix import Config


class MemoryUsage:
    """Peak memory of the process that ran the experiment, in bytes.

    ``hardware_peak`` is the peak resident set size, ``virtual_peak`` the peak virtual size.
    """

    # No __slots__: memento-ml 1.2 pickled its MemoryUsage with a __dict__ state, and such
    # pickles (and ours from when this class had slots) load by the standard mechanism.

    def __init__(self, virtual_peak: int, hardware_peak: int) -> None:
        self.virtual_peak = virtual_peak
        self.hardware_peak = hardware_peak

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryUsage):
            return NotImplemented
        return (self.virtual_peak, self.hardware_peak) == (other.virtual_peak, other.hardware_peak)

    def __hash__(self) -> int:
        return hash((self.virtual_peak, self.hardware_peak))

    def __repr__(self) -> str:
        return f"MemoryUsage(virtual_peak={self.virtual_peak}, hardware_peak={self.hardware_peak})"

    @property
    def peak_rss(self) -> int:
        """Alias of ``hardware_peak``."""
        return self.hardware_peak


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


def _as_table(table: Any) -> Any:
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
    try:
        import pandas
    except ImportError:
        from memento.exceptions import MissingExtra

        raise MissingExtra("pandas", "pandas", purpose) from None
    return pandas


class Result:
    """The outcome of one experiment.

    ``inner`` is what the experiment returned; ``metrics`` maps each recorded metric's name to
    its table, columns ``x`` and ``y`` (see :attr:`metrics`); ``runtime`` and ``cpu_time`` are
    timedeltas; ``memory`` a :class:`MemoryUsage`; ``was_cached`` is true exactly when this call
    read it from the store. A failed experiment's result has ``ok == False``, ``inner is None``
    and ``error`` set.

    Results pickled by memento-ml 1.2 (its ``memento.task_interface.Result``) load as this
    class, with ``key=""``, ``attempts=1`` and no error.
    """

    _metrics: dict[str, Any]
    _metrics_ready: bool

    def __init__(
        self,
        config: Config,
        inner: Any,
        metrics: Mapping[str, Any] | None = None,
        start_time: datetime.datetime | None = None,
        runtime: datetime.timedelta | None = None,
        cpu_time: datetime.timedelta | None = None,
        memory: MemoryUsage | None = None,
        was_cached: bool = False,
        *,
        key: str = "",
        error: BaseException | None = None,
        attempts: int = 1,
        host: str = "",
    ) -> None:
        self.config = config
        self.inner = inner
        self.metrics = metrics
        self.start_time = start_time
        self.runtime = runtime
        self.cpu_time = cpu_time
        self.memory = memory
        self.was_cached = was_cached
        self.key = key
        self.error = error
        self.attempts = attempts
        self.host = host

    @property
    def metrics(self) -> dict[str, Any]:
        """Each recorded metric's table, by name: a pandas ``DataFrame`` with columns ``x`` and
        ``y`` when pandas is installed (as in memento-ml 1.2), else a :class:`MetricTable`.

        Example::

            loss = result.metrics["loss"]
            loss["y"].min(), loss[loss["x"] > 10]["y"].mean()

        Tables are built on first access, so reading results never imports pandas unless a
        metric is looked at.
        """
        if not self._metrics_ready:
            tables = self._metrics
            for name, table in tables.items():
                tables[name] = _as_table(table)
            self._metrics_ready = True
        return self._metrics

    @metrics.setter
    def metrics(self, value: Mapping[str, Any] | None) -> None:
        self._metrics = value if isinstance(value, dict) else dict(value or {})
        self._metrics_ready = False

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Our own pickles and memento-ml 1.2's (which had ``metrics`` as a plain attribute and
        # none of key, error, attempts, host).
        state = dict(state)
        metrics = state.pop("metrics", None)
        if metrics is None:
            metrics = state.pop("_metrics", None)
        state.pop("_metrics_ready", None)
        self.__dict__.update({"key": "", "error": None, "attempts": 1, "host": ""}, **state)
        self.metrics = metrics

    @property
    def ok(self) -> bool:
        """True when the experiment succeeded."""
        return self.error is None

    @property
    def status(self) -> str:
        """``"done"`` or ``"failed"``."""
        return "done" if self.error is None else "failed"

    def __repr__(self) -> str:
        state = "cached" if self.was_cached else self.status
        what = (
            f"inner={display_value(self.inner)}"
            if self.ok
            else f"error={type(self.error).__name__}"
        )
        return f"<Result {state} {self.config} {what}>"


class ResultList(list[Result]):
    """The list of :class:`Result` that ``Memento.run`` returns, in matrix order.

    ``successes`` and ``failures`` split it; ``to_dataframe()`` gives one row per config.
    """

    @property
    def successes(self) -> list[Result]:
        return [r for r in self if r.ok]

    @property
    def failures(self) -> list[Result]:
        return [r for r in self if not r.ok]

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per result, with the same columns for every result.

        Columns, in order: each parameter (classes and functions by name), the return value
        (``inner`` expanded into one column per key when every successful result returned a
        non-empty dict of scalars, else one ``inner`` column; a key that clashes with another
        column becomes ``inner.<key>``), ``status``, ``was_cached``, ``runtime`` and
        ``cpu_time`` (seconds), ``peak_memory`` (peak RSS, bytes), ``error``
        (``"Type: message"`` or ``None``), ``metric.<name>`` (the last recorded y of each
        metric) and ``key``.
        """
        successes = [r.inner for r in self if r.ok]
        expand = bool(successes) and all(is_scalar_dict(v) for v in successes)
        records = [result_record(r, expand_inner=expand) for r in self]
        columns: dict[str, None] = {}
        for record in records:
            columns.update(dict.fromkeys(record))
        return [{c: record.get(c) for c in columns} for record in records]

    def to_dataframe(self) -> Any:
        """A pandas DataFrame with one row per config (needs the ``pandas`` extra).

        Install it with ``pip install 'memento-grid[pandas]'``.

        Example::

            frame = Memento(experiment).run(matrix).to_dataframe()
            frame.groupby("model")["accuracy"].mean()

        The columns are those of :meth:`to_records`.
        """
        pd = require_pandas("ResultList.to_dataframe()")
        records = self.to_records()
        return pd.DataFrame.from_records(records, columns=list(records[0]) if records else None)


def result_record(result: Result, *, expand_inner: bool | None = None) -> dict[str, Any]:
    """One result as a flat dict (see :meth:`ResultList.to_records` for the columns).

    ``expand_inner``: spread a dict-of-scalars return value into columns (``True``), keep it
    in one ``inner`` column (``False``), or decide from this result alone (``None``).
    """
    record: dict[str, Any] = {k: plain_value(v) for k, v in result.config.asdict().items()}
    inner = result.inner
    if expand_inner is None:
        expand_inner = is_scalar_dict(inner)
    reserved = ("status", "was_cached", "runtime", "cpu_time", "peak_memory", "error", "key")
    if not expand_inner:
        record["inner"] = inner
    elif isinstance(inner, dict):
        for k, v in inner.items():
            name = str(k)
            clash = name in record or name in reserved or name.startswith("metric.")
            record[f"inner.{name}" if clash else name] = v
    error = result.error
    record["status"] = result.status
    record["was_cached"] = result.was_cached
    record["runtime"] = result.runtime.total_seconds() if result.runtime is not None else None
    record["cpu_time"] = result.cpu_time.total_seconds() if result.cpu_time is not None else None
    record["peak_memory"] = result.memory.hardware_peak if result.memory is not None else None
    record["error"] = (
        f"{getattr(error, 'exc_type', None) or type(error).__name__}: {error}"
        if error is not None
        else None
    )
    for name, table in result.metrics.items():
        record[f"metric.{name}"] = last_y(table)
    record["key"] = result.key
    return record


__all__ = [
    "Column",
    "MemoryUsage",
    "MetricTable",
    "Result",
    "ResultList",
    "last_y",
    "metric_table",
    "optional_pandas",
    "result_record",
]
