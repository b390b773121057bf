"""What the driver keeps of each experiment, and turns outcomes into: the pending record of an
experiment waiting or running, failures made from engine errors, values loaded in the driver,
and the pieces of a :class:`~memento.results.result.Result` (metric tables, times, memory)."""

from __future__ import annotations

import concurrent.futures as cf
import datetime
import json
from pathlib import Path
from typing import Any

from memento._util.text import params_json
from memento.exceptions import ExperimentError
from memento.matrix.configs import Config
from memento.results.result import MemoryUsage, MetricTable
from memento.store.values import decode
from memento.worker.errors import rebuild_error
from memento.worker.wire import Outcome


class Pending:
    """An experiment waiting to run, or running."""

    __slots__ = ("_params", "attempt", "config", "index", "key", "memory_scale")

    def __init__(self, index: int, key: str, config: Config, attempt: int = 1) -> None:
        self.index = index
        self.key = key
        self.config = config
        self.attempt = attempt
        #: How much more memory than the first request this attempt asks for (``oom``
        #: retries on engines that allocate memory per job).
        self.memory_scale = 1.0
        self._params: str | None = None

    @property
    def params(self) -> str:
        """The parameters as the store keeps them (JSON; values shown by name), made once."""
        if self._params is None:
            self._params = params_json(self.config.asdict())
        return self._params

    def again(self) -> Pending:
        """The next attempt of the same experiment."""
        retry = Pending(self.index, self.key, self.config, self.attempt + 1)
        retry._params = self._params
        retry.memory_scale = self.memory_scale
        return retry


#: Errors of an engine that mean it lost the job rather than that the job is wrong.
_LOST = (OSError, EOFError, cf.BrokenExecutor, cf.CancelledError)


def engine_error_kind(exc: BaseException) -> str:
    """The kind of a failure an engine raised instead of returning the job's outcomes: the
    error's own (:class:`~memento.exceptions.ExperimentError` subclasses: a timeout, a dead
    worker), ``infrastructure`` for a lost connection, process pool or job, else ``error``
    (the job itself could not be sent: a parameter that does not pickle, say)."""
    kind = getattr(exc, "kind", None)
    if isinstance(exc, ExperimentError) and isinstance(kind, str):
        return kind
    if isinstance(exc, _LOST):
        return "infrastructure"
    return "error"


def infrastructure_outcome(
    pending: Pending, exc: BaseException, kind: str | None = None
) -> Outcome:
    """The failed outcome of an experiment that an engine error (``exc``) stopped; ``kind``
    when the caller knows better than :func:`engine_error_kind`."""
    import traceback as tb

    text = "".join(tb.format_exception_only(type(exc), exc))
    return Outcome(
        key=pending.key,
        ok=False,
        error_type=type(exc).__qualname__,
        error_message=str(exc),
        traceback=getattr(exc, "traceback", "") or text,
        error=pickled_error(exc),
        attempt=pending.attempt,
        kind=kind or engine_error_kind(exc),
        stacks=getattr(exc, "stacks", None) or None,
    )


def loaded_outcome(pending: Pending, outcome: Outcome, path: Path | None = None) -> Outcome:
    """Load the value a worker stored (in the outcome, or in the side file ``path``); one the
    driver cannot load fails only its cell.

    Checked before storing, so that a value no later run could read is never stored as done
    (such a row would abort every re-run of the grid).
    """
    try:
        if path is not None:
            outcome.local_value = decode(outcome.value_format, path=path, info=outcome.value_info)
        else:
            outcome.local_value = decode(
                outcome.value_format, outcome.value, info=outcome.value_info
            )
    except Exception as exc:
        return infrastructure_outcome(
            pending,
            TypeError(
                f"The experiment's return value was stored in its worker but cannot be "
                f"loaded in the driver ({type(exc).__qualname__}: {exc}); return plain data, "
                f"or types from modules the driver can import too"
            ),
        )
    return outcome


def pickled_error(exc: BaseException) -> bytes | None:
    try:
        import cloudpickle

        return bytes(cloudpickle.dumps(exc))
    except Exception:
        return None


def rebuild_failure(pending: Pending, o: Outcome) -> BaseException:
    extra = {"stacks": o.stacks} if o.stacks else {}
    return rebuild_error(
        o.error,
        o.error_type or "Exception",
        o.error_message or "",
        o.traceback or "",
        config=pending.config,
        traceback=o.traceback or "",
        key=pending.key,
        attempts=pending.attempt,
        kind=o.kind or "error",
        **extra,
    )


def metric_tables(metrics: Any) -> dict[str, MetricTable]:
    if not metrics:
        return {}
    if isinstance(metrics, str):
        metrics = json.loads(metrics)
    return {name: MetricTable(points) for name, points in metrics.items()}


def as_datetime(ts: float | None) -> datetime.datetime | None:
    return datetime.datetime.fromtimestamp(ts) if ts else None


def as_timedelta(seconds: float | None) -> datetime.timedelta | None:
    return datetime.timedelta(seconds=seconds) if seconds is not None else None


def memory_usage(rss: int | None, vms: int | None) -> MemoryUsage | None:
    if rss is None and vms is None:
        return None
    return MemoryUsage(virtual_peak=vms or 0, hardware_peak=rss or 0)


__all__ = [
    "Pending",
    "as_datetime",
    "as_timedelta",
    "engine_error_kind",
    "infrastructure_outcome",
    "loaded_outcome",
    "memory_usage",
    "metric_tables",
    "pickled_error",
    "rebuild_failure",
]
