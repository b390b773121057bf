"""Checking a configuration matrix before anything runs (used by :mod:`memento.matrix.configs`).

Each error is a ``TypeError`` or ``ValueError`` that names the bad key and value, and the fix:
a misspelt top-level key gets a suggestion, a string given as a parameter's values is told to
be wrapped in a list. Pure code, no I/O.
"""

from __future__ import annotations

import difflib
import itertools
import numbers
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from memento._util.text import truncate
from memento.exceptions import UnencodableValue
from memento.keys.encoding import encode

TOP_LEVEL_KEYS = ("parameters", "settings", "exclude", "include", "id", "dependencies")
_ENDLESS = (itertools.count, itertools.cycle, itertools.repeat)


def describe(value: Any) -> str:
    return truncate(repr(value), 80)


def validate_matrix(matrix: Any) -> None:
    """Check a matrix's shape; raise ``TypeError``/``ValueError`` naming the bad key and value.

    Iterators given as parameter values are not consumed here.
    """
    if not isinstance(matrix, Mapping):
        raise TypeError(
            f"A configuration matrix must be a dict with a 'parameters' dict, "
            f"got {type(matrix).__name__}: {describe(matrix)}"
        )
    check_top_level_keys(matrix)
    if "parameters" not in matrix:
        hint = [k for k in matrix if close_to(k, ("parameters",), cutoff=0.6)]
        raise ValueError(
            "The matrix has no 'parameters' key: give it a dict of name -> values"
            + (f" (is {hint[0]!r} meant to be 'parameters'?)" if hint else "")
        )
    parameters = matrix["parameters"]
    if not isinstance(parameters, Mapping):
        raise TypeError(
            f"matrix['parameters'] must be a dict of name -> list of values, "
            f"got {type(parameters).__name__}: {describe(parameters)}"
        )
    if "settings" in parameters:
        raise ValueError(
            "'settings' is a reserved parameter name (config.settings holds the matrix's "
            "settings); rename the parameter"
        )
    for name, values in parameters.items():
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"Parameter name {name!r} must be a non-empty string (a Python identifier "
                "can be read as config.<name>; any other name with getattr or asdict())"
            )
        check_values(name, values)
    settings = matrix.get("settings", {})
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise TypeError(
            f"matrix['settings'] must be a dict, got {type(settings).__name__}: "
            f"{describe(settings)}"
        )
    for field in ("exclude", "include"):
        entries = matrix.get(field, [])
        if entries is None:
            continue
        if not isinstance(entries, (list, tuple)):
            raise TypeError(
                f"matrix[{field!r}] must be a list of dicts, got {type(entries).__name__}: "
                f"{describe(entries)}"
            )
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise TypeError(
                    f"Each entry of matrix[{field!r}] must be a dict of parameter -> value, "
                    f"got {type(entry).__name__}: {describe(entry)}"
                )
            if field == "include" and not entry:
                raise ValueError("matrix['include'] has an empty entry: give it parameters")
            if field == "include" and "settings" in entry:
                raise ValueError("'settings' is a reserved parameter name in matrix['include']")


def close_to(key: Any, known: Sequence[str], cutoff: float = 0.8) -> str | None:
    """The known key that ``key`` looks like a misspelling of, if any."""
    if not isinstance(key, str):
        return None
    normal = key.strip().lower().replace("-", "_")
    if normal in known:
        return normal
    found = difflib.get_close_matches(normal, known, n=1, cutoff=cutoff)
    return found[0] if found else None


def check_top_level_keys(matrix: Mapping[Any, Any]) -> None:
    for key in matrix:
        if key in TOP_LEVEL_KEYS:
            continue
        guess = close_to(key, TOP_LEVEL_KEYS)
        if guess is not None:
            raise ValueError(
                f"Unknown matrix key {key!r} (with value {describe(matrix[key])}): did you "
                f"mean {guess!r}? Keys other than {', '.join(map(repr, TOP_LEVEL_KEYS))} are "
                "kept as the grid's metadata, but this one looks like a misspelling."
            )


def check_values(name: str, values: Any) -> None:
    """A parameter's values must be a finite iterable, not a string or a mapping."""
    got = f"got {type(values).__name__}: {describe(values)}"
    if isinstance(values, (str, bytes, bytearray)):
        raise TypeError(
            f"Parameter {name!r} must be a list (or another iterable) of values, {got}; "
            f"a string is one value, so wrap it in a list: [{describe(values)}]"
        )
    if isinstance(values, Mapping):
        raise TypeError(
            f"Parameter {name!r} must be a list (or another iterable) of values, {got}; to "
            "use the mapping as one value wrap it in a list, for its keys pass list(d.keys())"
        )
    try:
        iter(values)
    except TypeError:
        raise TypeError(
            f"Parameter {name!r} must be a list (or another iterable) of values, {got} "
            "(wrap a single value in a list: [value])"
        ) from None
    if isinstance(values, _ENDLESS) and operator.length_hint(values, -1) < 0:
        raise TypeError(f"Parameter {name!r} is an endless iterator ({got}); give a list")


def parameter_values(name: str, values: Any) -> list[Any]:
    """The values as a list, a set's in a deterministic order."""
    if not isinstance(values, (set, frozenset)):
        return list(values)
    items = list(values)
    for kind in (str, bytes):
        if all(isinstance(v, kind) for v in items):
            return sorted(items)
    if all(isinstance(v, numbers.Real) and v == v for v in items):  # no nan: a total order
        return sorted(items)
    try:
        return sorted(items, key=encode)
    except UnencodableValue:
        raise TypeError(
            f"Parameter {name!r} is a set of values that have no deterministic order "
            f"({describe(values)}); give them as a list"
        ) from None


def is_numpy_array(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"


__all__ = [
    "TOP_LEVEL_KEYS",
    "describe",
    "is_numpy_array",
    "parameter_values",
    "validate_matrix",
]
