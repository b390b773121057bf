"""Configuration matrices: validation and lazy expansion into :class:`Config` objects.

Pure code, no I/O. A matrix is a dict::

    {
        "parameters": {"model": [SVC, Perceptron], "dataset": ["mnist", "cifar10"]},
        "settings": {"regularization": 0.1},           # optional, shared by every config
        "exclude": [{"model": SVC, "dataset": "cifar10"}],  # optional
        "include": [{"model": SVC, "dataset": "svhn"}],     # optional, GitHub Actions style
        "sample": {"C": loguniform(1e-2, 1e2)},         # optional, with "samples" (and
        "samples": 20,                                  #   "seed", "method"): drawn values
        "repeats": 3,                                   # optional: a last parameter "repeat"
        "name": "svm-grid",                             # any other key: kept as metadata
    }

The values of a parameter may be any finite iterable other than a string or a mapping (a
list, tuple, range, set (sorted), generator, numpy array, pandas Series, dict view...). The
cartesian product comes in memento-ml's order (the first parameter varies slowest).
``exclude`` matches by value, as memento-ml 1.2 did (``{"a": 2}`` excludes ``np.int64(2)``
and ``2.0``), while keys and ``Config`` equality stay type-exact.

Sampled points (see :mod:`memento.matrix.sampling`) are one more axis of the product, after the
parameters, and ``repeats: n`` a last one, the parameter ``repeat`` (0 to n-1): 20 points, 2
models and 3 repeats are 120 configs, each with the parameters ``model``, the sampled names and
``repeat``. ``exclude`` and ``include`` treat a sampled name as a parameter whose values are
the drawn ones. An ``include`` entry that matches no combination is a config of its own, as
before, and gets every point and repeat too, unless it gives a sampled value (then it is its
own point) or ``repeat`` itself.

Expansion is lazy: :class:`Configurations` decodes an index into a config on demand, so a
matrix of a million configs is never held as a million objects.
"""

from __future__ import annotations

import itertools
import math
import operator
import warnings
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

from memento._util.text import display_value
from memento.exceptions import UnencodableValue
from memento.keys.encoding import encode
from memento.matrix.sampling import sample_points
from memento.matrix.validation import (
    TOP_LEVEL_KEYS,
    count,
    describe,
    is_numpy_array,
    parameter_values,
    validate_matrix,
)


class Config:
    """One experiment configuration: parameters as attributes, shared settings in ``settings``.

    Example::

        config = Config(model="svm", C=1.0, settings={"seed": 0})  # memento-ml 1.2's form
        config = Config({"seed": 0}, model="svm", C=1.0)           # the same config
        config.model          # "svm"
        config.asdict()       # {"model": "svm", "C": 1.0}
        config.settings       # {"seed": 0} (the matrix's settings; {} when there are none)

    ``==`` compares parameters and settings by value *and type*, so ``1``, ``1.0`` and ``True``
    differ, and numpy arrays compare by dtype, shape and contents.
    """

    __slots__ = ("_params", "settings")

    _params: dict[str, Any]
    settings: dict[str, Any]

    def __init__(self, settings: Mapping[str, Any] | None = None, /, **parameters: Any) -> None:
        if "settings" in parameters:  # memento-ml 1.2: Config(x=1, settings={...})
            if settings is not None:
                raise TypeError("Config got settings twice, positionally and as settings=")
            settings = parameters.pop("settings")
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

    def __setstate__(self, state: Any) -> None:
        """Load a pickle of memento-ml 1.2's ``Config``: its ``__dict__``, with the parameters
        in ``_dict`` (``settings`` among them for a hand-made one) and, once a
        ``Configurations`` had set them, the settings in ``settings``."""
        if isinstance(state, tuple):  # (dict state, slot state), from a subclass with slots
            state = {**(state[0] or {}), **(state[1] or {})}
        params = dict(state.get("_dict", state.get("_params")) or {})
        own_settings = params.pop("settings", None)
        settings = state.get("settings", own_settings)
        object.__setattr__(self, "_params", params)
        object.__setattr__(self, "settings", settings if settings is not None else {})

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
        return hash(encode(self._params))

    def __str__(self) -> str:
        return ", ".join(f"{k}={display_value(v)}" for k, v in self._params.items())

    def __repr__(self) -> str:
        return f"Config({self})"


