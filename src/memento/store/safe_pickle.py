"""Reading pickles from a store without running code from it.

A pickle can call any importable function while it loads, so a store someone else sent could
run code as soon as it is opened. Reading a store (``memento status``, ``results``, ``show``,
``report``, :func:`memento.open_results`) therefore decodes values with :func:`load_plain`:
plain values (numbers, strings, bytes, ``None``, booleans, and lists, tuples, dicts and sets
of them) come back as they are; anything else becomes a :class:`StoredValue` that names its
type and size, read from the pickle's opcodes without running it. Loading such a value in
full is an explicit choice (:meth:`StoredValue.load`, ``load_values=True``, ``--load-values``).
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from memento._util.text import format_bytes

#: The only globals a plain value needs (protocols 2-5 have opcodes for the rest).
_ALLOWED = {("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex")}


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside :data:`_ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent id")


class StoredValue:
    """A stored value that was not loaded, because loading it could run code from the store.

    ``repr`` is ``<pickled sklearn.svm.SVC, 12.3 KiB>``; :meth:`load` unpickles it (only
    for a store you trust: a pickle can run any code while it loads).
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.type_name = pickled_type(data)
        self.size = len(data)

    def load(self) -> Any:
        """Unpickle the value, running whatever code its pickle names."""
        import cloudpickle

        return cloudpickle.loads(self.data)

    def __repr__(self) -> str:
        return f"<pickled {self.type_name}, {format_bytes(self.size)}>"

    __str__ = __repr__


def load_plain(data: bytes) -> Any:
    """``data`` unpickled if it holds only plain values, else a :class:`StoredValue`."""
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except Exception:
        return StoredValue(data)


def pickled_type(data: bytes) -> str:
    """The first class or function a pickle names (``sklearn.svm.SVC``), found by reading
    its opcodes; nothing is imported or run. ``"object"`` when no name can be read."""
    import pickletools  # on first use: most runs never read a pickle's type

    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
                module, _, name = arg.partition(" ")
                found = _interesting(module, name)
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found = _interesting(strings[-2], strings[-1])
            else:
                if isinstance(arg, str):
                    strings.append(arg)
                continue
            if found:
                return found
    except Exception:
        pass
    return "object"


def _interesting(module: str, name: str) -> str | None:
    """``module.name``, unless it is pickling machinery rather than the value's type."""
    if module in ("copyreg", "copy_reg", "_codecs", "builtins", "__builtin__"):
        return None
    if module.startswith("cloudpickle"):
        return None
    return f"{module}.{name}"


__all__ = ["StoredValue", "load_plain", "pickled_type"]
