"""Stable keys: a canonical, type-tagged encoding of values, then a hash.

A key must be equal across processes, interpreter restarts, ``PYTHONHASHSEED`` values and
machines for equal inputs, so the encoding never uses ``id()``, ``hash()``, memory addresses or
pickle bytes. Every value is written as a one-byte type tag followed by its content:

=========================  ==============================================================
value                      encoding
=========================  ==============================================================
None, bool                 tag only (``N``, ``T``, ``F``)
int, float, complex        tag + decimal / ``float.hex`` text (``nan`` and ``-0.0`` exact)
str, bytes                 tag + length + UTF-8 / raw bytes
tuple, list                tag + length + items
dict                       tag + length + (key, value) pairs sorted by their encoding
set, frozenset             tag + length + items sorted by their encoding
class                      tag + module + qualified name (one with no file adds the code
                           of its methods)
function                   tag + module + qualified name; lambdas, local functions and
                           functions with no file add their code, closure and defaults,
                           so two different lambdas differ
functools.partial          tag + function + args + sorted keywords
bound method               tag + the object + the method's name
numpy array / scalar       tag + dtype + shape + bytes
numpy ufunc                tag + the module it is found in + its name (``np.log``)
compiled regex             tag + pattern + flags
module                     tag + its name
a reference cycle          a back-reference: tag + how many levels up the value is already
                           being encoded (so ``a = [a]`` is ``[<1 up>]``, never an address)
``__memento_key__``        tag + class + the hook's return value, encoded
scikit-learn estimator     tag + class + its state (parameters and fitted attributes)
other objects              tag + class + their pickle-protocol state (``__reduce_ex__``)
=========================  ==============================================================

The module of a function or class defined in a script (``__main__``) is the module its file
would be imported as (see :func:`module_name`): ``python a.py`` and ``import a`` agree, and
two scripts do not. One defined where there is no file (``python -c``, the REPL, a notebook
cell, ``exec``) keeps ``__main__`` and is told apart by its code, as a lambda is.

So ``1``, ``1.0`` and ``True`` are three different keys. Values encoded before a tag was added
keep their encoding: new tags only cover what used to be unencodable. A value that cannot be
encoded raises
:class:`~memento.exceptions.UnencodableValue`, naming where it sits and pointing to the
``__memento_key__`` hook.
"""

from __future__ import annotations

import copyreg
import enum
import functools
import hashlib
import re
import struct
import sys
import types
from collections.abc import Callable
from typing import Any

from memento.exceptions import UnencodableValue
from memento.keys.identity import MAIN_MODULES, module_name, plain_function

#: Version of the encoding below; bump it when the encoding of any value changes.
KEY_SCHEME_VERSION = 1
#: Version of the code fingerprint scheme (see :func:`code_fingerprint`).
FINGERPRINT_VERSION = 3

_pack_len = struct.Struct("<Q").pack
_NEWOBJ = getattr(copyreg, "__newobj__", None)
_RECONSTRUCTOR = getattr(copyreg, "_reconstructor", None)