def values_equal(a: Any, b: Any) -> bool:
    """Type-aware equality: equal canonical encodings (falls back to ``==``)."""
    if a is b:
        return True
    try:
        return encode(a) == encode(b)
    except UnencodableValue:
        return _equal(a, b)


def _equal(a: Any, b: Any) -> bool:
    """``a == b`` as memento-ml 1.2 compared excludes; numpy arrays by value, never raising."""
    if a is b:
        return True
    try:
        if is_numpy_array(a) or is_numpy_array(b):
            import numpy as np

            return bool(np.array_equal(a, b))
        return bool(a == b)
    except Exception:
        return False


class Configurations(Sequence[Config]):
    """The ordered sequence of configs a matrix expands to, built lazily.

    Supports ``len``, iteration, indexing (negative indices and slices too), ``.settings`` and
    ``.metadata`` (the matrix's extra top-level keys, such as ``"name"``). It can also be
    built from a list of configs, as in memento-ml 1.2, which gives each config the settings::

        configs = generate_configurations({"parameters": {"a": [1, 2]}})  # lazy
        configs = Configurations([Config(a=1), Config(a=2)], {"seed": 0})   # from a list
    """

    settings: dict[str, Any]
    metadata: dict[str, Any]
    _list: list[Config] | None
    _names: tuple[str, ...]
    _values: tuple[tuple[Any, ...], ...]
    _excluded: Callable[[tuple[int, ...]], bool] | None
    _merges: tuple[tuple[dict[int, int], dict[str, Any]], ...]
    _extras: tuple[tuple[tuple[int, ...] | None, dict[str, Any]], ...]
    _sizes: tuple[int, ...]
    _product_size: int
    _kept: array[int] | None
    # The axis of the sampled points, whose values are tuples of the names below (class
    # defaults: pickles made before sampling existed have neither).
    _point_axis: int | None = None
    _point_names: tuple[str, ...] = ()

    def __init__(
        self, configs: Iterable[Config] = (), settings: Mapping[str, Any] | None = None
    ) -> None:
        listed = configs if isinstance(configs, list) else list(configs)
        for i, config in enumerate(listed):
            if not isinstance(config, Config):
                raise TypeError(
                    f"Configurations takes a list of Config objects; item {i} is a "
                    f"{type(config).__name__}: {describe(config)}"
                )
        shared = settings if isinstance(settings, dict) or settings is None else dict(settings)
        if shared is not None:
            for config in listed:  # as in 1.2: every config shares the collection's settings
                config.settings = shared
        self._list = listed
        self.settings = shared if shared is not None else {}
        self.metadata = {}

    @classmethod
    def _lazy(
        cls,
        names: Sequence[str],
        values: Sequence[Sequence[Any]],
        settings: dict[str, Any],
        excluded: Callable[[tuple[int, ...]], bool] | None = None,
        extras: Sequence[tuple[tuple[int, ...] | None, dict[str, Any]]] = (),
        merges: Sequence[tuple[dict[int, int], dict[str, Any]]] = (),
        point_axis: int | None = None,
        point_names: Sequence[str] = (),
        includes_only: bool = False,
    ) -> Configurations:
        self = cls.__new__(cls)
        self._point_axis = point_axis
        self._point_names = tuple(point_names)
        self._list = None
        self.settings = settings
        self.metadata = {}
        self._names = tuple(names)
        self._values = tuple(tuple(v) for v in values)
        self._excluded = excluded
        self._merges = tuple(merges)
        # Entries appended after the product: (indices, overrides) from `include`.
        self._extras = tuple(extras)
        self._sizes = tuple(len(v) for v in self._values)
        # No parameters at all: one empty config, as itertools.product() gives (and 1.2),
        # unless `include` entries are given, which are then the configs (the caller says).
        self._product_size = 0 if includes_only else math.prod(self._sizes)
        self._kept = None  # flat indices surviving `exclude`, built once
        return self

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "configurations" in state and "_list" not in state:  # memento-ml 1.2's pickle
            self.__dict__.update(_list=list(state["configurations"]), metadata={})
            self.settings = state.get("settings") or {}
        else:
            self.__dict__.update(state)

    def _kept_indices(self) -> array[int] | None:
        if self._excluded is None:
            return None
        if self._kept is None:
            excluded = self._excluded
            kept = array("q")
            if self._product_size and not getattr(excluded, "everything", False):
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
        if self._list is not None:
            return len(self._list)
        return self._product_len() + len(self._extras)

    def _decode(self, flat: int) -> tuple[int, ...]:
        idx = []
        for size in reversed(self._sizes):
            flat, i = divmod(flat, size)
            idx.append(i)
        return tuple(reversed(idx))

    def _build(self, idx: tuple[int, ...]) -> Config:
        point = self._point_axis
        if point is None:
            params = {name: vals[i] for name, vals, i in zip(self._names, self._values, idx)}
        else:
            params = {}
            for p, (name, vals, i) in enumerate(zip(self._names, self._values, idx)):
                if p == point:
                    params.update(zip(self._point_names, vals[i]))
                else:
                    params[name] = vals[i]
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
        if self._list is not None:
            return self._list[index]
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
        if self._list is not None:
            yield from self._list
            return
        excluded = self._excluded
        if not self._product_size:
            pass
        elif self._kept is not None or excluded is None:
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
        return self._list if self._list is not None else list(self)

    def __repr__(self) -> str:
        if self._list is not None:
            names = sorted({n for c in self for n in c})
        else:
            names = []
            for p, name in enumerate(self._names):
                names.extend(self._point_names if p == self._point_axis else [name])
        return f"<Configurations: {len(self)} configs of {names}>"


