"""Checking a configuration matrix before anything runs (used by :mod:`memento.matrix.configs`).

Each error is a ``TypeError`` or ``ValueError`` that names the bad key and value, and the fix:
a misspelt top-level key gets a suggestion, a string given as a parameter's values is told to
be wrapped in a list, ``samples: 0`` is told an int >= 1 is expected. Pure code, no I/O.
"""

from __future__ import annotations

import itertools
import numbers
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from memento._util.text import truncate
from memento.exceptions import UnencodableValue
from memento.keys.encoding import encode
from memento.matrix.sampling import METHODS, Distribution

TOP_LEVEL_KEYS = (
    "parameters",
    "settings",
    "exclude",
    "include",
    "id",
    "dependencies",
    "sample",
    "samples",
    "seed",
    "method",
    "repeats",
)
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
    check_sampling(matrix, parameters)


def check_sampling(matrix: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
    """Check ``sample``, ``samples``, ``seed``, ``method`` and ``repeats``."""
    sample = matrix.get("sample")
    if sample is None:
        for key in ("samples", "method"):
            if key in matrix:
                raise ValueError(
                    f"matrix[{key!r}] is given without matrix['sample']: add 'sample', a dict "
                    "of name -> distribution, e.g. {'lr': loguniform(1e-4, 1e-1)}"
                )
    else:
        _check_sample(sample, parameters, "repeats" in matrix)
        if "samples" not in matrix:
            raise ValueError(
                "matrix['sample'] needs matrix['samples']: the number of points to draw (an "
                "int >= 1)"
            )
        count(matrix, "samples")
    if matrix.get("seed") is not None:
        seed = matrix["seed"]
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(
                f"matrix['seed'] must be an int (the points it draws), got "
                f"{type(seed).__name__}: {describe(seed)}"
            )
    method = matrix.get("method", "random")
    if method not in METHODS:
        raise ValueError(f"matrix['method'] must be 'random' or 'sobol', got {describe(method)}")
    if "repeats" in matrix:
        count(matrix, "repeats")
        if "repeat" in parameters:
            raise ValueError(
                "The matrix has a parameter 'repeat' and matrix['repeats'], which adds a "
                "parameter 'repeat' too: drop one of them"
            )


def _check_sample(sample: Any, parameters: Mapping[str, Any], repeats: bool) -> None:
    if not isinstance(sample, Mapping):
        hint = " (the number of points goes in 'samples')" if isinstance(sample, int) else ""
        raise TypeError(
            f"matrix['sample'] must be a dict of name -> distribution, e.g. "
            f"{{'lr': loguniform(1e-4, 1e-1)}}, got {type(sample).__name__}: "
            f"{describe(sample)}{hint}"
        )
    if not sample:
        raise ValueError(
            "matrix['sample'] is empty: give it name -> distribution, e.g. "
            "{'lr': loguniform(1e-4, 1e-1)}, or drop it with 'samples'"
        )
    for name, dist in sample.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"Sampled parameter name {name!r} must be a non-empty string")
        if name == "settings":
            raise ValueError(
                "'settings' is a reserved parameter name (config.settings holds the matrix's "
                "settings); rename the sampled parameter"
            )
        if name in parameters:
            raise ValueError(
                f"{name!r} is both in matrix['parameters'] and in matrix['sample']: a "
                "parameter is either listed or sampled, drop one of them"
            )
        if name == "repeat" and repeats:
            raise ValueError(
                "matrix['sample'] has 'repeat' and matrix['repeats'] adds a parameter "
                "'repeat' too: rename the sampled parameter"
            )
        if not isinstance(dist, Distribution):
            raise TypeError(
                f"matrix['sample'][{name!r}] must be a distribution (memento's loguniform, "
                f"uniform, randint or choice), got {type(dist).__name__}: {describe(dist)}; "
                "for a list of values to try them all, put it in matrix['parameters']"
            )


def count(matrix: Mapping[str, Any], key: str) -> int:
    """``matrix[key]`` as an int >= 1, or a ``TypeError``/``ValueError`` naming the key."""
    value = matrix[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"matrix[{key!r}] must be an int >= 1, got {type(value).__name__}: {describe(value)}"
        )
    if value < 1:
        raise ValueError(f"matrix[{key!r}] must be an int >= 1, got {value!r}")
    return int(value)


def close_to(key: Any, known: Sequence[str], cutoff: float = 0.8) -> str | None:
    """The known key that ``key`` looks like a misspelling of, if any."""
    if not isinstance(key, str):
        return None
    normal = key.strip().lower().replace("-", "_")
    if normal in known:
        return normal
    import difflib  # on first use: only a mistyped name needs it

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
    "count",
    "describe",
    "is_numpy_array",
    "parameter_values",
    "validate_matrix",
]
