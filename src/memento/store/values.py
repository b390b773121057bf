"""How a store keeps an experiment's return value: the most durable format that fits it.

:func:`encode` tries each format in turn and keeps the first that accepts the value; a format
whose dump raises falls through to the next (logged at DEBUG on the ``memento`` logger). The
order is: the formats registered with :func:`register_format` (the latest first), then:

``json``
    Plain data only: ``None``, ``bool``, ``int``, ``float`` (``nan``, ``inf``, ``-inf`` and
    ``-0.0`` included), ``str``, ``bytes``, ``list``, ``tuple`` and ``dict`` with ``str`` keys,
    nested up to 200 levels. Types are matched exactly (a subclass of ``int`` is not plain),
    except numpy's scalars (``numpy.floating`` but ``longdouble``, ``numpy.integer``,
    ``numpy.bool_``), which are stored as JSON numbers and booleans and come back as Python
    ``float``, ``int`` and ``bool``: a score from scikit-learn is a ``numpy.float64``, and SQL
    must see a number. The
    text is ordinary compact UTF-8 JSON wherever it can be, so ``{"accuracy": 0.93}`` is stored
    as exactly that and SQLite's ``json_extract(value, '$.accuracy')`` returns the number.
    What JSON has no word for is a tagged single-key object: ``{"$tuple": [...]}``,
    ``{"$bytes": "<base64>"}``, ``{"$float": "nan" | "inf" | "-inf"}``; a dict with a key that
    starts with ``$`` is wrapped as ``{"$dict": {...}}`` (its keys taken literally). Floats stay
    floats (``1.0`` is written ``1.0``), ints stay ints of any size. A string that is not valid
    Unicode (a lone surrogate) is not plain.
``npy``
    A ``numpy.ndarray`` (exactly that type, or a ``numpy.memmap``, which comes back an
    ndarray) whose dtype holds no Python objects, structured dtypes included: the ``.npy``
    format, read with ``numpy.load(file, allow_pickle=False)``. A contiguous array is not
    copied to be stored. Read back from a side file of 1 MiB or more, it is memory-mapped
    copy-on-write (``mmap_mode="c"``): it can be modified, the file never is.
``npz``
    A ``list``, ``tuple`` or ``dict`` tree of plain values and such arrays (one array at least):
    an uncompressed zip that ``numpy.load`` opens, holding ``value.json`` (the tree as ``json``
    above, each array replaced by ``{"$npy": "arr_<i>.npy"}``) and the ``arr_<i>.npy`` members.
``parquet``
    A ``pandas.DataFrame`` or ``pandas.Series`` (exactly those types), when pyarrow is
    installed (``pip install 'memento-grid[parquet]'``): index and dtypes come back as pandas
    round-trips them through Parquet. A frame that Parquet cannot hold as it is (columns that
    are not strings, object columns holding anything but strings or bytes, and with pandas 3
    any object column, which Parquet would bring back as ``str``) is pickled instead.
``pickle``
    Everything else, with cloudpickle. Its description records the versions of the libraries
    its types come from, so that a pickle that no longer loads says what changed.

Each value is described by a small JSON-able ``info`` dict (its ``"type"`` always; shape and
dtype of an array; rows and columns of a frame). :func:`decode` brings a value back;
``trusted=False`` never runs code from the store: a pickle then comes back only if it is plain
data, else as a :class:`~memento.store.safe_pickle.StoredValue` placeholder. A value stored in
a format registered in another process, and not in this one, comes back as an
:class:`UnknownFormat` placeholder.
"""

from __future__ import annotations

import base64
import functools
import importlib
import importlib.util
import io
import json
import logging
import math
import os
import pickle
import re
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from memento._util.distributions import installed
from memento.exceptions import StoreError
from memento.store.safe_pickle import load_plain, pickled_type

logger = logging.getLogger("memento")

#: Side files at least this large are memory-mapped when read (``.npy`` only).
MMAP_MIN_BYTES = 1 << 20

#: Deeper plain data falls through to the next format (and JSON parsers have limits too).
MAX_DEPTH = 200

