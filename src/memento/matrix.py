"""Configuration matrices: validation and lazy expansion into :class:`Config` objects.

Pure code, no I/O. A matrix is a dict::

    {
        "parameters": {"model": [SVC, Perceptron], "dataset": ["mnist", "cifar10"]},
        "settings": {"regularization": 0.1},           # optional, shared by every config
        "exclude": [{"model": SVC, "dataset": "cifar10"}],  # optional
        "include": [{"model": SVC, "dataset": "svhn"}],     # optional, GitHub Actions style
    }

The cartesian product comes in memento-ml's order (the first parameter varies slowest).
Expansion is lazy: :class:`Configurations` decodes an index into a config on demand, so a
matrix of a million configs is never held as a million objects.
"""

from __future__ import annotations

import itertools
import math
import operator
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, overload

from memento.display import display_value

_TOP_LEVEL_KEYS = ("parameters", "settings", "exclude", "include", "id", "dependencies")
_VALUE_SEQUENCES = (list, tuple, range)


class Config:
    """One experiment configuration: parameters as attributes, shared settings in ``settings``.

    Example::

        config = Config(model="svm", C=1.0)
        config.model          # "svm"
        config.asdict()       # {"model": "svm", "C": 1.0}
        config.settings       # the matrix's settings dict ({} when there are none)

    ``==`` compares parameters and settings by value *and type*, so ``1``, ``1.0`` and ``True``
    differ, and numpy arrays compare by dtype, shape and contents.
    """

    __slots__ = ("_params", "settings")

    _params: dict[str, Any]
    settings: dict[str, Any]

    def __init__(self, settings: Mapping[str, Any] | None = None, /, **parameters: Any) -> None:
        object.__setattr__(self, "_params", parameters)
        object.__setattr__(self, "settings", dict(settings) if settings is not None else {})

    @classmethod
    def _make(cls, parameters: dict[str, Any], settings: dict[str, Any]) -> Config:
        self = cls.__new__(cls)
        object.__setattr__(self, "_params", parameters)
        object.__setattr__(self, "settings", settings)
        return self

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; guard against recursion before __init__ ran.
        if name.startswith("__") or name == "_params":
            raise AttributeError(name)
        try:
            return object.__getattribute__(self, "_params")[name]
        except KeyError:
            raise AttributeError(
                f"Config has no parameter {name!r}; its parameters are "
                f"{sorted(object.__getattribute__(self, '_params'))}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "settings":
            object.__setattr__(self, name, value)
        else:
            raise AttributeError("Config parameters are read-only")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Config._make, (self._params, self.settings))

    def asdict(self) -> dict[str, Any]:
        """Return the parameters as a new dict (settings are not included)."""
        return dict(self._params)

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return values_equal(self._params, other._params) and values_equal(
            self.settings, other.settings
        )

    def __hash__(self) -> int:
        from memento.keys import encode

        return hash(encode(self._params))

    def __str__(self) -> str:
        return ", ".join(f"{k}={display_value(v)}" for k, v in self._params.items())

    def __repr__(self) -> str:
        return f"Config({self})"


def values_equal(a: Any, b: Any) -> bool:
    """Type-aware equality: equal canonical encodings (falls back to ``==``)."""
    if a is b:
        return True
    from memento.exceptions import UnencodableValue
    from memento.keys import encode

    try:
        return encode(a) == encode(b)
    except UnencodableValue:
        try:
            return bool(a == b)
        except Exception:
            return False


def _matches(value: Any, wanted: Any) -> bool:
    return values_equal(value, wanted)


