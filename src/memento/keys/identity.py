"""Naming what a script defines: the module a function or class is identified by in keys,
experiment names and fingerprints.

A function or class of ``__main__`` (a script run as ``python a.py``, or ``__mp_main__`` in a
spawned worker) is named by the module its file would be imported as, so ``python a.py`` and
``import a`` agree and two scripts never do. One defined where there is no file (a notebook
cell, ``python -c``, ``exec``, the REPL) keeps ``__main__``; :mod:`memento.keys.encoding` then
tells it apart by its code, as it does lambdas.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

#: The module names of a script: run (``python a.py``) and re-imported in a spawned worker.
MAIN_MODULES = frozenset({"__main__", "__mp_main__"})
#: The folder of ipykernel's cell files (``/tmp/ipykernel_1234/5678.py``), which a notebook's
#: functions name as their file although it is not one (it exists only while debugging).
_IPYKERNEL_CELLS = re.compile(r"ipykernel_\d+")
#: The file name cloudpickle gives the code it sends by value.
_CLOUDPICKLED = "<dynamic-code>"
#: Set by :func:`main_as_script_of`: the script every function and class of ``__main__`` is from.
_MAIN_SCRIPT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "memento_main_script", default=None
)


def module_name(obj: Any) -> str:
    """The module a function or class is named by in keys and experiment names.

    Its ``__module__``, except for one defined in a script (``__main__``, or ``__mp_main__``
    in a spawned worker): that is named by the module its file would be imported as (the
    file's name, inside the packages around it), so ``python exps/a.py``, ``cd exps && python
    a.py``, a symlink to it and ``import a`` all name it ``a``, and two scripts never share a
    name unless they share a file name (as two modules would). One defined where there is no
    file (``python -c``, the REPL, a notebook, ``exec``) stays ``__main__``; keys tell those
    apart by their code.

    Example::

        module_name(experiment)  # "a" when `python a.py` defined it, also in the workers
    """
    module = getattr(obj, "__module__", None) or ""
    if module not in MAIN_MODULES:
        return module
    file = _script_file(obj)
    return module if file is None else _importable_name(file)


def code_target(func: Any) -> Any:
    """The function or class whose code ``func`` runs: through partials, bound methods and
    callable objects (their class)."""
    target = func
    while isinstance(target, functools.partial):
        target = target.func
    if isinstance(target, types.MethodType):
        target = target.__func__
    if not isinstance(target, (type, types.FunctionType)):
        target = type(target)
    return target


@contextlib.contextmanager
def main_as_script_of(func: Any) -> Iterator[None]:
    """Within it, the functions and classes of ``__main__`` count as defined in the script
    that defined ``func`` (nothing changes when no script did), wherever their own
    ``__file__`` says they come from.

    For values an earlier run of the script pickled by value, from another path or under
    another file name: :mod:`memento.view.import_legacy` keys memento-ml 1.2's results with it, so
    the keys are those the script computes when it runs.

    Example::

        with main_as_script_of(experiment):
            key = KeyMaker(experiment).key(old_config.asdict(), old_config.settings)
    """
    target = code_target(func)
    file = _script_file(target) if target.__module__ in MAIN_MODULES else None
    token = _MAIN_SCRIPT.set(file) if file is not None else None
    try:
        yield
    finally:
        if token is not None:
            _MAIN_SCRIPT.reset(token)


def _script_file(obj: Any) -> str | None:
    """The file of the script that defined a function or class of ``__main__``, else None."""
    if isinstance(obj, type):
        for member in vars(obj).values():
            func = plain_function(member, obj)
            file = None if func is None else _script_file(func)
            if file is not None:
                return file
        # No method says (a class without methods, or only generated ones, as a dataclass's).
        return _holder_file(obj)
    seen: set[int] = set()
    func = obj
    while isinstance(func, types.FunctionType) and id(func) not in seen:
        seen.add(id(func))
        if func.__globals__.get("__name__") in MAIN_MODULES:
            return _code_file(func.__code__, func.__globals__)
        # Defined elsewhere, its `__module__` copied from the function it wraps
        # (`functools.wraps`): that one says.
        func = getattr(func, "__wrapped__", None)
    return _holder_file(obj)


def _code_file(code: types.CodeType, scope: dict[str, Any]) -> str | None:
    """The script file of code run in the namespace ``scope`` of a ``__main__``, else None."""
    where = code.co_filename
    # The globals' __file__ is the script's (cloudpickle carries it along); there is none in a
    # notebook or `python -c`. Code compiled from a string (`exec`, dataclass methods) says
    # `<string>`, as `<stdin>` and IPython's `<ipython-input-...>` say; `<dynamic-code>` only
    # says that cloudpickle sent the code by value, and dropped its file name.
    file = _MAIN_SCRIPT.get() or scope.get("__file__")
    if not isinstance(file, str) or not file:
        return None
    if where.startswith("<") and where != _CLOUDPICKLED:
        return None
    if _IPYKERNEL_CELLS.fullmatch(os.path.basename(os.path.dirname(where))):
        return None
    return file


def _holder_file(obj: Any) -> str | None:
    """The file of ``obj``'s module, if that module holds ``obj`` under its qualified name
    (so defined it: a worker's own ``__main__`` does not hold what was sent to it)."""
    if _MAIN_SCRIPT.get() is not None:
        return _MAIN_SCRIPT.get()
    module = sys.modules.get(obj.__module__)
    held: Any = module
    for part in obj.__qualname__.split("."):
        held = getattr(held, part, None)
    file = getattr(module, "__file__", None) if held is obj else None
    return file if isinstance(file, str) and file else None


def plain_function(member: Any, cls: type) -> types.FunctionType | None:
    """The function a class attribute holds, unwrapped (methods, static and class methods,
    property getters), if it was defined in the class's module; else None."""
    if isinstance(member, property):
        member = member.fget
    member = getattr(member, "__func__", member)
    if isinstance(member, types.FunctionType) and member.__module__ == cls.__module__:
        return member
    return None


@functools.lru_cache(maxsize=256)
def _importable_name(file: str) -> str:
    """The name the module in ``file`` has when imported: its file name without the suffix,
    after the names of the packages (folders with ``__init__.py``) it is in."""
    folder, base = os.path.split(os.path.realpath(file))
    stem = os.path.splitext(base)[0]
    parts = [] if stem == "__init__" else [stem]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        if not package:
            break
        parts.insert(0, package)
    if not parts or parts == ["__main__"]:  # `python folder/` runs folder/__main__.py
        parts.insert(0, os.path.basename(folder) or "__main__")
    return ".".join(parts)


__all__ = ["MAIN_MODULES", "code_target", "main_as_script_of", "module_name", "plain_function"]
