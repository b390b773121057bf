"""The one way to import an optional dependency: a missing one names the extra to install."""

from __future__ import annotations

import importlib
import types

from memento.exceptions import MissingExtra


def optional_import(module: str, extra: str, purpose: str) -> types.ModuleType:
    """``module``, imported; :class:`MissingExtra` if it cannot be, naming the extra to install.

    ``purpose`` says what needs it, for the message:
    ``optional_import("ray", "ray", "RayExecutor")`` raises "RayExecutor needs the 'ray'
    package, which is not installed. Install it with: pip install 'memento-grid[ray]'". When
    the package is there but one of its own imports fails, that ``ImportError`` is kept as the
    cause, so the traceback shows what is broken.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        absent = exc.name is not None and (module + ".").startswith(exc.name + ".")
        raise MissingExtra(module, extra, purpose) from (None if absent else exc)


__all__ = ["optional_import"]
