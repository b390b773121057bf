"""Results of a run: :class:`Result` objects, their metrics tables, and the list ``run`` returns."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, SupportsIndex, overload

from memento._util.tables import (
    Column,
    MetricTable,
    as_table,
    last_y,
    metric_table,
    optional_pandas,
    require_pandas,
)
from memento._util.text import display_value, is_scalar_dict, plain_value
from memento.exceptions import FAILURE_KINDS, kind_of_stored
from memento.matrix.configs import Config
from memento.results.aggregate import aggregate
from memento.results.export import with_provenance, write_parquet
from memento.results.figures import result_records
from memento.results.plotting import plot_records


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


class Result:
    """The outcome of one experiment.

    ``inner`` is what the experiment returned; ``metrics`` maps each recorded metric's name to
    its table, columns ``x`` and ``y`` (see :attr:`metrics`); ``runtime`` and ``cpu_time`` are
    timedeltas; ``memory`` a :class:`MemoryUsage`; ``was_cached`` is true exactly when this call
    read it from the store. A failed experiment's result has ``ok == False``, ``inner is None``,
    ``error`` set and ``kind`` saying what kind of failure it was (see :attr:`kind`).

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
        run_id: str = "",
        output_dir: str | os.PathLike[str] | None = None,
        kind: str | None = None,
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
        #: The run that computed it (its provenance: :attr:`provenance`).
        self.run_id = run_id
        #: The experiment's own folder (``context.output_dir``), when it wrote one.
        self.output_dir = Path(output_dir) if output_dir else None
        #: What produced it (git commit, dirty tree, Python, platform, host, command line,
        #: package versions: :mod:`memento.run.provenance`), when its run recorded it.
        self.provenance: dict[str, Any] | None = None
        self._kind: str | None = None
        self.kind = kind

    @property
    def kind(self) -> str | None:
        """The failure's kind, one of :data:`memento.exceptions.FAILURE_KINDS` (``"error"``,
        ``"timeout"``, ``"crash"``, ``"oom"``, ``"interrupted"``, ``"infrastructure"``);
        ``None`` for a success.

        Example::

            timeouts = [r.config for r in results.failures if r.kind == "timeout"]

        It is the kind given to the constructor (or set), else the ``kind`` the driver
        attached to :attr:`error`, else the one the error's type implies
        (:func:`memento.exceptions.kind_of_stored`: a result built by hand, or pickled
        before kinds existed).
        """
        error = self.error
        if error is None:
            return None
        if self._kind is not None:
            return self._kind
        attached = getattr(error, "kind", None)
        if isinstance(attached, str) and attached:
            return attached
        return kind_of_stored(None, getattr(error, "exc_type", None) or type(error).__name__)

    @kind.setter
    def kind(self, value: str | None) -> None:
        if value is not None and value not in FAILURE_KINDS:
            raise ValueError(
                f"Result kind must be None or one of {', '.join(FAILURE_KINDS)}; got {value!r}"
            )
        self._kind = value

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
                tables[name] = as_table(table)
            self._metrics_ready = True
        return self._metrics

    @metrics.setter
    def metrics(self, value: Mapping[str, Any] | None) -> None:
        self._metrics = value if isinstance(value, dict) else dict(value or {})
        self._metrics_ready = False

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Our own pickles and memento-ml 1.2's (which had ``metrics`` as a plain attribute and
        # none of key, error, attempts, host); ours from before kinds have no ``_kind``.
        state = dict(state)
        metrics = state.pop("metrics", None)
        if metrics is None:
            metrics = state.pop("_metrics", None)
        state.pop("_metrics_ready", None)
        defaults = {"key": "", "error": None, "attempts": 1, "host": "", "run_id": ""}
        defaults.update(output_dir=None, provenance=None, _kind=None)
        self.__dict__.update(defaults, **state)
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

    ``successes`` and ``failures`` split it; ``to_dataframe()`` gives one row per config;
    ``not_run`` lists the configs the run did not run because ``max_failures`` stopped it.
    """

    def __init__(self, results: Iterable[Result] = (), *, not_run: Iterable[Config] = ()) -> None:
        super().__init__(results)
        self.not_run = list(not_run)

    @property
    def not_run(self) -> list[Config]:
        """The configs this run did not run: ``max_failures`` failures were reached, so the
        rest were left for the next ``run()`` (which runs them). Empty otherwise.

        Example::

            results = Memento(train, max_failures=3).run(matrix, raise_on_failure=False)
            if results.not_run:
                print(len(results.not_run), "left for the next run")

        A copy (``copy()``, ``copy.copy``, a slice) and a pickle keep it.
        """
        # In __dict__ (not a class default), so that pickles of lists made before it
        # existed load with an empty one.
        found: list[Config] = self.__dict__.setdefault("_not_run", [])
        return found

    @not_run.setter
    def not_run(self, configs: Iterable[Config]) -> None:
        self.__dict__["_not_run"] = list(configs)

    def copy(self) -> ResultList:
        """A shallow copy, ``not_run`` included."""
        return ResultList(self, not_run=self.not_run)

    def __copy__(self) -> ResultList:
        return self.copy()

    @overload
    def __getitem__(self, index: SupportsIndex) -> Result: ...

    @overload
    def __getitem__(self, index: slice) -> ResultList: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Result | ResultList:
        # A slice stays a ResultList (to_dataframe() and the rest), of the same run.
        if isinstance(index, slice):
            return ResultList(super().__getitem__(index), not_run=self.not_run)
        return super().__getitem__(index)

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
        (``"Type: message"`` or ``None``), ``kind`` (the failure's kind, ``None`` for a
        success: :attr:`Result.kind`), ``metric.<name>`` (the last recorded y of each
        metric) and ``key``; then, when results carry their run's provenance, ``git_commit``,
        ``dirty``, ``python``, ``platform`` and ``command``.
        """
        successes = [r.inner for r in self if r.ok]
        expand = bool(successes) and all(is_scalar_dict(v) for v in successes)
        records = [result_record(r, expand_inner=expand) for r in self]
        columns: dict[str, None] = {}
        for record in records:
            columns.update(dict.fromkeys(record))
        rows = [{c: record.get(c) for c in columns} for record in records]
        return with_provenance(rows, (r.provenance for r in self))

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the results to ``path`` as a Parquet file (needs the ``parquet`` extra);
        return the path.

        Install it with ``pip install 'memento-grid[parquet]'``. No pandas needed.

        Example::

            Memento(experiment).run(matrix).to_parquet("results.parquet")
            pyarrow.parquet.read_table("results.parquet").to_pandas()

        The columns are those of :meth:`to_records`, then, when results carry provenance,
        ``git_commit``, ``dirty``, ``python``, ``platform`` and ``command``; each column has
        one type (see :mod:`memento.results.export`). The file is replaced atomically.
        """
        write_parquet(self.to_records(), path, purpose="ResultList.to_parquet()")
        return Path(path)

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

    def aggregate(self, by: Sequence[str] | str, *, columns: Sequence[str] | None = None) -> Any:
        """Mean, std and count of the return value's columns and of each metric's last value,
        one row per combination of the ``by`` parameters (needs the ``pandas`` extra).

        Example, over a grid of ``model``, ``lr`` and ``repeat``::

            frame = results.aggregate(by=["model", "lr"])    # averaged over repeat
            frame["accuracy", "mean"], frame["accuracy", "std"]

        Columns are ``(column, "mean" | "std" | "count")`` plus ``("failed", "count")``;
        failed results are left out of the means. See :func:`memento.results.aggregate.aggregate`.
        """
        names = {name: None for r in self for name in r.config.asdict()}
        return aggregate(self.to_records(), by, parameters=list(names), columns=columns)

    def plot(self, by: str | None = None, metric: str | Sequence[str] | None = None) -> list[Any]:
        """matplotlib Figures of the metric curves (mean and std band per group of ``by``) and
        of the final values against each numeric parameter (needs the ``plot`` extra).

        Example::

            figures = results.plot(by="model", metric="loss")

        The figures of ``memento report`` (see :mod:`memento.results.figures`).
        """
        return plot_records(result_records(self), by=by, metric=metric, purpose="ResultList.plot()")


def result_record(result: Result, *, expand_inner: bool | None = None) -> dict[str, Any]:
    """One result as a flat dict (see :meth:`ResultList.to_records` for the columns).

    ``expand_inner``: spread a dict-of-scalars return value into columns (``True``), keep it
    in one ``inner`` column (``False``), or decide from this result alone (``None``).
    """
    record: dict[str, Any] = {k: plain_value(v) for k, v in result.config.asdict().items()}
    inner = result.inner
    if expand_inner is None:
        expand_inner = is_scalar_dict(inner)
    reserved = (
        "status",
        "was_cached",
        "runtime",
        "cpu_time",
        "peak_memory",
        "error",
        "kind",
        "key",
    )
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
    record["kind"] = result.kind
    for name, table in result.metrics.items():
        record[f"metric.{name}"] = last_y(table)
    record["key"] = result.key
    return record


# Pickles, keys and reprs name these classes by the public module they have always lived in,
# whatever file inside it defines them: a value stored today loads after the files move again.
for _cls in (MemoryUsage, MetricTable, Result, ResultList):
    _cls.__module__ = "memento.results"

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
