"""Which backend opens a store: the one place that knows them all.

A location is a file path (SQLite, the default) or, for a backend that is not a file, a URL
whose scheme names it (``postgresql://user@host:5432/dbname``: PostgreSQL, the ``postgres``
extra). A second backend is a subclass of :class:`~memento.store.base.BaseStore` in a new
module of this folder, plus one entry in :data:`URL_SCHEMES` (its module imported lazily
there, so its driver stays optional).
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Any

from memento.store.base import BaseStore
from memento.store.sqlite import SQLiteStore, default_store_path

#: URL scheme -> the module and class of its backend, imported when a store of it is opened.
#: The class is built as ``cls(url, readonly=...)``; its module may also have a
#: ``checkpoints(url)`` function giving a worker's checkpoint provider.
URL_SCHEMES: dict[str, tuple[str, str]] = {
    "postgresql": ("memento.store.postgres", "PostgresStore"),
    "postgres": ("memento.store.postgres", "PostgresStore"),
}


def url_scheme(location: str | os.PathLike[str] | None) -> str | None:
    """The registered URL scheme ``location`` names (lower case), else ``None`` (a path)."""
    if location is None or not isinstance(location, str):
        return None
    scheme, sep, _ = location.partition("://")
    return scheme.lower() if sep and scheme.lower() in URL_SCHEMES else None


def store_location(cache_path: str | os.PathLike[str] | None = None) -> str:
    """Where ``cache_path`` puts a store: a server URL as given, else the absolute path of
    :func:`~memento.store.sqlite.default_store_path` (``$MEMENTO_CACHE_PATH`` when
    ``cache_path`` is ``None`` or ``""``, which may name a URL too)."""
    raw = os.fspath(cache_path) if cache_path is not None else ""
    if not raw:
        raw = os.environ.get("MEMENTO_CACHE_PATH", "")
    if url_scheme(raw):
        return raw
    return str(default_store_path(raw or None))


_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:]*):[^/@]*@", re.IGNORECASE)
_QUERY_SECRET = re.compile(r"([?&](?:password|sslpassword)=)[^&]*", re.IGNORECASE)


def redact(location: str) -> str:
    """``location`` fit to show: a URL's password (in its user part or its query) as ``***``."""
    text = _PASSWORD.sub(r"\1:***@", location)
    return _QUERY_SECRET.sub(r"\1***", text)


def open_store(location: str | os.PathLike[str], *, readonly: bool = False) -> BaseStore:
    """The store at ``location`` (lazily opened; ``readonly=True`` never writes or creates).

    Example::

        with open_store("runs/grid.sqlite", readonly=True) as store:
            print(store.run_count())
    """
    scheme = url_scheme(location)
    if scheme is not None:
        store: BaseStore = _backend(scheme)[1](os.fspath(location), readonly=readonly)
        return store
    return SQLiteStore(location, readonly=readonly)


def open_checkpoints(url: str) -> Any:
    """On a worker: the checkpoint provider of the server store at ``url``
    (:attr:`BaseStore.checkpoint_url <memento.store.base.BaseStore.checkpoint_url>`)."""
    scheme = url_scheme(url)
    if scheme is None:
        raise ValueError(f"Not a server store URL: {redact(url)!r}")
    return _backend(scheme)[0].checkpoints(url)


def _backend(scheme: str) -> tuple[Any, Any]:
    module_name, class_name = URL_SCHEMES[scheme]
    module = importlib.import_module(module_name)
    return module, getattr(module, class_name)


__all__ = [
    "URL_SCHEMES",
    "open_checkpoints",
    "open_store",
    "redact",
    "store_location",
    "url_scheme",
]