class Encoder:
    """Writes the canonical, tagged encoding of values into ``out`` (see :func:`encode`)."""

    __slots__ = ("_active", "out")

    def __init__(self) -> None:
        self.out = bytearray()
        # id -> depth of the containers being encoded, from the root down to the current one.
        self._active: dict[int, int] = {}

    def sized(self, tag: bytes, data: bytes) -> None:
        self.out += tag
        self.out += _pack_len(len(data))
        self.out += data

    def text(self, tag: bytes, text: str) -> None:
        self.sized(tag, text.encode("utf-8", "surrogatepass"))

    def encode(self, value: Any, path: str) -> None:
        t = type(value)
        handler = _EXACT.get(t)
        if handler is not None:
            handler(self, value, path)
            return
        self._encode_other(value, path)

    def nested(self, value: Any, path: str) -> bytes:
        sub = Encoder()
        sub._active = self._active
        sub.encode(value, path)
        return bytes(sub.out)

    def _enter(self, value: Any) -> bool:
        """Start encoding a container; on a reference cycle (``value`` is already being
        encoded further up), write a back-reference instead and return False.

        The back-reference counts levels up from here, so it depends only on the shape of
        the value, never on ids or addresses: equal cyclic values get equal encodings."""
        depth = self._active.get(id(value))
        if depth is not None:
            self.out += b"^"
            self.out += _pack_len(len(self._active) - depth)
            return False
        self._active[id(value)] = len(self._active)
        return True

    def _leave(self, value: Any) -> None:
        del self._active[id(value)]

    def _encode_other(self, value: Any, path: str) -> None:
        hook = getattr(type(value), "__memento_key__", None)
        if hook is not None and not isinstance(value, type):
            if not self._enter(value):
                return
            try:
                self.out += b"H"
                _class_name(self, type(value), path)
                self.encode(hook(value), f"{path}.__memento_key__()")
            finally:
                self._leave(value)
            return
        if isinstance(value, type):
            self.out += b"c"
            _class_name(self, value, path)
            return
        if isinstance(value, bool):  # subclasses of the exact types below
            _bool(self, bool(value), path)
            return
        if isinstance(value, enum.Enum):
            self.out += b"e"
            _class_name(self, type(value), path)
            self.text(b"s", value.name)
            return
        if not _stdlib_registered:
            _register_stdlib()
        for base, handler in _BASES:
            if isinstance(value, base):
                self.out += b"X"
                _class_name(self, type(value), path)
                handler(self, value, path)
                return
        module = type(value).__module__ or ""
        if module == "numpy" or module.startswith("numpy."):
            _numpy(self, value, path)
            return
        if isinstance(value, types.MethodType):
            self.out += b"m"
            self.encode(value.__self__, f"{path}.__self__")
            self.text(b"s", value.__func__.__name__)
            return
        if isinstance(value, (types.BuiltinFunctionType, types.MethodWrapperType)):
            owner = getattr(value, "__self__", None)
            if owner is None or isinstance(owner, types.ModuleType):
                self.out += b"g"
                self.text(b"s", getattr(value, "__module__", None) or "")
                self.text(b"s", value.__qualname__)
            else:
                self.out += b"m"
                self.encode(owner, f"{path}.__self__")
                self.text(b"s", value.__name__)
            return
        if module.startswith("sklearn") or _is_estimator(value):
            self._encode_state(value, path, drop=("_sklearn_version",))
            return
        self._encode_state(value, path)

    def _encode_state(self, value: Any, path: str, drop: tuple[str, ...] = ()) -> None:
        if not self._enter(value):
            return
        try:
            try:
                reduced = value.__reduce_ex__(4)
            except Exception as exc:
                raise _unencodable(value, path, f"it cannot be reduced ({exc})") from None
            if isinstance(reduced, str) or not isinstance(reduced, tuple):
                # A global singleton, named by the reduce protocol.
                self.out += b"g"
                self.text(b"s", module_name(type(value)))
                self.text(b"s", str(reduced))
                return
            func, args = reduced[0], reduced[1]
            state = reduced[2] if len(reduced) > 2 else None
            listitems = list(reduced[3]) if len(reduced) > 3 and reduced[3] is not None else None
            dictitems = dict(reduced[4]) if len(reduced) > 4 and reduced[4] is not None else None
            if drop and isinstance(state, dict):
                state = {k: v for k, v in state.items() if k not in drop}
            if func is _NEWOBJ or func is _RECONSTRUCTOR:
                self.out += b"o"
                _class_name(self, type(value), path)
                self.encode(tuple(args[1:]) if func is _NEWOBJ else (), path)
            else:
                self.out += b"r"
                self.encode(func, f"{path}.__reduce__")
                self.encode(tuple(args), path)
            self.encode(state, path)
            self.encode(listitems, path)
            self.encode(dictitems, path)
        finally:
            self._leave(value)


