"""Which third-party modules a worker has imported, so that the driver can record their
distributions in the run's provenance: an experiment may import ``torch`` only inside the
worker, where the driver never sees it.

A worker calls :func:`new_top_level_modules` after each experiment and sends what it returns
(usually ``None``) back with the outcome; the check is one ``len`` when nothing changed.
"""

from __future__ import annotations

import sys
import threading

from memento._util.distributions import top_level_names

_lock = threading.Lock()
#: Top-level names already reported by this process.
_reported: set[str] = set()
#: ``len(sys.modules)`` at the last look; -1 before the first.
_last_length = -1


def new_top_level_modules() -> list[str] | None:
    """Top-level names of modules imported in this process since the last call (first call: all
    of them), ``None`` when nothing new.

    Cheap when nothing changed: the length of ``sys.modules`` is compared to the last one
    first (a module removed and another added in between goes unseen until the next change).
    Private names (leading underscore, which also drops ``__main__``) and the standard library
    are skipped: they have no distribution to record.
    """
    global _last_length
    if len(sys.modules) == _last_length:
        return None
    with _lock:
        _last_length = len(sys.modules)
        fresh = top_level_names(list(sys.modules)) - _reported
        _reported.update(fresh)
    return sorted(fresh) or None


__all__ = ["new_top_level_modules"]