class Configurations(Sequence[Config]):
    """The lazy, ordered sequence of configs a matrix expands to.

    Supports ``len``, iteration, indexing (negative indices and slices too) and ``.settings``.
    """

    def __init__(
        self,
        names: Sequence[str],
        values: Sequence[Sequence[Any]],
        settings: dict[str, Any],
        excluded: Callable[[tuple[int, ...]], bool] | None = None,
        extras: Sequence[tuple[tuple[int, ...] | None, dict[str, Any]]] = (),
        merges: Sequence[tuple[dict[int, int], dict[str, Any]]] = (),
    ) -> None:
        self._names = tuple(names)
        self._values = tuple(tuple(v) for v in values)
        self.settings = settings
        self._excluded = excluded
        self._merges = tuple(merges)
        # Entries appended after the product: (indices, overrides) from `include`.
        self._extras = tuple(extras)
        self._sizes = tuple(len(v) for v in self._values)
        self._product_size = math.prod(self._sizes) if self._names else 0
        self._kept: array[int] | None = None  # flat indices surviving `exclude`, built once

    def _kept_indices(self) -> array[int] | None:
        if self._excluded is None:
            return None
        if self._kept is None:
            excluded = self._excluded
            kept = array("q")
            append = kept.append
            for flat, idx in enumerate(itertools.product(*map(range, self._sizes))):
                if not excluded(idx):
                    append(flat)
            self._kept = kept
        return self._kept

    def _product_len(self) -> int:
        kept = self._kept_indices()
        return self._product_size if kept is None else len(kept)

    def __len__(self) -> int:
        return self._product_len() + len(self._extras)

    def _decode(self, flat: int) -> tuple[int, ...]:
        idx = []
        for size in reversed(self._sizes):
            flat, i = divmod(flat, size)
            idx.append(i)
        return tuple(reversed(idx))

    def _build(self, idx: tuple[int, ...]) -> Config:
        params = {name: vals[i] for name, vals, i in zip(self._names, self._values, idx)}
        for where, extra in self._merges:
            if all(idx[p] == v for p, v in where.items()):
                params.update(extra)
        return Config._make(params, self.settings)

    def _extra(self, i: int) -> Config:
        _, params = self._extras[i]
        return Config._make(dict(params), self.settings)

    @overload
    def __getitem__(self, index: int) -> Config: ...

    @overload
    def __getitem__(self, index: slice) -> list[Config]: ...

    def __getitem__(self, index: int | slice) -> Config | list[Config]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"config index {index} out of range for {n} configs")
        product_len = self._product_len()
        if index >= product_len:
            return self._extra(index - product_len)
        kept = self._kept_indices()
        flat = index if kept is None else kept[index]
        return self._build(self._decode(flat))

    def __iter__(self) -> Iterator[Config]:
        excluded = self._excluded
        if self._kept is not None or excluded is None:
            kept = self._kept
            if kept is None:
                for idx in itertools.product(*map(range, self._sizes)):
                    yield self._build(idx)
            else:
                for flat in kept:
                    yield self._build(self._decode(flat))
        else:
            for idx in itertools.product(*map(range, self._sizes)):
                if not excluded(idx):
                    yield self._build(idx)
        for i in range(len(self._extras)):
            yield self._extra(i)

    @property
    def configurations(self) -> list[Config]:
        """Every config as a list (memento-ml 1.2's attribute; materialises the matrix)."""
        return list(self)

    def __repr__(self) -> str:
        return f"<Configurations: {len(self)} configs of {list(self._names)}>"


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_matrix(matrix: Any) -> None:
    """Check a matrix's shape; raise ``TypeError``/``ValueError`` naming the bad key and value."""
    if not isinstance(matrix, Mapping):
        raise TypeError(
            f"A configuration matrix must be a dict with a 'parameters' dict, "
            f"got {type(matrix).__name__}: {_describe(matrix)}"
        )
    unknown = [k for k in matrix if k not in _TOP_LEVEL_KEYS]
    if unknown:
        raise ValueError(
            f"Unknown matrix key {unknown[0]!r} (with value {_describe(matrix[unknown[0]])}); "
            f"a matrix may only have the keys {', '.join(repr(k) for k in _TOP_LEVEL_KEYS)}"
        )
    if "parameters" not in matrix:
        raise ValueError("The matrix has no 'parameters' key: give it a dict of name -> values")
    parameters = matrix["parameters"]
    if not isinstance(parameters, Mapping):
        raise TypeError(
            f"matrix['parameters'] must be a dict of name -> list of values, "
            f"got {type(parameters).__name__}: {_describe(parameters)}"
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
        if not isinstance(values, _VALUE_SEQUENCES) and not _is_numpy_vector(values):
            raise TypeError(
                f"Parameter {name!r} must be a list, tuple or range of values, got "
                f"{type(values).__name__}: {_describe(values)}"
                + (" (wrap a single value in a list: [value])" if not _is_iterable(values) else "")
            )
        if len(values) == 0:
            raise ValueError(f"Parameter {name!r} has no values: give it at least one")
    settings = matrix.get("settings", {})
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise TypeError(
            f"matrix['settings'] must be a dict, got {type(settings).__name__}: "
            f"{_describe(settings)}"
        )
    for field in ("exclude", "include"):
        entries = matrix.get(field, [])
        if entries is None:
            continue
        if not isinstance(entries, (list, tuple)):
            raise TypeError(
                f"matrix[{field!r}] must be a list of dicts, got {type(entries).__name__}: "
                f"{_describe(entries)}"
            )
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise TypeError(
                    f"Each entry of matrix[{field!r}] must be a dict of parameter -> value, "
                    f"got {type(entry).__name__}: {_describe(entry)}"
                )
            if field == "exclude":
                for key in entry:
                    if key not in parameters:
                        raise ValueError(
                            f"matrix['exclude'] entry {_describe(dict(entry))} names {key!r}, "
                            f"which is not a parameter; parameters are {list(parameters)}"
                        )
            elif not entry:
                raise ValueError("matrix['include'] has an empty entry: give it parameters")
            elif "settings" in entry:
                raise ValueError("'settings' is a reserved parameter name in matrix['include']")


def _is_iterable(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return False
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _is_numpy_vector(value: Any) -> bool:
    return type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 1


class _ValueIndex:
    """Where each value of one parameter sits, looked up by canonical encoding."""

    def __init__(self, values: Sequence[Any]) -> None:
        from memento.exceptions import UnencodableValue
        from memento.keys import encode

        self._values = values
        self._by_code: dict[bytes, set[int]] = {}
        self._unencodable: list[int] = []
        for i, v in enumerate(values):
            try:
                self._by_code.setdefault(encode(v), set()).add(i)
            except UnencodableValue:
                self._unencodable.append(i)

    def find(self, wanted: Any) -> set[int]:
        from memento.exceptions import UnencodableValue
        from memento.keys import encode

        try:
            found = set(self._by_code.get(encode(wanted), ()))
        except UnencodableValue:
            return {i for i, v in enumerate(self._values) if _matches(v, wanted)}
        found.update(i for i in self._unencodable if _matches(self._values[i], wanted))
        return found


class _Indexes(dict[int, _ValueIndex]):
    """Per-parameter value indexes, built on first use."""

    def __init__(self, values: Sequence[Sequence[Any]]) -> None:
        super().__init__()
        self._values = values

    def __missing__(self, p: int) -> _ValueIndex:
        index = self[p] = _ValueIndex(self._values[p])
        return index


def _exclusion_test(
    names: Sequence[str], values: Sequence[Sequence[Any]], exclude: Sequence[Mapping[str, Any]]
) -> Callable[[tuple[int, ...]], bool] | None:
    """Compile excludes into set look-ups, grouped by the parameters each entry names.

    Per config, the cost is one tuple look-up per *distinct set of named parameters*, not per
    entry: entries naming the same parameters share one set of excluded index combinations.
    """
    position = {name: i for i, name in enumerate(names)}
    groups: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
    indexes = _Indexes(values)
    for entry in exclude:
        positions = tuple(sorted(position[k] for k in entry))
        choices = [indexes[p].find(entry[names[p]]) for p in positions]
        combos = groups.setdefault(positions, set())
        combos.update(itertools.product(*choices))
    if not groups:
        return None
    tests: list[tuple[Callable[[tuple[int, ...]], Any], set[Any]]] = []
    for positions, combos in groups.items():
        if not combos:
            continue
        if len(positions) == 1:
            p = positions[0]
            singles = {c[0] for c in combos}
            tests.append((operator.itemgetter(p), singles))
        else:
            tests.append((operator.itemgetter(*positions), combos))
    if not tests:
        return None

    def excluded(idx: tuple[int, ...]) -> bool:
        return any(get(idx) in combos for get, combos in tests)

    return excluded


def generate_configurations(matrix: Mapping[str, Any]) -> Configurations:
    """Validate ``matrix`` and expand it lazily into :class:`Configurations`.

    Example::

        configs = generate_configurations({"parameters": {"a": [1, 2], "b": ["x", "y"]}})
        len(configs)   # 4
        configs[1]     # Config(a=1, b='y')
    """
    validate_matrix(matrix)
    parameters: Mapping[str, Any] = matrix["parameters"]
    names = list(parameters)
    values = [list(v) for v in parameters.values()]
    settings = matrix.get("settings") or {}
    if not isinstance(settings, dict):
        settings = dict(settings)
    excluded = _exclusion_test(names, values, matrix.get("exclude") or [])

    # `include`, as in GitHub Actions' matrix: an entry whose parameter values all match a
    # product combination and that brings new keys is merged into every such combination;
    # otherwise it is appended as a config of its own (excludes never remove includes).
    merges: list[tuple[dict[int, int], dict[str, Any]]] = []
    extras: list[tuple[tuple[int, ...] | None, dict[str, Any]]] = []
    position = {name: i for i, name in enumerate(names)}
    indexes = _Indexes(values)
    for entry in matrix.get("include") or []:
        entry = dict(entry)
        own = {k: v for k, v in entry.items() if k in position}
        new = {k: v for k, v in entry.items() if k not in position}
        matches = {k: indexes[position[k]].find(v) for k, v in own.items()}
        if new and all(len(m) == 1 for m in matches.values()):
            where = {position[k]: next(iter(m)) for k, m in matches.items()}
            n_matching = _count_matching(names, values, where, excluded)
            if n_matching:
                merges.append((where, new))
                continue
        extras.append((None, entry))
    return Configurations(names, values, settings, excluded, extras, merges)


def _count_matching(
    names: Sequence[str],
    values: Sequence[Sequence[Any]],
    where: dict[int, int],
    excluded: Callable[[tuple[int, ...]], bool] | None,
) -> int:
    ranges = [
        range(where[p], where[p] + 1) if p in where else range(len(values[p]))
        for p in range(len(names))
    ]
    if excluded is None:
        return math.prod(len(r) for r in ranges)
    return sum(1 for idx in itertools.product(*ranges) if not excluded(idx))


__all__ = ["Config", "Configurations", "generate_configurations", "validate_matrix"]
