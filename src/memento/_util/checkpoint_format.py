"""What a checkpoint holds, as every checkpoint provider stores it (files in a store's side
directory, rows of a server store, memento-ml 1.2's providers): the experiment's state with
the metrics and progress recorded so far."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

# What Context.checkpoint saves: {CHECKPOINT_MARK: version, "state": ..., "metrics": ...,
# "progress": ...}. A plain dict, not a class of ours, so that loading a checkpoint never
# depends on where memento's classes live. Anything else is a checkpoint written before the
# metrics were saved with it (memento up to now, memento-ml 1.2's state): the state alone.
CHECKPOINT_MARK = "memento.checkpoint"
CHECKPOINT_VERSION = 1


class SavedCheckpoint(NamedTuple):
    """A checkpoint unpacked: the state, and the metric rows and progress ``(done, total)``
    at the time it was written (``None`` when the checkpoint does not carry them)."""

    state: Any
    metrics: dict[str, list[tuple[Any, Any]]] | None
    progress: tuple[float, float | None] | None


def pack_checkpoint(
    state: Any,
    metrics: Mapping[str, list[tuple[Any, Any]]],
    progress: tuple[float, float | None],
) -> dict[str, Any]:
    """The object :meth:`Context.checkpoint` gives its provider's ``set``."""
    return {
        CHECKPOINT_MARK: CHECKPOINT_VERSION,
        "state": state,
        "metrics": {name: list(points) for name, points in metrics.items()},
        "progress": progress,
    }


def unpack_checkpoint(item: Any) -> SavedCheckpoint:
    """``item`` as :func:`pack_checkpoint` made it, or, from an earlier version, a bare state.

    A later version may add fields; the state stays under ``"state"``.
    """
    if not (isinstance(item, dict) and isinstance(item.get(CHECKPOINT_MARK), int)):
        return SavedCheckpoint(item, None, None)
    metrics = item.get("metrics")
    rows = None
    if isinstance(metrics, dict):
        rows = {str(name): [(x, y) for x, y in points] for name, points in metrics.items()}
    progress = item.get("progress")
    done_total = None
    if isinstance(progress, (tuple, list)) and len(progress) == 2:
        done, total = progress
        done_total = (float(done), None if total is None else float(total))
    return SavedCheckpoint(item.get("state"), rows, done_total)


__all__ = [
    "CHECKPOINT_MARK",
    "CHECKPOINT_VERSION",
    "SavedCheckpoint",
    "pack_checkpoint",
    "unpack_checkpoint",
]