_NAN = ("memento", "nan")  # every nan, as one look-up key


def _plain(value: Any) -> Any:
    """The look-up key of a value for by-value matching: numpy scalars as Python scalars,
    every nan as one key (``==`` alone would never match a nan)."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        dtype = getattr(value, "dtype", None)
        if dtype is not None and dtype.kind in "biufcUS":
            value = value.item()
    if isinstance(value, float) and value != value:
        return _NAN
    return value


class _ValueIndex:
    """Where each value of one parameter sits: by canonical encoding (type-exact) and by
    value (``==``, as memento-ml 1.2 matched excludes), each built on first use."""

    def __init__(self, values: Sequence[Any]) -> None:
        self._values = values
        self._by_code: dict[bytes, set[int]] | None = None
        self._unencodable: list[int] = []
        self._by_value: dict[Any, set[int]] | None = None
        self._unhashable: list[int] = []

    def find(self, wanted: Any) -> set[int]:
        """The values with the same key as ``wanted``."""
        if self._by_code is None:
            self._by_code = {}
            for i, v in enumerate(self._values):
                try:
                    self._by_code.setdefault(encode(v), set()).add(i)
                except UnencodableValue:
                    self._unencodable.append(i)
        try:
            found = set(self._by_code.get(encode(wanted), ()))
        except UnencodableValue:
            return {i for i, v in enumerate(self._values) if values_equal(v, wanted)}
        found.update(i for i in self._unencodable if values_equal(self._values[i], wanted))
        return found

    def find_equal(self, wanted: Any) -> set[int]:
        """The values equal to ``wanted`` (``np.int64(2)`` and ``2.0`` match ``2``), and those
        with its key (the same experiment, e.g. an estimator built with the same parameters)."""
        if self._by_value is None:
            self._by_value = {}
            for i, v in enumerate(self._values):
                try:
                    self._by_value.setdefault(_plain(v), set()).add(i)
                except Exception:  # unhashable (a list, an array), or an __eq__ that raises
                    self._unhashable.append(i)
        found = self.find(wanted)
        candidates: Iterable[int] = self._unhashable
        try:
            found.update(self._by_value.get(_plain(wanted), ()))
        except Exception:
            candidates = range(len(self._values))
        found.update(i for i in candidates if _equal(self._values[i], wanted))
        return found


class _Columns:
    """Where each name an ``exclude`` or ``include`` entry may give sits: its axis and the
    values along it. A sampled name sits on the points' axis, with the values drawn for it."""

    def __init__(
        self,
        names: Sequence[str],
        values: Sequence[Sequence[Any]],
        point_axis: int | None = None,
        point_names: Sequence[str] = (),
    ) -> None:
        self.position: dict[str, int] = {}
        self._columns: dict[str, Sequence[Any]] = {}
        for p, name in enumerate(names):
            if p == point_axis:
                for j, sampled in enumerate(point_names):
                    self.position[sampled] = p
                    self._columns[sampled] = [point[j] for point in values[p]]
            else:
                self.position[name] = p
                self._columns[name] = values[p]
        self._indexes: dict[str, _ValueIndex] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.position

    def __iter__(self) -> Iterator[str]:
        return iter(self.position)

    def matches(self, entry: Mapping[str, Any], by_value: bool) -> dict[int, set[int]]:
        """Per axis, the indices where every name of ``entry`` on it has its value: by value
        (as ``exclude`` matches) or by key (as ``include`` does)."""
        found: dict[int, set[int]] = {}
        for name, wanted in entry.items():
            index = self._indexes.get(name)
            if index is None:
                index = self._indexes[name] = _ValueIndex(self._columns[name])
            hits = index.find_equal(wanted) if by_value else index.find(wanted)
            p = self.position[name]
            found[p] = found[p] & hits if p in found else hits
        return found


