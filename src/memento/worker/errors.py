"""The one exception wire format: in a worker an exception becomes data
(:func:`describe_error`); in the driver that data becomes the exception again
(:func:`rebuild_error`), or an :class:`~memento.exceptions.ExperimentError` standing in for it.
"""

from __future__ import annotations

import os
import pickle
import re
import traceback
from typing import Any

from memento.exceptions import ExperimentError

#: A frame line of a formatted traceback: ``  File "/path/train.py", line 42, in train``.
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)', re.MULTILINE)


def describe_error(exc: BaseException) -> tuple[str, str, str, bytes | None]:
    """In the worker: an exception as data for the driver: type name, message, traceback text,
    and the pickled exception (``None`` when it would not come back in one piece)."""
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception as inner:  # a broken __str__ is handled there; anything stranger here
        text = f"{type(exc).__qualname__}: (the traceback could not be formatted: {inner!r})\n"
    try:
        import cloudpickle

        data: bytes | None = cloudpickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)  # type: ignore[arg-type]  # one that pickles but cannot be rebuilt
    except Exception:
        data = None
    return type(exc).__qualname__, safe_str(exc), text, data


def error_kind(exc: BaseException) -> str:
    """The kind of failure an exception raised by an experiment (or by memento around it in
    the worker) stands for: ``oom`` for ``MemoryError`` and a CUDA out-of-memory error (the
    ``OutOfMemoryError`` of PyTorch and others), the class's own kind for memento's errors
    (an inline timeout is an :class:`~memento.exceptions.ExperimentTimeout`), else ``error``.
    """
    kind = getattr(exc, "kind", None)
    if isinstance(exc, ExperimentError) and isinstance(kind, str):
        return kind
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "oom"
    return "error"


def raised_at(exc: BaseException) -> str:
    """Where ``exc`` was raised: ``"train.py:42"``, the file name and line of the innermost
    frame of its traceback (``""`` without one)."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"


def where_in_traceback(text: str | None) -> str:
    """:func:`raised_at` read back from a traceback's text (a stored failure's)."""
    frames = _FRAME.findall(text or "")
    if not frames:
        return ""
    path, line = frames[-1]
    return f"{os.path.basename(path)}:{line}"


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in saying so when the exception's ``__str__`` itself raises."""
    try:
        return str(exc)
    except Exception as inner:
        return f"<str() of the {type(exc).__qualname__} failed: {type(inner).__name__}: {inner}>"


def rebuild_error(
    pickled: bytes | None, exc_type: str, message: str, text: str, **attributes: Any
) -> BaseException:
    """In the driver: the worker's exception back (or an :class:`ExperimentError` standing in
    for it), with ``attributes`` (``config``, ``traceback``, ...) attached."""
    error: BaseException | None = None
    if pickled is not None:
        try:
            import cloudpickle

            error = cloudpickle.loads(pickled)
            str(error)  # one whose __str__ raises would break every message that shows it
            if isinstance(error, SystemExit) and error.code is None and error.args:
                # tblib's pickling (installed by dask.distributed) rebuilds exceptions
                # without calling __init__, which is what sets SystemExit.code.
                error.code = error.args[0] if len(error.args) == 1 else str(error.args)
        except Exception:
            error = None
    if error is None:
        # Stands in for an exception that cannot come back: its type name leads the message.
        error = ExperimentError(f"{exc_type}: {message}", exc_type=exc_type, traceback=text)
    return attach(error, **attributes)


def attach(error: BaseException, **attributes: Any) -> BaseException:
    """Set ``attributes`` on ``error``; an exception that refuses them (``__slots__``) is
    wrapped in an :class:`ExperimentError` that carries them instead."""
    try:
        for name, value in attributes.items():
            setattr(error, name, value)
    except (AttributeError, TypeError):
        wrapped = ExperimentError(
            f"{type(error).__qualname__}: {error}",
            exc_type=type(error).__qualname__,
            traceback=attributes.get("traceback", ""),
            config=attributes.get("config"),
        )
        for name, value in attributes.items():
            setattr(wrapped, name, value)
        return wrapped
    return error


__all__ = [
    "attach",
    "describe_error",
    "error_kind",
    "raised_at",
    "rebuild_error",
    "safe_str",
    "where_in_traceback",
]
