"""What is installed: each top-level module's distributions and each distribution's version,
read once per process from the ``.dist-info`` and ``.egg-info`` folders on ``sys.path``. Used by
a run's provenance (the packages its experiments imported) and by the store's pickles (the
versions of the libraries a value's types come from)."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterable

#: The distribution memento itself is installed as.
OWN_DISTRIBUTION = "memento-grid"


def top_level_names(module_names: Iterable[str]) -> set[str]:
    """Top-level package names, without private (leading underscore) and standard library
    ones: only those can belong to an installed distribution worth recording."""
    tops = {name.partition(".")[0] for name in module_names}
    return {n for n in tops if n and not n.startswith("_") and n not in sys.stdlib_module_names}


_installed_lock = threading.Lock()
#: (top-level module -> distribution names, distribution name -> version), once per process.
_installed_cache: tuple[dict[str, list[str]], dict[str, str]] | None = None


def _new_lock_in_child() -> None:
    """A forked child gets a lock of its own: the parent's collector thread may hold this one
    at the moment of the fork, and no thread would ever release it in the child (a worker's
    first pickled value would wait forever)."""
    global _installed_lock
    _installed_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _installed() -> tuple[dict[str, list[str]], dict[str, str]]:
    """What is installed, read once per process (it does not change during a run): each
    top-level module's distributions, and each distribution's version, the first on
    ``sys.path`` winning as for an import.

    Read from the ``.dist-info`` and ``.egg-info`` folders directly rather than by
    ``importlib.metadata`` (``packages_distributions()`` plus the versions take ~0.13 s of
    CPU here, this ~15 ms): a run of 2,000 trivial experiments takes ~0.25 s, and the thread
    competes with the driver for the GIL. It also imports nothing, which matters: a worker
    forked while this thread is halfway through an import (``importlib.metadata`` imports
    ``zipfile``, ``email``, ``csv``...) inherits that module's lock held by a thread that does
    not exist in the child, and hangs on the child's first import of the same module.
    """
    global _installed_cache
    with _installed_lock:
        if _installed_cache is None:
            _installed_cache = _scan(sys.path)
        return _installed_cache


def _scan(path: Iterable[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The modules and versions of the distributions installed in the folders of ``path``."""
    modules: dict[str, list[str]] = {}
    versions: dict[str, str] = {}
    seen: set[str] = set()
    for folder in path:
        for info in _info_folders(folder or "."):
            found = _name_and_version(info)
            if found is None or _normalized(found[0]) in seen:
                continue
            name, version = found
            seen.add(_normalized(name))
            versions[name] = version
            for top in _top_levels(info):
                modules.setdefault(top, []).append(name)
    return modules, versions


def _info_folders(folder: str) -> list[str]:
    """The metadata folders of the distributions installed in ``folder``, in name order (as
    ``importlib.metadata`` does not promise one either, any fixed order will do)."""
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(_INFO_SUFFIXES))
    except OSError:  # a missing folder, a zip file on sys.path...
        return []
    return [
        os.path.join(folder, name) for name in names if os.path.isdir(os.path.join(folder, name))
    ]


_INFO_SUFFIXES = (".dist-info", ".egg-info")
_NORMALIZE = re.compile(r"[-_.]+")


def _normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them: ``PyYAML`` and ``pyyaml`` are one."""
    return _NORMALIZE.sub("-", name).lower()


def _name_and_version(info: str) -> tuple[str, str] | None:
    """``Name`` and ``Version`` from the header of the folder's ``METADATA`` (``PKG-INFO``
    for an egg), which keeps the project's spelling; ``None`` when unreadable."""
    name = version = None
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(info, filename), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.strip():
                        break  # the end of the header
                    key, _, value = line.partition(":")
                    if key == "Name" and name is None:
                        name = value.strip()
                    elif key == "Version" and version is None:
                        version = value.strip()
                    if name and version:
                        return name, version
        except OSError:
            continue
    return None


def _top_levels(info: str) -> set[str]:
    """The top-level modules of a distribution: its ``top_level.txt`` when it has one, else
    the first component of each file listed in its ``RECORD`` (what
    ``importlib.metadata.packages_distributions()`` reads too)."""
    try:
        with open(os.path.join(info, "top_level.txt"), encoding="utf-8", errors="replace") as f:
            return {line.strip() for line in f if line.strip()}
    except OSError:
        pass
    try:
        with open(os.path.join(info, "RECORD"), encoding="utf-8", errors="replace") as f:
            record = f.read()
    except OSError:
        return set()
    return record_top_levels(record)


def record_top_levels(record: str) -> set[str]:
    """The top-level modules the files of a ``RECORD`` text install: ``numpy/core/x.py`` ->
    ``numpy``, ``six.py`` -> ``six``; metadata (``*.dist-info``), ``*.data``, scripts and
    files outside the folder (``../../bin/x``) name none.

    Each line's text before its first ``/`` is taken in one set comprehension and only the
    few distinct ones are looked at: a venv's ``RECORD`` files hold tens of thousands of lines,
    and parsing each one was most of the scan's ~40 ms of CPU (which a run's provenance thread
    takes from the driver, GIL-bound).

    >>> sorted(record_top_levels("six.py,sha256=x,1\npkg/a.py,,\npkg-1.0.dist-info/RECORD,,\n"))
    ['pkg', 'six']
    """
    lines = record.splitlines()
    files = {line for line in lines if "/" not in line}  # no folder: six.py, scripts...
    tops: set[str] = set()
    for line in files:
        path = line.split(",", 1)[0].strip().strip('"')
        if path.endswith(_MODULE_FILES) and path.partition(".")[0]:
            tops.add(path.partition(".")[0])
    for head in {line.partition("/")[0] for line in lines} - files:
        if "," in head:  # a quoted path with a comma before its "/": read as the file "a
            path = head.split(",", 1)[0].strip().strip('"')
            if path.endswith(_MODULE_FILES) and path.partition(".")[0]:
                tops.add(path.partition(".")[0])
            continue
        first = head.strip().lstrip('"')
        if first and first != ".." and not first.endswith((".dist-info", ".egg-info", ".data")):
            tops.add(first)
    return tops


_MODULE_FILES = (".py", ".pyc", ".so", ".pyd")


def distributions(module_names: Iterable[str]) -> dict[str, str]:
    """``{distribution name: version}`` for the top-level modules, skipping the standard
    library (``sys.stdlib_module_names``) and modules with no distribution; memento's own
    distribution (``memento-grid``) included when ``memento`` is among them."""
    names = top_level_names(module_names)
    modules, versions = _installed()
    found: dict[str, str] = {}
    for module in names:
        for dist in modules.get(module, ()):
            if dist in versions:
                found[dist] = versions[dist]
    if "memento" in names and OWN_DISTRIBUTION in versions:
        found.setdefault(OWN_DISTRIBUTION, versions[OWN_DISTRIBUTION])  # editable installs
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def installed() -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each top-level module's distributions, and each distribution's version (read once per
    process; see :func:`_installed`)."""
    return _installed()


def scan(path: Iterable[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """What :func:`installed` reads, for the folders ``path``, read now (never cached)."""
    return _scan(path)


__all__ = [
    "OWN_DISTRIBUTION",
    "distributions",
    "installed",
    "record_top_levels",
    "scan",
    "top_level_names",
]
