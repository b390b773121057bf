"""Argument checks shared by the public constructors: one wording for one mistake."""

from __future__ import annotations

from typing import Any


def positive_int_or_none(name: str, value: Any) -> int | None:
    """``value`` if it is ``None`` or an int >= 1; else a ``ValueError`` naming ``name``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return value


def timeout_or_none(value: Any, name: str = "timeout") -> float | None:
    """``value`` as seconds if it is ``None`` or a number > 0; else a ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
    return float(value)