def _unencodable(value: Any, path: str, why: str) -> UnencodableValue:
    cls = type(value)
    return UnencodableValue(
        f"{path} is a {cls.__module__}.{cls.__qualname__} that memento cannot turn into a "
        f"stable key: {why}. Give {cls.__qualname__} a __memento_key__(self) method that "
        "returns a stable, encodable value (str, numbers, tuples, dicts) identifying it."
    )


def _is_estimator(value: Any) -> bool:
    return any(c.__name__ == "BaseEstimator" for c in type(value).__mro__) and hasattr(
        value, "get_params"
    )


def _class_name(enc: Encoder, cls: type, path: str) -> None:
    module = module_name(cls)
    enc.text(b"s", module)
    enc.text(b"s", cls.__qualname__)
    if module in MAIN_MODULES:  # no file to name it by: its methods' code tells it apart
        methods = sorted(
            (name, func.__code__)
            for name, func in ((n, plain_function(m, cls)) for n, m in vars(cls).items())
            if func is not None
        )
        enc.out += b"K"
        enc.out += _pack_len(len(methods))
        for name, code in methods:
            enc.text(b"s", name)
            encode_code(enc, code)


def _none(enc: Encoder, value: Any, path: str) -> None:
    enc.out += b"N"


def _bool(enc: Encoder, value: bool, path: str) -> None:
    enc.out += b"T" if value else b"F"


def _int(enc: Encoder, value: int, path: str) -> None:
    enc.text(b"i", str(int(value)))


def _float(enc: Encoder, value: float, path: str) -> None:
    value = float(value)
    enc.text(b"f", "nan" if value != value else value.hex())


def _complex(enc: Encoder, value: complex, path: str) -> None:
    enc.out += b"j"
    _float(enc, value.real, path)
    _float(enc, value.imag, path)


def _str(enc: Encoder, value: str, path: str) -> None:
    enc.text(b"s", value)


def _bytes(enc: Encoder, value: bytes, path: str) -> None:
    enc.sized(b"b", bytes(value))


def _sequence(tag: bytes) -> Callable[[Encoder, Any, str], None]:
    def encode(enc: Encoder, value: Any, path: str) -> None:
        if not enc._enter(value):
            return
        try:
            enc.out += tag
            enc.out += _pack_len(len(value))
            for i, item in enumerate(value):
                enc.encode(item, f"{path}[{i}]")
        finally:
            enc._leave(value)

    return encode


def _dict(enc: Encoder, value: dict[Any, Any], path: str) -> None:
    if not enc._enter(value):
        return
    try:
        if all(type(k) is str for k in value):
            # The common case (parameters, settings): keys sort as text, no nested encoders.
            enc.out += b"D"
            enc.out += _pack_len(len(value))
            for k in sorted(value):
                enc.text(b"s", k)
                v = value[k]
                scalar = _SCALARS.get(type(v))
                if scalar is not None:
                    scalar(enc, v, path)
                else:
                    enc.encode(v, f"{path}[{k!r}]")
            return
        items = sorted(
            (enc.nested(k, f"{path} key {k!r}"), enc.nested(v, f"{path}[{k!r}]"))
            for k, v in value.items()
        )
        enc.out += b"d"
        enc.out += _pack_len(len(items))
        for k, v in items:
            enc.out += k
            enc.out += v
    finally:
        enc._leave(value)


def _set(enc: Encoder, value: Any, path: str) -> None:
    if not enc._enter(value):
        return
    try:
        items = sorted(enc.nested(v, f"{path} item") for v in value)
    finally:
        enc._leave(value)
    enc.out += b"S" if isinstance(value, frozenset) else b"z"
    enc.out += _pack_len(len(items))
    for item in items:
        enc.out += item


