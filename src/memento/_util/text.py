"""Readable text for config values: classes and functions by name, never memory addresses."""

from __future__ import annotations

import functools
import json
import re
import types
from collections.abc import Mapping
from typing import Any, Literal

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MAX = 60


def display_value(value: Any, _seen: frozenset[int] = frozenset()) -> str:
    """A short, readable rendering of a config value.

    Classes and functions appear by name (``SVC``, ``train``), partials as
    ``partial(f, 1)``, modules and numpy ufuncs by name (``json``, ``log``), numpy arrays by
    dtype and shape, a list inside itself as ``[...]``, other objects by their repr when it
    carries no memory address, else by their class name.
    """
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
        return value.__qualname__
    if isinstance(value, types.ModuleType):
        return value.__name__
    if type(value).__name__ == "ufunc" and type(value).__module__ == "numpy":
        return str(value.__name__)
    if isinstance(value, types.MethodType):
        return f"{display_value(value.__self__)}.{value.__func__.__name__}"
    if isinstance(value, functools.partial):
        args = [display_value(value.func), *(display_value(a) for a in value.args)]
        args += [f"{k}={display_value(v)}" for k, v in value.keywords.items()]
        return f"partial({', '.join(args)})"
    if isinstance(value, (str, int, float, bool, type(None), complex, bytes)):
        text = repr(value)
        return truncate(text, _MAX)
    if type(value).__module__ == "numpy" and hasattr(value, "shape") and value.shape != ():
        return f"array({value.dtype}, shape={value.shape})"
    if isinstance(value, (list, tuple)) and len(value) <= 8:
        if id(value) in _seen:  # a reference cycle
            return "[...]" if isinstance(value, list) else "(...)"
        seen = _seen | {id(value)}
        inner = ", ".join(display_value(v, seen) for v in value)
        return (
            f"[{inner}]"
            if isinstance(value, list)
            else f"({inner}{',' if len(value) == 1 else ''})"
        )
    try:
        text = repr(value)
    except Exception:
        text = ""
    if not text or _ADDRESS.search(text) or text.startswith("<"):
        return type(value).__qualname__
    text = " ".join(text.split())
    return truncate(text, _MAX)


DurationStyle = Literal["clock", "words", "timer", "message"]


def format_seconds(seconds: float | None, *, style: DurationStyle = "clock") -> str:
    """A duration as text: the one formatter of durations.

    ``clock`` (tables): ``12.3 ms``, ``4.56 s``, then ``1:02:03``; ``words`` (the
    report): ``12.3 ms``, ``4.56 s``, then ``2m 03s`` / ``1h 02m``; ``timer`` (the live
    display, whole seconds): ``0:07``, ``2:05``, ``1:02:05``; ``message`` (notifications):
    ``3.00s``, then from 10 s on ``0:05:07``. ``None`` is ``""``.
    """
    if seconds is None:
        return ""
    if style == "message" and seconds < 10:
        return f"{seconds:.2f}s"
    if style in ("clock", "words") and seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if style in ("clock", "words") and seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(int(max(0.0, seconds) + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    if style == "words":
        return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"
    if style == "timer" and not hours:
        return f"{minutes}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}"


def truncate(text: str, width: int, *, marker: str = "...") -> str:
    """``text`` when it fits in ``width`` characters, else cut to ``width`` ending in ``marker``."""
    if len(text) <= width:
        return text
    return text[: max(0, width - len(marker))] + marker


def tail(text: str, lines: int, *, chars: int | None = None, marker: str = "") -> str:
    """The last ``lines`` lines of ``text``, at most their last ``chars`` characters.

    When lines were dropped and ``marker`` is given, it comes first on a line of its own
    (``...`` above the innermost frames of a traceback).
    """
    kept = text.splitlines()
    shown = "\n".join(kept[-lines:])
    if chars is not None:
        shown = shown[-chars:]
    return f"{marker}\n{shown}" if marker and len(kept) > lines else shown


def format_bytes(n: int | None) -> str:
    """``512 B``, ``27.9 MB``, ``1.2 TB``."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


#: Types stored as they are in JSON (``params``) and tables; anything else is shown by name.
JSON_SCALARS = (str, int, float, bool, type(None))


def is_scalar(value: Any) -> bool:
    """A JSON scalar or a numpy scalar: what a table cell holds as it is."""
    return isinstance(value, JSON_SCALARS) or (
        type(value).__module__ == "numpy" and getattr(value, "shape", None) == ()
    )


def is_scalar_dict(value: Any) -> bool:
    """A non-empty dict whose values are all scalars (spread into columns in tables)."""
    return isinstance(value, dict) and bool(value) and all(map(is_scalar, value.values()))


def plain_value(value: Any) -> Any:
    """``value`` itself when JSON can hold it, else its :func:`display_value`."""
    return value if isinstance(value, JSON_SCALARS) else display_value(value)


def params_json(parameters: Mapping[str, Any]) -> str:
    """A config's parameters as the JSON text stored beside its result (``results.params``)."""
    return json.dumps({k: plain_value(v) for k, v in parameters.items()})
