"""The one node-to-driver envelope of the cluster engines (Slurm, Dask, Ray).

On the node, :func:`seal` runs the job and wraps what happened as plain data:
``("ok", outcomes, "")``, or ``("error", exception, traceback)`` when something outside the
experiments broke (the experiment's function cannot be loaded there, say). An experiment's own
failure is never an envelope error: it is a failed :class:`~memento.worker.wire.Outcome`.
In the driver, :func:`unseal` returns the outcomes or raises the error, in one way for every
engine. The envelope is a plain tuple, so a result written by an earlier memento (a Slurm job
collected by a later driver) still opens.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from memento.exceptions import ExperimentError

#: ``(tag, value, traceback)``: ``("ok", outcomes, "")`` or ``("error", exception, text)``.
Envelope = tuple[str, Any, str]


def seal(fn: Callable[..., Any], *args: Any) -> Envelope:
    """On a node: ``fn(*args)`` as an envelope; never raises an ``Exception``."""
    try:
        return ("ok", fn(*args), "")
    except Exception as exc:
        return ("error", exc, traceback.format_exc())


def unseal(envelope: Envelope, where: str, note: Callable[[], str] | None = None) -> Any:
    """In the driver: the envelope's value, or raise its error.

    ``where`` names the engine's job in the message ("Slurm job 12_3", "The Dask task");
    ``note()`` is added to the traceback (where the job's own logs are, read only for an
    error). Memento's own verdicts
    (an :class:`~memento.exceptions.ExperimentError` such as a timeout or a dead worker inside
    the node) and errors sent without a traceback pass unchanged.
    """
    tag, value, trace = envelope
    if tag == "ok":
        return value
    if isinstance(value, ExperimentError) or not trace:
        raise value
    raise ExperimentError(
        f"{where} failed: {type(value).__name__}: {value}",
        exc_type=type(value).__name__,
        traceback=trace + (note() if note is not None else ""),
    )