def _function(enc: Encoder, value: types.FunctionType, path: str) -> None:
    enc.out += b"u"
    module = module_name(value)
    enc.text(b"s", module)
    enc.text(b"s", value.__qualname__)
    if _is_anonymous(value) or module in MAIN_MODULES:  # no name to find it by
        if id(value) in enc._active:  # a local function that refers to itself
            enc.out += b"<"
            return
        enc._enter(value)
        try:
            encode_code(enc, value.__code__)
            closure = tuple(c.cell_contents for c in value.__closure__ or ())
            enc.encode(closure, f"{path} closure")
            enc.encode(value.__defaults__, f"{path} defaults")
            enc.encode(value.__kwdefaults__, f"{path} keyword defaults")
        finally:
            enc._leave(value)


def _is_anonymous(func: types.FunctionType) -> bool:
    """Lambdas and functions defined inside other functions are not findable by name (nor
    are functions with no file, see :func:`module_name`)."""
    return "<lambda>" in func.__qualname__ or "<locals>" in func.__qualname__


def encode_code(enc: Encoder, code: types.CodeType) -> None:
    """Write ``code``'s bytecode, names and constants (nested code objects included)."""
    enc.out += b"k"
    enc.sized(b"b", code.co_code)
    enc.encode(code.co_names, "code names")
    enc.encode(code.co_varnames, "code varnames")
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            encode_code(enc, const)
        else:
            enc.encode(const, "code constant")


def _partial(enc: Encoder, value: functools.partial[Any], path: str) -> None:
    enc.out += b"p"
    enc.encode(value.func, f"{path}.func")
    enc.encode(tuple(value.args), f"{path}.args")
    enc.encode(dict(value.keywords), f"{path}.keywords")


def _numpy(enc: Encoder, value: Any, path: str) -> None:
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            if not enc._enter(value):  # an object array may hold itself
                return
            try:
                enc.out += b"A"
                enc.text(b"s", str(value.shape))
                enc.encode(value.tolist(), path)
            finally:
                enc._leave(value)
            return
        enc.out += b"a"
        enc.text(b"s", value.dtype.str)
        enc.text(b"s", str(value.shape))
        enc.sized(b"b", np.ascontiguousarray(value).tobytes())
        return
    if isinstance(value, np.generic):
        enc.out += b"n"
        enc.text(b"s", value.dtype.str)
        if value.dtype.hasobject:
            enc.encode(value.item(), path)
        else:
            enc.sized(b"b", value.tobytes())
        return
    if isinstance(value, np.dtype):
        enc.out += b"y"
        enc.text(b"s", value.str)
        return
    if isinstance(value, np.ufunc):
        enc.out += b"U"
        enc.text(b"s", _ufunc_module(value, path))
        enc.text(b"s", value.__name__)
        return
    enc._encode_state(value, path)


_UFUNC_MODULES: dict[int, tuple[Any, str]] = {}  # id -> (the ufunc, kept alive; its module)


def _ufunc_module(value: Any, path: str) -> str:
    """The module a ufunc is imported from: its ``__module__`` (``numpy`` for numpy's own),
    else the shortest-named imported module that holds it under its name (scipy's)."""
    module = getattr(value, "__module__", None)
    if isinstance(module, str) and module:
        return module
    cached = _UFUNC_MODULES.get(id(value))
    if cached is not None and cached[0] is value:
        return cached[1]
    name = value.__name__
    # `__main__` last: a script's `from scipy.special import expit` must not name it.
    holders = sorted(
        (module_name.startswith("__"), module_name.count("."), module_name)
        for module_name, module_object in list(sys.modules.items())
        if getattr(module_object, name, None) is value
    )
    if not holders:
        raise UnencodableValue(
            f"{path} is the numpy ufunc {name!r}, which memento cannot turn into a stable key: "
            "no imported module holds it under its name (np.frompyfunc makes such ufuncs from "
            "a Python function; pass that function instead, or an object with a "
            "__memento_key__(self) method)"
        )
    _UFUNC_MODULES[id(value)] = (value, holders[0][2])
    return holders[0][2]