#: How many items :func:`library_versions` looks at, at most.
MAX_WALK = 1000

BUILTIN_FORMATS = ("json", "npy", "npz", "parquet", "pickle")

_NAME = re.compile(r"[a-z0-9_.-]+")
_EXTENSION = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")

Chunk = bytes | memoryview


@dataclass(frozen=True)
class Encoded:
    """A value as stored: its format's name, its bytes (in ``chunks``, so that a big array is
    never copied into one ``bytes``), the extension of a side file holding it, and a JSON-able
    description (``info["type"]`` always)."""

    format: str
    chunks: tuple[Chunk, ...]
    extension: str
    info: dict[str, Any]

    @property
    def size(self) -> int:
        """The total number of bytes."""
        return sum(memoryview(chunk).nbytes for chunk in self.chunks)

    def data(self) -> bytes:
        """The chunks joined: the stored bytes in one piece (a copy)."""
        return b"".join(self.chunks)


class ValueLoadError(StoreError):
    """A stored value that fails to load. The message says what it is, how it was stored, and
    for a pickle the versions of its libraries then and now; the original error is the
    ``__cause__``."""

    def __init__(
        self, message: str, format: str | None = None, type_name: str | None = None
    ) -> None:
        super().__init__(message)
        self.format = format
        self.type_name = type_name

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.format, self.type_name))