class _Exclusion:
    """Whether the config at some value indices is excluded: one set look-up per group of
    entries naming the same parameters. A class, not a closure, so that it pickles."""

    __slots__ = ("everything", "tests")

    def __init__(
        self,
        tests: Sequence[tuple[Callable[[tuple[int, ...]], Any], set[Any]]],
        everything: bool = False,
    ) -> None:
        self.tests = tuple(tests)
        self.everything = everything

    def __call__(self, idx: tuple[int, ...]) -> bool:
        return self.everything or any(get(idx) in combos for get, combos in self.tests)


def _exclusion_test(columns: _Columns, exclude: Sequence[Mapping[str, Any]]) -> _Exclusion | None:
    """Compile excludes into set look-ups, grouped by the parameters each entry names.

    Per config, the cost is one tuple look-up per *distinct set of named parameters*, not per
    entry: entries naming the same parameters share one set of excluded index combinations.
    An empty entry excludes everything; one naming a key that is not a parameter excludes
    nothing (as in memento-ml 1.2), with a warning.
    """
    groups: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
    for entry in exclude:
        unknown = [k for k in entry if k not in columns]
        if unknown:
            warnings.warn(
                f"matrix['exclude'] entry {describe(dict(entry))} names "
                f"{', '.join(map(repr, unknown))}, which {'is' if len(unknown) == 1 else 'are'} "
                f"not a parameter (the parameters are {list(columns)}), so it excludes nothing",
                UserWarning,
                stacklevel=3,
            )
            continue
        if not entry:
            return _Exclusion((), everything=True)
        found = columns.matches(entry, by_value=True)
        positions = tuple(sorted(found))
        choices = [found[p] for p in positions]
        combos = groups.setdefault(positions, set())
        combos.update(itertools.product(*choices))
    tests: list[tuple[Callable[[tuple[int, ...]], Any], set[Any]]] = []
    for positions, combos in groups.items():
        if not combos:
            continue
        if len(positions) == 1:
            tests.append((operator.itemgetter(positions[0]), {c[0] for c in combos}))
        else:
            tests.append((operator.itemgetter(*positions), combos))
    return _Exclusion(tests) if tests else None


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
    values = [parameter_values(name, v) for name, v in parameters.items()]
    for name, vals in zip(names, values):
        if not vals:
            warnings.warn(
                f"Parameter {name!r} has no values, so the matrix's product has no configs",
                UserWarning,
                stacklevel=2,
            )
    settings = matrix.get("settings") or {}
    if not isinstance(settings, dict):
        settings = dict(settings)
    point_axis, point_names = _add_sampling_axes(matrix, names, values)
    columns = _Columns(names, values, point_axis, point_names)
    excluded = _exclusion_test(columns, matrix.get("exclude") or [])

    # `include`, as in GitHub Actions' matrix: an entry whose parameter values all match a
    # product combination and that brings new keys is merged into every such combination;
    # otherwise it is appended as a config of its own (excludes never remove includes).
    merges: list[tuple[dict[int, int], dict[str, Any]]] = []
    merged_entries: list[dict[str, Any]] = []
    extras: list[tuple[tuple[int, ...] | None, dict[str, Any]]] = []
    for entry in matrix.get("include") or []:
        entry = dict(entry)
        own = {k: v for k, v in entry.items() if k in columns}
        new = {k: v for k, v in entry.items() if k not in columns}
        matches = columns.matches(own, by_value=False)
        if parameters and new and all(len(m) == 1 for m in matches.values()):
            where = {p: next(iter(m)) for p, m in matches.items()}
            n_matching = _count_matching(names, values, where, excluded)
            if n_matching:
                _warn_overwrites(
                    columns, names, values, excluded, merges, merged_entries, where, entry
                )
                merges.append((where, new))
                merged_entries.append(entry)
                continue
        extras.append((None, entry))
    includes_only = not parameters and bool(extras)
    if point_axis is not None or "repeats" in matrix:
        extras = _crossed(extras, values, point_axis, point_names, "repeats" in matrix)
    configs = Configurations._lazy(
        names, values, settings, excluded, extras, merges, point_axis, point_names, includes_only
    )
    configs.metadata = {k: v for k, v in matrix.items() if k not in TOP_LEVEL_KEYS}
    return configs