def _pattern(enc: Encoder, value: re.Pattern[Any], path: str) -> None:
    enc.out += b"P"
    enc.encode(value.pattern, f"{path}.pattern")
    _int(enc, value.flags, path)


def _as_text(enc: Encoder, value: Any, path: str) -> None:
    enc.text(b"s", str(value))


def _path(enc: Encoder, value: Any, path: str) -> None:
    enc.text(b"s", value.as_posix() if hasattr(value, "as_posix") else str(value))


_EXACT: dict[type, Callable[[Encoder, Any, str], None]] = {
    type(None): _none,
    bool: _bool,
    int: _int,
    float: _float,
    complex: _complex,
    str: _str,
    bytes: _bytes,
    bytearray: _bytes,
    tuple: _sequence(b"t"),
    list: _sequence(b"l"),
    dict: _dict,
    set: _set,
    frozenset: _set,
    types.FunctionType: _function,
    functools.partial: _partial,
    range: lambda enc, v, p: enc.text(b"R", f"{v.start}:{v.stop}:{v.step}"),
    types.ModuleType: lambda enc, v, p: enc.text(b"M", v.__name__),
    re.Pattern: _pattern,
}

_SCALARS = {t: _EXACT[t] for t in (type(None), bool, int, float, str)}

# Subclasses of builtins and a few standard types, encoded as class + content.
_BASES: list[tuple[type, Callable[[Encoder, Any, str], None]]] = [
    (int, _int),
    (float, _float),
    (str, _str),
    (bytes, _bytes),
    (tuple, _sequence(b"t")),
    (list, _sequence(b"l")),
    (dict, _dict),
]


_stdlib_registered = False


def _register_stdlib() -> None:
    """Add datetime, Decimal, Fraction, UUID and paths, on first need (keeps imports light)."""
    global _stdlib_registered
    _stdlib_registered = True
    import datetime
    import decimal
    import fractions
    import pathlib
    import uuid

    by_repr: tuple[type, ...] = (
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
    )
    for cls in by_repr:
        _BASES.insert(0, (cls, lambda enc, v, p: enc.text(b"s", repr(v))))
    by_text: tuple[type, ...] = (decimal.Decimal, fractions.Fraction, uuid.UUID)
    for cls in by_text:
        _BASES.insert(0, (cls, _as_text))
    _BASES.insert(0, (pathlib.PurePath, _path))


def encode(value: Any, path: str = "value") -> bytes:
    """The canonical, type-tagged encoding of ``value``.

    Raises :class:`~memento.exceptions.UnencodableValue` when a part of it cannot be encoded.
    """
    enc = Encoder()
    try:
        enc.encode(value, path)
    except RecursionError:
        raise _too_deep(value, path) from None
    return bytes(enc.out)


def _too_deep(value: Any, path: str) -> UnencodableValue:
    return _unencodable(value, path, "it is nested too deeply to encode")


def digest(data: bytes) -> str:
    """The hash used for keys: SHA-256, hex, truncated to 128 bits."""
    return hashlib.sha256(data).hexdigest()[:32]


def experiment_name(func: Any) -> str:
    """A readable identity of an experiment callable: ``module:qualname``, the module as
    :func:`module_name` names it (``a:experiment`` for ``python a.py``)."""
    target = func
    while isinstance(target, functools.partial):
        target = target.func
    if isinstance(target, types.MethodType):
        owner = target.__self__
        owner_cls = owner if isinstance(owner, type) else type(owner)
        return f"{module_name(owner_cls)}:{owner_cls.__qualname__}.{target.__func__.__name__}"
    if not hasattr(target, "__qualname__"):
        target = type(target)
    return f"{module_name(target) or '?'}:{target.__qualname__}"