class UnknownFormat:
    """A value stored in a format registered in the writer's process but not in this one.

    :meth:`load` decodes it once its format has been registered here.
    """

    def __init__(
        self,
        name: str,
        type_name: str,
        data: bytes | None = None,
        path: str | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.type_name = type_name
        self.data = data
        self.path = path
        self.info = info or {}

    def load(self) -> Any:
        """The value, decoded by the format registered under its name since."""
        if self.name not in formats():
            raise ValueLoadError(
                f"{self!r}: no format {self.name!r} is registered", self.name, self.type_name
            )
        return decode(self.name, self.data, path=self.path, info=self.info)

    def __repr__(self) -> str:
        return (
            f"<value stored as {self.name!r} (type {self.type_name}); "
            "call memento.register_format(...) to load it>"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class _Format:
    """One registered format. ``dump`` returns the bytes (a built-in may return chunks)."""

    name: str
    types: tuple[type, ...]
    dump: Callable[[Any], Any]
    load: Callable[[bytes], Any]
    extension: str
    accepts: Callable[[Any], bool]


_lock = threading.Lock()
#: User formats, the latest first.
_user: list[_Format] = []
#: Built-in formats, in trial order.
_builtin: list[_Format] = []
#: The dump function of each built-in, so that only the built-in itself can take its name.
_BUILTIN_DUMPS: dict[str, Callable[[Any], Any]] = {}


# ---------------------------------------------------------------------------------------------
# Registry


def register_format(
    type_: type | tuple[type, ...],
    dump: Callable[[Any], bytes],
    load: Callable[[bytes], Any],
    name: str,
    *,
    extension: str = "bin",
    accepts: Callable[[Any], bool] | None = None,
) -> None:
    """Store values of ``type_`` as ``dump(value)`` bytes, read back by ``load(bytes)``.

    Registered formats are tried before the built-in ones, the latest first; ``accepts``
    (default: ``isinstance(value, type_)``) narrows which values it takes. Registering a name
    again replaces that format. ``name`` is what the store records, so a process that reads
    the store must register the same name to load such values (else it gets an
    :class:`UnknownFormat` placeholder).
    """
    types = _check_types(type_)
    _check_name(name, dump)
    for what, function in (("dump", dump), ("load", load)):
        if not callable(function):
            raise TypeError(f"register_format: {what} must be callable, got {function!r}")
    if accepts is not None and not callable(accepts):
        raise TypeError(f"register_format: accepts must be callable or None, got {accepts!r}")
    if not isinstance(extension, str) or not _EXTENSION.fullmatch(extension):
        raise ValueError(
            f"register_format: extension must be letters, digits, '_', '-' and inner dots "
            f"without a leading dot (like 'pt' or 'tar.gz'), got {extension!r}"
        )
    predicate = accepts if accepts is not None else _isinstance_of(types)
    fmt = _Format(name, types, dump, load, extension, predicate)
    with _lock:
        if name in _BUILTIN_DUMPS:
            _replace_builtin(fmt)
        else:
            _user[:] = [fmt, *(f for f in _user if f.name != name)]


def unregister_format(name: str) -> None:
    """Forget the user format ``name`` (its stored values then load as :class:`UnknownFormat`).

    Built-in formats cannot be removed; an unknown name is ignored.
    """
    if name in BUILTIN_FORMATS:
        raise ValueError(f"{name!r} is a built-in format and cannot be unregistered")
    with _lock:
        _user[:] = [f for f in _user if f.name != name]


def formats() -> list[str]:
    """The names of the formats in the order :func:`encode` tries them."""
    with _lock:
        return [f.name for f in (*_user, *_builtin)]


def _check_types(type_: Any) -> tuple[type, ...]:
    """``type_`` as a non-empty tuple of classes, or a clear TypeError."""
    types = type_ if isinstance(type_, tuple) else (type_,)
    if not types or not all(isinstance(t, type) for t in types):
        raise TypeError(
            f"register_format: type_ must be a class or a non-empty tuple of classes, got {type_!r}"
        )
    return types


def _check_name(name: Any, dump: Any) -> None:
    """A name is what the store records: lowercase, stable, and not a built-in's."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            "register_format: name must be a non-empty string of lowercase letters, digits, "
            f"'_', '.' and '-', got {name!r}"
        )
    if name in BUILTIN_FORMATS and _BUILTIN_DUMPS.get(name) is not dump:
        raise ValueError(
            f"register_format: {name!r} is a built-in format; choose another name "
            f"(built-ins: {', '.join(BUILTIN_FORMATS)})"
        )


def _isinstance_of(types: tuple[type, ...]) -> Callable[[Any], bool]:
    def accepts(value: Any) -> bool:
        return isinstance(value, types)

    return accepts


def _replace_builtin(fmt: _Format) -> None:
    """Put a built-in in its place of :data:`BUILTIN_FORMATS` (the caller holds the lock)."""
    others = [f for f in _builtin if f.name != fmt.name]
    _builtin[:] = sorted([*others, fmt], key=lambda f: BUILTIN_FORMATS.index(f.name))


# ---------------------------------------------------------------------------------------------
# Encoding


def encode(value: Any) -> Encoded:
    """``value`` in the first format that accepts it (see the module's documentation).

    Raises TypeError naming the value's type when even cloudpickle cannot store it.
    """
    with _lock:
        candidates = [*_user, *_builtin]
    for fmt in candidates:
        if not _accepted(fmt, value):
            continue
        try:
            chunks = _chunks(fmt.dump(value))
        except Exception as exc:
            if fmt.name == "pickle":
                raise TypeError(
                    f"cannot store a value of type {type_name(value)}: cloudpickle failed "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            logger.debug(
                "memento: format %r could not store a %s (%s: %s); trying the next one",
                fmt.name,
                type_name(value),
                type(exc).__name__,
                exc,
            )
            continue
        return Encoded(fmt.name, chunks, fmt.extension, _describe(fmt.name, value))
    raise TypeError(f"cannot store a value of type {type_name(value)}: no format accepts it")


def _accepted(fmt: _Format, value: Any) -> bool:
    """Whether ``fmt`` takes ``value``; a predicate that raises means no."""
    try:
        return bool(fmt.accepts(value))
    except Exception as exc:
        logger.debug("memento: format %r's accepts() raised %r; skipping it", fmt.name, exc)
        return False


def _chunks(dumped: Any) -> tuple[Chunk, ...]:
    """A dump's result as chunks: one ``bytes``, or the chunks a built-in returns."""
    if isinstance(dumped, (bytes, memoryview)):
        return (dumped,)
    if isinstance(dumped, bytearray):
        return (bytes(dumped),)
    if isinstance(dumped, tuple) and all(isinstance(c, (bytes, memoryview)) for c in dumped):
        return dumped
    raise TypeError(f"dump returned {type(dumped).__name__}, not bytes")


def type_name(value: Any) -> str:
    """``module.qualname`` of the value's type, ``builtins`` left out (``dict``)."""
    cls = type(value)
    module = getattr(cls, "__module__", "") or ""
    qualname = getattr(cls, "__qualname__", cls.__name__)
    return qualname if module == "builtins" else f"{module}.{qualname}"


def _describe(format: str, value: Any) -> dict[str, Any]:
    """The JSON-able ``info`` of an encoded value."""
    if format == "npy":
        return {"type": "numpy.ndarray", "shape": list(value.shape), "dtype": str(value.dtype)}
    if format == "parquet":
        return _describe_pandas(value)
    info: dict[str, Any] = {"type": type_name(value)}
    if format == "npz":
        info["arrays"] = _count_arrays(value)
    elif format == "pickle":
        info["versions"] = library_versions(value)
    return info


def _describe_pandas(value: Any) -> dict[str, Any]:
    import pandas as pd

    if isinstance(value, pd.Series):
        return {
            "type": "pandas.Series",
            "rows": len(value),
            "name": None if value.name is None else str(value.name),
            "dtype": str(value.dtype),
        }
    return {
        "type": "pandas.DataFrame",
        "rows": len(value),
        "columns": [str(c) for c in list(value.columns)[:MAX_WALK]],
    }


def _count_arrays(value: Any) -> int:
    if type(value) in (list, tuple):
        return sum(_count_arrays(v) for v in value)
    if type(value) is dict:
        return sum(_count_arrays(v) for v in value.values())
    return 1 if _is_plain_array(value) else 0


# ---------------------------------------------------------------------------------------------
# json


class _NotPlain(ValueError):
    """A piece of the value that the json format cannot hold."""


def _numpy_scalar(value: Any) -> Any:
    """A numpy bool/int/float scalar as the Python one, or None; numpy is not imported."""
    if type(value).__module__ != "numpy":
        return None
    np = sys.modules.get("numpy")
    if np is None:
        return None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating) and value.dtype.itemsize <= 8:  # not longdouble
        return float(value)
    return None


def _to_tree(value: Any, depth: int, array: Callable[[Any], Any] | None) -> Any:
    """``value`` as a JSON-ready tree (see the module's documentation), ``array`` replacing
    each array (npz); :class:`_NotPlain` when some piece has no place in it."""
    if depth > MAX_DEPTH:
        raise _NotPlain(f"nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if kind is list:
        return [_to_tree(v, depth + 1, array) for v in value]
    if kind is tuple:
        return {"$tuple": [_to_tree(v, depth + 1, array) for v in value]}
    if kind is dict:
        return _dict_to_tree(value, depth, array)
    if kind is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    scalar = _numpy_scalar(value)
    if scalar is not None:
        return _to_tree(scalar, depth, array)
    if array is not None and _is_plain_array(value):
        return {"$npy": array(value)}
    raise _NotPlain(f"a {type_name(value)} is not plain data")


def _dict_to_tree(value: dict[Any, Any], depth: int, array: Callable[[Any], Any] | None) -> Any:
    if not all(type(k) is str for k in value):
        raise _NotPlain("a dict with keys that are not all str")
    tree = {k: _to_tree(v, depth + 1, array) for k, v in value.items()}
    return {"$dict": tree} if any(k.startswith("$") for k in value) else tree


def _dump_text(tree: Any) -> bytes:
    """Compact UTF-8 JSON; a lone surrogate raises (UnicodeEncodeError)."""
    text = json.dumps(tree, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def _json_accepts(value: Any) -> bool:
    kind = type(value)
    plain = (type(None), bool, int, float, str, bytes, list, tuple, dict)
    return kind in plain or _numpy_scalar(value) is not None


def _json_dump(value: Any) -> bytes:
    return _dump_text(_to_tree(value, 0, None))


def _from_tree(tree: Any, array: Callable[[str], Any] | None = None) -> Any:
    """The value a tree of :func:`_to_tree` stands for."""
    if isinstance(tree, list):
        return [_from_tree(v, array) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1:
        ((key, inner),) = tree.items()
        if key == "$tuple":
            return tuple(_from_tree(v, array) for v in inner)
        if key == "$dict":
            return {k: _from_tree(v, array) for k, v in inner.items()}
        if key == "$bytes":
            return base64.b64decode(inner)
        if key == "$float":
            return float(inner)
        if key == "$npy":
            if array is None:
                raise ValueError("an array reference outside an npz value")
            return array(inner)
    if any(k.startswith("$") for k in tree):
        raise ValueError(f"unknown tag in stored json: {sorted(tree)[:3]}")
    return {k: _from_tree(v, array) for k, v in tree.items()}


def _json_load(data: bytes) -> Any:
    raw = bytes(data)
    if b'"$' not in raw:  # no tag and no "$" key anywhere: the JSON is the value itself
        return json.loads(raw)
    return _from_tree(json.loads(raw.decode("utf-8")))


# ---------------------------------------------------------------------------------------------
# npy


def _is_plain_array(value: Any) -> bool:
    """An exact ``numpy.ndarray`` (or a ``numpy.memmap``, as a value read from a side file
    is) with no Python objects in it; numpy is not imported."""
    np = sys.modules.get("numpy")
    if np is None or type(value) not in (np.ndarray, np.memmap):
        return False
    return not value.dtype.hasobject


def _npy_chunks(array: Any) -> tuple[Chunk, ...]:
    """The ``.npy`` of ``array``: its header, then its memory as it is when it is contiguous
    (C or Fortran order), so that a big array is not copied."""
    import numpy as np

    fortran = array.flags.f_contiguous and not array.flags.c_contiguous
    if not (array.flags.c_contiguous or fortran):
        array = array.copy(order="C")
    try:
        header = _npy_header(array, fortran)
        body: Chunk = memoryview(_byte_view(array.T if fortran else array))
    except Exception:  # a dtype the header writers or buffers do not take: let numpy write it
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return (buffer.getvalue(),)
    return (header, body)


def _npy_header(array: Any, fortran: bool) -> bytes:
    from numpy.lib import format as npy

    header = npy.header_data_from_array_1_0(array)
    header["fortran_order"] = fortran
    buffer = io.BytesIO()
    try:
        npy.write_array_header_1_0(buffer, header)
    except ValueError:  # a header over 64 KiB (a structured dtype of many fields)
        buffer = io.BytesIO()
        npy.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


def _byte_view(array: Any) -> Any:
    """A C-contiguous array's memory as a flat uint8 array (a view, never a copy): buffers of
    some dtypes (datetime64, ...) cannot be exported as they are."""
    import numpy as np

    return array.reshape(-1).view(np.uint8)


def _npy_load(data: bytes) -> Any:
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)


def _npy_load_path(path: str) -> Any:
    """A big side file memory-mapped copy-on-write; a small one read."""
    import numpy as np

    if os.path.getsize(path) >= MMAP_MIN_BYTES:
        return np.load(path, mmap_mode="c", allow_pickle=False)
    return np.load(path, allow_pickle=False)


# ---------------------------------------------------------------------------------------------
# npz


def _npz_accepts(value: Any) -> bool:
    return type(value) in (list, tuple, dict) and "numpy" in sys.modules


def _npz_dump(value: Any) -> bytes:
    arrays: list[Any] = []

    def add(array: Any) -> str:
        arrays.append(array)
        return f"arr_{len(arrays) - 1}.npy"

    skeleton = _dump_text(_to_tree(value, 0, add))
    if not arrays:
        raise _NotPlain("no array in it (json holds it)")
    import zipfile  # on first use: only arrays need it

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("value.json", skeleton)
        for i, array in enumerate(arrays):
            chunks = _npy_chunks(array)
            big = sum(memoryview(c).nbytes for c in chunks) > (1 << 31)
            with archive.open(f"arr_{i}.npy", "w", force_zip64=big) as member:
                for chunk in chunks:
                    member.write(chunk)
    return buffer.getvalue()


def _npz_load(data: bytes) -> Any:
    return _npz_read(io.BytesIO(data))


def _npz_read(source: Any) -> Any:
    import zipfile

    from numpy.lib import format as npy

    with zipfile.ZipFile(source) as archive:

        def array(name: str) -> Any:
            with archive.open(name) as member:
                return npy.read_array(member, allow_pickle=False)

        return _from_tree(json.loads(archive.read("value.json").decode("utf-8")), array)


# ---------------------------------------------------------------------------------------------
# parquet

_SERIES_KEY = b"memento.series"
_SERIES_COLUMN = "__memento_series__"
#: What pandas' inferred type of an object column may be for Parquet to bring it back as it was.
_OBJECT_KINDS = {"string", "bytes", "empty"}


@functools.lru_cache(maxsize=1)
def _have_pyarrow() -> bool:
    """Whether pyarrow can be found, without importing it (``import memento`` stays light)."""
    try:
        return importlib.util.find_spec("pyarrow") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["pyarrow"] is None
        return False


def _parquet_accepts(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    if pd is None or type(value) not in (pd.DataFrame, pd.Series):
        return False
    return _have_pyarrow()


def _parquet_dump(value: Any) -> bytes:
    import pandas as pd

    if isinstance(value, pd.Series):
        data = _series_dump(value)
    else:
        _check_parquet_columns(value)
        buffer = io.BytesIO()
        value.to_parquet(buffer, engine="pyarrow")
        data = buffer.getvalue()
    _check_round_trip(value, _parquet_load(data))
    return data


def _check_round_trip(value: Any, back: Any) -> None:
    """Refuse (so the value is pickled) a frame or series that Parquet would not bring back
    exactly as it is: values, dtypes, index and column types (a string dtype's storage, say,
    which Parquet does not keep)."""
    from pandas import testing

    check = testing.assert_series_equal if back.ndim == 1 else testing.assert_frame_equal
    try:
        check(value, back, check_exact=True, check_index_type=True, check_names=True)
        if back.ndim == 2:
            testing.assert_index_equal(value.columns, back.columns, exact=True)
    except AssertionError as exc:
        raise _NotPlain(f"Parquet would change it ({str(exc).splitlines()[0]})") from None


def _check_parquet_columns(frame: Any) -> None:
    """Parquet turns object columns of numbers or lists into other dtypes; those frames are
    pickled instead, so that a value always comes back as it was."""
    import pandas as pd

    if not frame.columns.is_unique:
        raise _NotPlain("duplicate column names")
    columns = [frame[c] for c in frame.columns]
    indexes = [frame.index.get_level_values(i) for i in range(frame.index.nlevels)]
    # pandas 3 reads strings back as its "str" dtype, whatever the column's dtype was.
    kinds = _OBJECT_KINDS if int(pd.__version__.split(".")[0]) < 3 else set()
    for column in [*columns, *indexes]:
        if column.dtype == object:
            kind = pd.api.types.infer_dtype(column, skipna=True)
            if kind not in kinds:
                raise _NotPlain(f"an object column holding {kind} values")


def _series_dump(series: Any) -> bytes:
    """A one-column frame, the series' name kept (as json) in the Parquet metadata."""
    name = _dump_text(_to_tree(series.name, 0, None))
    frame = series.to_frame(name=_SERIES_COLUMN)
    _check_parquet_columns(frame)
    pa = importlib.import_module("pyarrow")
    parquet = importlib.import_module("pyarrow.parquet")
    table = pa.Table.from_pandas(frame)
    metadata = {**(table.schema.metadata or {}), _SERIES_KEY: name}
    buffer = io.BytesIO()
    parquet.write_table(table.replace_schema_metadata(metadata), buffer)
    return buffer.getvalue()


def _parquet_load(data: bytes) -> Any:
    return _parquet_read(lambda: io.BytesIO(data))


def _parquet_read(source: Callable[[], Any]) -> Any:
    """A frame or series back; ``source()`` gives a fresh file (or path) for each read."""
    if not _have_pyarrow():
        raise ImportError(
            "reading a value stored as parquet needs pyarrow: pip install pyarrow "
            "(or pip install 'memento-grid[parquet]')"
        )
    import pandas as pd

    parquet = importlib.import_module("pyarrow.parquet")
    metadata = parquet.read_schema(source()).metadata or {}
    frame = pd.read_parquet(source(), engine="pyarrow")
    if _SERIES_KEY not in metadata:
        return frame
    series = frame[_SERIES_COLUMN]
    series.name = _json_load(metadata[_SERIES_KEY])
    return series


# ---------------------------------------------------------------------------------------------
# pickle


def _pickle_dump(value: Any) -> bytes:
    import cloudpickle

    data: bytes = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def _pickle_load(data: bytes) -> Any:
    import cloudpickle

    return cloudpickle.loads(data)


def library_versions(value: Any) -> dict[str, str]:
    """``{distribution: version}`` of the libraries the types in ``value`` come from.

    The types are the value's own, its elements' (lists, tuples, sets, dicts) and its
    attributes' (``vars()``), at most :data:`MAX_WALK` items; a module that no installed
    distribution provides (builtins, ``__main__``, a local script) is left out.
    """
    modules, known = installed()
    versions: dict[str, str] = {}
    for module in sorted(_top_modules(value)):
        for distribution in modules.get(module, ()):
            if distribution in known:
                versions[distribution] = known[distribution]
    return versions


def _top_modules(value: Any) -> set[str]:
    """The top-level modules of the types found in a bounded, breadth-first walk."""
    modules: set[str] = set()
    pending: list[Any] = [value]
    seen: set[int] = set()
    while pending and len(seen) < MAX_WALK:
        item = pending.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        module = getattr(type(item), "__module__", None)
        if isinstance(module, str) and module != "builtins":
            modules.add(module.partition(".")[0])
        pending.extend(_children(item, MAX_WALK - len(seen)))
    return modules


def _children(item: Any, limit: int) -> Iterable[Any]:
    """The items or attributes of ``item`` to walk, at most ``limit`` of them."""
    if isinstance(item, (str, bytes, bytearray, memoryview)):
        return ()
    if isinstance(item, dict):
        values: Iterable[Any] = (v for pair in item.items() for v in pair)
    elif isinstance(item, (list, tuple, set, frozenset)):
        values = iter(item)
    else:
        try:
            attributes = vars(item)
        except TypeError:
            return ()
        if not isinstance(attributes, dict):
            return ()
        values = iter(list(attributes.values()))
    found: list[Any] = []
    for value in values:
        if len(found) >= limit:
            break
        found.append(value)
    return found


# ---------------------------------------------------------------------------------------------
# Decoding


def decode(
    format: str | None,
    data: bytes | memoryview | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    info: dict[str, Any] | str | None = None,
    trusted: bool = True,
) -> Any:
    """The value stored as ``data`` (or in the side file at ``path``) in ``format``.

    ``format`` None is a pickle (rows of earlier memento versions). ``trusted=False`` never
    runs code from the store (see the module's documentation). Raises :class:`ValueLoadError`
    when the value cannot be loaded.
    """
    if (data is None) == (path is None):
        raise TypeError("decode needs either data or path, and not both")
    name = "pickle" if format is None else format
    location = None if path is None else os.fspath(path)
    fmt = _lookup(name)
    if fmt is None:
        details = _parse_info(info)
        raw = None if location is not None else bytes(data or b"")
        type_ = str(details.get("type") or "object")
        return UnknownFormat(name, type_, raw, location, details)
    try:
        return _load(fmt, data, location, trusted)
    except Exception as exc:  # the description is read only now: a load is the hot path
        raise _load_error(name, _parse_info(info), data, location, exc) from exc


def _parse_info(info: dict[str, Any] | str | None) -> dict[str, Any]:
    """``info`` as a dict: it may come from the store as JSON text; bad text is no info."""
    if isinstance(info, dict):
        return info
    if isinstance(info, str) and info:
        try:
            parsed = json.loads(info)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def extension(format: str | None) -> str:
    """The side-file extension of values stored as ``format`` (``None``: a pickle); a format
    this process does not know keeps its name."""
    fmt = _lookup(format or "pickle")
    return fmt.extension if fmt is not None else (format or "pkl")


def _lookup(name: str) -> _Format | None:
    with _lock:
        return next((f for f in (*_user, *_builtin) if f.name == name), None)


def _load(fmt: _Format, data: bytes | memoryview | None, path: str | None, trusted: bool) -> Any:
    """Load with the format's own reader; the side-file and untrusted paths of built-ins."""
    if path is not None:
        if fmt.name == "npy" and fmt.load is _npy_load:
            return _npy_load_path(path)
        if fmt.name == "npz" and fmt.load is _npz_load:
            return _npz_read(path)
        if fmt.name == "parquet" and fmt.load is _parquet_load:
            return _parquet_read(lambda: path)
        with open(path, "rb") as file:
            raw = file.read()
    else:
        raw = bytes(data or b"")
    if fmt.name == "pickle" and not trusted:
        return load_plain(raw)
    return fmt.load(raw)


def _load_error(
    format: str,
    info: dict[str, Any],
    data: bytes | memoryview | None,
    path: str | None,
    exc: Exception,
) -> ValueLoadError:
    """The error that says what failed to load, how it was stored, and what changed."""
    if isinstance(exc, ValueLoadError):
        return exc
    type_ = info.get("type")
    if not type_ and format == "pickle" and data is not None:
        type_ = pickled_type(bytes(data))
    type_ = str(type_ or "value")
    where = f" from {path}" if path else ""
    message = f"cannot load a stored {type_} (stored as {format}){where}: "
    message += f"{type(exc).__name__}: {exc}"
    versions = info.get("versions")
    if format == "pickle" and isinstance(versions, dict) and versions:
        message += ". " + _versions_text(versions)
    return ValueLoadError(message, format, type_)


def _versions_text(then: dict[str, Any]) -> str:
    """The libraries whose versions changed since the pickle was written (all if few)."""
    known = installed()[1]
    now = {name: known.get(name) for name in then}
    changed = {name: v for name, v in then.items() if now[name] != v}
    shown = changed if changed or len(then) > 5 else then
    if not shown:
        return "Its libraries are at the same versions as when it was stored."
    parts = [
        f"{name} {version} (now {now[name] or 'not installed'})"
        for name, version in sorted(shown.items())
    ]
    head = "Library versions when stored vs now" if changed else "Its libraries (unchanged)"
    return f"{head}: " + ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# The built-ins, registered like any other format (user formats stay in front of them)


def _register_builtins() -> None:
    builtins: list[tuple[str, Callable[[Any], Any], Callable[[bytes], Any], str, Any]] = [
        ("json", _json_dump, _json_load, "json", _json_accepts),
        ("npy", _npy_chunks, _npy_load, "npy", _is_plain_array),
        ("npz", _npz_dump, _npz_load, "npz", _npz_accepts),
        ("parquet", _parquet_dump, _parquet_load, "parquet", _parquet_accepts),
        ("pickle", _pickle_dump, _pickle_load, "pkl", lambda value: True),
    ]
    for name, dump, load, extension, accepts in builtins:
        _BUILTIN_DUMPS[name] = dump
        register_format(object, dump, load, name, extension=extension, accepts=accepts)


_register_builtins()


__all__ = [
    "BUILTIN_FORMATS",
    "MMAP_MIN_BYTES",
    "Encoded",
    "UnknownFormat",
    "ValueLoadError",
    "decode",
    "encode",
    "formats",
    "library_versions",
    "register_format",
    "type_name",
    "unregister_format",
]
