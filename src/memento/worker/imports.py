"""Which third-party modules a worker has imported, so that the driver can record their
distributions in the run's provenance: an experiment may import ``torch`` only inside the
worker, where the driver never sees it.

A worker calls :func:`new_top_level_modules` after each experiment and sends what it returns
(usually ``None``) back with the outcome; the check is one ``len`` when nothing changed.
"""

from __future__ import annotations

import sys
import threading

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
        fresh = _top_level_names(list(sys.modules)) - _reported
        _reported.update(fresh)
    return sorted(fresh) or None


def _top_level_names(module_names: list[str]) -> set[str]:
    """The top-level package names of ``module_names``, without private and standard library
    ones."""
    tops = {name.partition(".")[0] for name in module_names}
    return {name for name in tops if name and not name.startswith("_") and not _is_stdlib(name)}


def _is_stdlib(name: str) -> bool:
    """Whether ``name`` is a standard library module (``sys.stdlib_module_names``, Python 3.10+)."""
    return name in sys.stdlib_module_names