def _crossed(
    extras: Sequence[tuple[tuple[int, ...] | None, dict[str, Any]]],
    values: Sequence[Sequence[Any]],
    point_axis: int | None,
    point_names: Sequence[str],
    repeats: bool,
) -> list[tuple[tuple[int, ...] | None, dict[str, Any]]]:
    """The ``include`` configs of their own, each with every sampled point and repeat, as the
    product's configs have them; an entry that gives a sampled value keeps its own point, one
    that gives ``repeat`` its own repeat."""
    crossed: list[tuple[tuple[int, ...] | None, dict[str, Any]]] = []
    for where, entry in extras:
        points: Sequence[tuple[Any, ...]] = [()]
        if point_axis is not None and not any(name in entry for name in point_names):
            points = values[point_axis]
        repeat_values: Sequence[Any] = values[-1] if repeats and "repeat" not in entry else [None]
        for point in points:
            for repeat in repeat_values:
                params = {**entry, **dict(zip(point_names, point))}
                if repeat is not None:
                    params["repeat"] = repeat
                crossed.append((where, params))
    return crossed


def _add_sampling_axes(
    matrix: Mapping[str, Any], names: list[str], values: list[list[Any]]
) -> tuple[int | None, tuple[str, ...]]:
    """Append the axis of the sampled points and the ``repeat`` axis the matrix asks for;
    return the points' axis and the sampled names (``None, ()`` when nothing is sampled)."""
    point_axis: int | None = None
    point_names: tuple[str, ...] = ()
    sample = matrix.get("sample")
    if sample is not None:
        seed = matrix.get("seed")
        points = sample_points(
            sample,
            count(matrix, "samples"),
            0 if seed is None else int(seed),
            matrix.get("method", "random"),
        )
        point_axis, point_names = len(names), tuple(sample)
        names.append("+".join(point_names))  # shown nowhere: _build spreads the point
        values.append(points)
    if "repeats" in matrix:
        names.append("repeat")
        values.append(list(range(count(matrix, "repeats"))))
    return point_axis, point_names


def _warn_overwrites(
    columns: _Columns,
    names: Sequence[str],
    values: Sequence[Sequence[Any]],
    excluded: Callable[[tuple[int, ...]], bool] | None,
    merges: Sequence[tuple[dict[int, int], dict[str, Any]]],
    entries: Sequence[dict[str, Any]],
    where: dict[int, int],
    entry: dict[str, Any],
) -> None:
    """Warn when ``entry`` overwrites, in some config, a value an earlier include entry added.

    GitHub Actions' rule lets the later entry win; that is rarely what was meant, so say so.
    """
    new = {k: v for k, v in entry.items() if k not in columns}
    for (earlier_where, added), earlier in zip(merges, entries):
        changed = [k for k in added if k in new and not _same(added[k], new[k])]
        if not changed:
            continue
        if any(earlier_where.get(p, i) != i for p, i in where.items()):
            continue  # the two entries never apply to the same config
        if not _count_matching(names, values, {**earlier_where, **where}, excluded):
            continue
        warnings.warn(
            f"matrix['include'] entry {describe(entry)} overwrites "
            f"{', '.join(map(repr, changed))} added by the earlier entry {describe(earlier)} "
            "in the configs both apply to (the later entry wins, as in GitHub Actions); make "
            "the entries apply to different configs if that is not meant",
            UserWarning,
            stacklevel=3,
        )


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # arrays and other values without a plain truth value
        return False


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


# Pickles, keys and reprs name these classes by the public module they have always lived in,
# whatever file inside it defines them: a value stored today loads after the files move again.
for _cls in (Config, Configurations):
    _cls.__module__ = "memento.matrix"

__all__ = ["Config", "Configurations", "generate_configurations", "validate_matrix"]
