"""Code fingerprints: which code computed a stored result, so that results computed by older
code can be reported as stale (see :func:`code_fingerprint`)."""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import os
import site
import sys
import sysconfig
import textwrap
import types
from collections.abc import Iterable
from typing import Any

from memento.keys.encoding import FINGERPRINT_VERSION, Encoder, encode_code
from memento.keys.identity import code_target, module_name


def code_fingerprint(func: Any) -> str:
    """A hash of the experiment's code and of the code it calls from the user's own modules.

    Stored beside each result, so that results computed by older code are reported as stale
    (``Memento.plan`` and ``memento status``). What it covers:

    - the experiment itself: its source text (for a partial or bound method, the function
      underneath; for a class or a callable object, the whole class body);
    - every function and class it refers to by a global name (``helper(...)``,
      ``Model(...)``, ``utils.helper(...)``), found by walking the names its bytecode uses
      (nested functions, lambdas and comprehensions included) and looking them up in the
      function's module; also the functions in its closure and default arguments, the base
      classes and methods of covered classes, and through decorators (``__wrapped__``);
    - recursively, what those refer to in turn, at most 4 references deep and 200 objects
      in all;
    - but only *user code*: objects whose module file is not in the standard library or in
      an installed package (site-packages / dist-packages, the ``sysconfig`` install paths),
      and not memento itself. Code in ``__main__``, a notebook, or a project installed in
      editable mode counts as user code.

    It does not cover module-level constants and data, code reached only through attributes
    of objects (``self.helper()`` inside a class is covered through the class body), files
    read at run time, or installed packages (bump ``Memento(version=...)`` for those).

    The source is hashed as its syntax tree, without docstrings: editing comments,
    docstrings, blank lines or formatting (or moving a function) does not mark results stale.
    When the source is unavailable (``python -c``, some notebooks) the bytecode is hashed
    instead. The result is deterministic: equal code gives an equal fingerprint in every
    process.
    """
    target = _target(func)
    installed = _installed_roots()
    entries = _covered(target, installed)
    root = _source(target)
    if not root and not entries:
        return ""
    return _combine(_label(target), root, entries)


#: How far references are followed from the experiment, and how many objects at most.
MAX_DEPTH, MAX_OBJECTS = 4, 200


def _target(func: Any) -> Any:
    """The function or class whose code ``func`` runs: through partials, bound methods,
    callable objects (their class) and decorators (``__wrapped__``)."""
    target = code_target(func)
    try:
        target = inspect.unwrap(target)
    except ValueError:  # a cycle of __wrapped__
        pass
    return target


def _installed_roots() -> tuple[str, ...]:
    """The folders of the standard library and of installed packages, each ending in ``/``."""
    roots: set[str] = set()
    for scheme_path in ("stdlib", "platstdlib", "purelib", "platlib"):
        for variables in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
            try:
                roots.add(sysconfig.get_paths(vars=variables)[scheme_path])
            except (KeyError, ValueError):
                pass
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # site in some embedded interpreters
        pass
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)


def _is_user_code(obj: Any, installed: tuple[str, ...]) -> bool:
    """Whether ``obj`` (a module, function or class) lives outside the standard library,
    installed packages and memento itself."""
    if isinstance(obj, types.ModuleType):
        name = obj.__name__
    else:
        name = getattr(obj, "__module__", None) or ""
    if name in sys.builtin_module_names or name.split(".")[0] == "memento":
        return False
    path = getattr(sys.modules.get(name), "__file__", None)
    if not path:
        code = getattr(obj, "__code__", None)
        path = code.co_filename if code is not None else None
    if not path or path.startswith("<"):
        return name == "__main__"  # python -c, the REPL, exec in a script
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not real.startswith(installed)


def _source(obj: Any) -> bytes:
    """What is hashed of ``obj``: its normalised source, else its bytecode."""
    try:
        return normalised(inspect.getsource(obj)).encode("utf-8")
    except (OSError, TypeError):
        pass
    enc = Encoder()
    if isinstance(obj, types.FunctionType):
        encode_code(enc, obj.__code__)
    else:  # a class without source: the bytecode of its methods
        for name, member in sorted(vars(obj).items()):
            inner = getattr(member, "__func__", member)
            if isinstance(inner, types.FunctionType):
                enc.text(b"s", name)
                encode_code(enc, inner.__code__)
    return bytes(enc.out)


def _code_names(code: types.CodeType) -> list[str]:
    """The global and attribute names ``code`` uses, nested code objects included."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_code_names(const))
    return names


def _candidate(value: Any) -> Any:
    """The function or class a referenced value stands for, else None."""
    while isinstance(value, functools.partial):
        value = value.func
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    try:
        value = inspect.unwrap(value)
    except Exception:
        pass
    return value if isinstance(value, (type, types.FunctionType)) else None


def _functions_of(obj: Any) -> list[types.FunctionType]:
    """``obj`` itself for a function; a class's methods and property accessors, by name."""
    if not isinstance(obj, type):
        return [obj]
    functions: list[types.FunctionType] = []
    for _, member in sorted(vars(obj).items()):
        if isinstance(member, property):
            members = [member.fget, member.fset, member.fdel]
        else:
            members = [getattr(member, "__func__", member)]
        functions.extend(m for m in members if isinstance(m, types.FunctionType))
    return functions