def experiment_identity(func: Any, version: str | None = None) -> bytes:
    """The encoded identity of an experiment: its name, its version, and for lambdas, local
    functions, partials, bound methods and callable objects, what distinguishes them."""
    if not callable(func):
        raise TypeError(f"The experiment must be callable as func(context, config), got {func!r}")
    enc = Encoder()
    enc.text(b"s", f"memento-key-v{KEY_SCHEME_VERSION}")
    enc.encode(version, "version")
    if isinstance(func, type):
        enc.out += b"c"
        _class_name(enc, func, "experiment")
    elif isinstance(func, (types.FunctionType, functools.partial, types.MethodType)):
        enc.encode(func, "experiment")
    else:
        # A callable object: its class and state.
        enc.out += b"C"
        enc.encode(func, "experiment")
    return bytes(enc.out)


class KeyMaker:
    """Computes keys for many configs of one experiment, encoding the shared parts once.

    The key of a config is the hash of the encoded experiment identity, the hash of the
    encoded settings, and the encoded parameters (the same bytes as ``encode(params)``).
    Encodings of repeated simple parameter values are memoised: a grid reuses few values.
    """

    def __init__(self, func: Any, version: str | None = None) -> None:
        self._prefix = experiment_identity(func, version)
        self._settings_cache: tuple[dict[str, Any], Any] | None = None
        self._chunks: dict[tuple[str, type, Any], bytes] = {}

    @property
    def identity(self) -> str:
        """The hash of the experiment's encoded identity (name, version, code of lambdas)."""
        return digest(self._prefix)

    def _base(self, settings: dict[str, Any]) -> Any:
        cached = self._settings_cache
        if cached is not None and cached[0] is settings:
            return cached[1]
        base = hashlib.sha256(self._prefix)
        base.update(hashlib.sha256(encode(settings, "settings")).digest())
        self._settings_cache = (settings, base)
        return base

    def key(self, params: dict[str, Any], settings: dict[str, Any]) -> str:
        """The key of one config: hash of identity + settings + parameters."""
        h = self._base(settings).copy()
        if not all(type(k) is str for k in params):
            h.update(self._encode(params))
            return str(h.hexdigest()[:32])
        h.update(b"D" + _pack_len(len(params)))
        chunks = self._chunks
        for name in sorted(params):
            value = params[name]
            t = type(value)
            # Floats are left out: 0.0 == -0.0 and nan != nan would confuse the memo.
            if t is int or t is str or t is bool or value is None:
                memo = (name, t, value)
                chunk = chunks.get(memo)
                if chunk is None:
                    chunk = chunks[memo] = self._item(name, value, params)
            else:
                chunk = self._item(name, value, params)
            h.update(chunk)
        return str(h.hexdigest()[:32])

    def _item(self, name: str, value: Any, params: dict[str, Any]) -> bytes:
        enc = Encoder()
        enc.text(b"s", name)
        try:
            enc.encode(value, f"config[{name!r}]")
        except UnencodableValue as exc:
            raise _name_parameter(exc, params) from None
        except RecursionError:
            raise _name_parameter(_too_deep(value, f"config[{name!r}]"), params) from None
        return bytes(enc.out)

    def _encode(self, params: dict[str, Any]) -> bytes:
        try:
            return encode(params, "config")
        except UnencodableValue as exc:
            raise _name_parameter(exc, params) from None


def _name_parameter(exc: UnencodableValue, params: dict[str, Any]) -> UnencodableValue:
    message = str(exc)
    for name in params:
        token = f"config[{name!r}]"
        if message.startswith(token):
            message = f"Parameter {name!r}: " + message.replace(token, "its value", 1)
            break
    return UnencodableValue(message)


__all__ = [
    "FINGERPRINT_VERSION",
    "KEY_SCHEME_VERSION",
    "Encoder",
    "KeyMaker",
    "digest",
    "encode",
    "encode_code",
    "experiment_identity",
    "experiment_name",
]