def _module_attributes(
    names: list[str], modules: list[types.ModuleType], installed: tuple[str, ...]
) -> list[Any]:
    """``pkg.module.helper(...)``: the ``names`` looked up in the user modules named (and in
    the user modules those hold, breadth first)."""
    found: list[Any] = []
    seen: set[str] = set()
    while modules:
        module = modules.pop(0)
        if module.__name__ in seen or not _is_user_code(module, installed):
            continue
        seen.add(module.__name__)
        for name in names:
            value = getattr(module, name, None)
            if isinstance(value, types.ModuleType):
                modules.append(value)
            elif value is not None:
                found.append(value)
    return found


def _captured(function: types.FunctionType) -> list[Any]:
    """The values in ``function``'s closure and default arguments."""
    found: list[Any] = []
    for cell in function.__closure__ or ():
        try:
            found.append(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
    found.extend(function.__defaults__ or ())
    found.extend((function.__kwdefaults__ or {}).values())
    return found


def _references(obj: Any, installed: tuple[str, ...]) -> list[Any]:
    """What ``obj`` refers to, in a deterministic order (unfiltered)."""
    found: list[Any] = list(obj.__bases__) if isinstance(obj, type) else []
    for function in _functions_of(obj):
        names = _code_names(function.__code__)
        scope = function.__globals__
        modules = [v for v in (scope.get(n) for n in names) if isinstance(v, types.ModuleType)]
        found.extend(scope[name] for name in names if name in scope)
        found.extend(_module_attributes(names, modules, installed))
        found.extend(_captured(function))
    return found


def _label(obj: Any) -> str:
    # Named as keys name it: a script's function is "a:f" whether run or imported.
    return f"{module_name(obj) or None}:{getattr(obj, '__qualname__', '?')}"


def _covered(target: Any, installed: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(label, source hash)`` of the user code ``target`` reaches, breadth first, at most
    :data:`MAX_DEPTH` references deep and :data:`MAX_OBJECTS` objects in all."""
    entries: list[tuple[str, str]] = []
    visited = {id(target)}
    frontier = [target]
    for _ in range(MAX_DEPTH):
        following: list[Any] = []
        for obj in frontier:
            if obj is not target and not _is_user_code(obj, installed):
                continue
            for value in _references(obj, installed):
                ref = _candidate(value)
                if ref is None or id(ref) in visited or len(visited) >= MAX_OBJECTS:
                    continue
                visited.add(id(ref))
                if _is_user_code(ref, installed):
                    entries.append((_label(ref), hashlib.sha256(_source(ref)).hexdigest()))
                    following.append(ref)
        frontier = following
    return entries


def _combine(label: str, root: bytes, entries: list[tuple[str, str]]) -> str:
    """``v3:<overall hash>;<label>=<hash>,...``: the target first, then the rest by label."""
    data = b"\0".join(
        [label.encode(), root] + [f"{name}={digest}".encode() for name, digest in sorted(entries)]
    )
    # Each function's own hash rides along, so a stale warning can name what changed.
    parts = [(label, hashlib.sha256(root).hexdigest()), *sorted(entries)]
    per_function = ",".join(f"{name}={digest[:12]}" for name, digest in parts)
    overall = hashlib.sha256(data).hexdigest()[:32]
    return f"v{FINGERPRINT_VERSION}:{overall};{per_function}"


def normalised(source: str) -> str:
    """``source`` as a dump of its syntax tree without docstrings, line numbers or comments,
    so edits that cannot change what the code computes give equal text; ``source`` itself
    when it does not parse alone (a lambda cut out of a longer line)."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return source
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            first = body[0] if body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def is_stale(stored: str | None, current: str | None) -> bool:
    """Whether a result stored with fingerprint ``stored`` was computed by code other than
    ``current``'s. Unknown fingerprints, and those of another scheme version (``v2:...``
    against ``v3:...``, which differ whatever the code), are never stale.

    A fingerprint is ``v3:<overall hash>;<function>=<hash>,...``: only the overall hash is
    compared; the per-function hashes say which functions changed (:func:`changed_functions`).
    """
    if not stored or not current or stored == current:
        return False
    old, new = stored.split(";", 1)[0], current.split(";", 1)[0]
    return old != new and old.split(":", 1)[0] == new.split(":", 1)[0]


def _functions(fingerprint: str) -> dict[str, str]:
    _, _, listing = fingerprint.partition(";")
    pairs = (item.rpartition("=") for item in listing.split(",") if "=" in item)
    return {name: digest for name, _, digest in pairs}


def changed_functions(stored: Iterable[str | None], current: str) -> list[str]:
    """The functions (``module:qualname``) whose code differs between ``current`` and any of
    the ``stored`` fingerprints, added and removed ones included; sorted. Fingerprints of
    another scheme version, which carry no per-function hashes, add nothing."""
    now = _functions(current)
    changed: set[str] = set()
    for fingerprint in set(stored):
        if fingerprint and is_stale(fingerprint, current):
            before = _functions(fingerprint)
            changed.update(n for n in before.keys() | now.keys() if before.get(n) != now.get(n))
    return sorted(changed)


def stale_message(count: int, experiment: str, stored: Iterable[str | None], current: str) -> str:
    """The warning for ``count`` stored results of ``experiment`` computed by older code,
    naming the functions that changed since (from their ``stored`` fingerprints)."""
    names = changed_functions(stored, current)
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    what = f" (changed since: {shown})" if names else ""
    return (
        f"{count} stored result(s) of {experiment} were computed by an older version of its "
        f"code{what} and are reused; pass on_code_change='rerun' to recompute them, or "
        "'ignore' to silence this"
    )


__all__ = [
    "FINGERPRINT_VERSION",
    "changed_functions",
    "code_fingerprint",
    "is_stale",
    "normalised",
    "stale_message",
]
