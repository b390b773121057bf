"""Which backend opens a store: the one place that knows them all.

A location is a file path (SQLite, the default) or, for a backend that is not a file, a URL
whose scheme names it. A second backend is a subclass of
:class:`~memento.store.base.BaseStore` in a new module of this folder, plus one entry in
:data:`URL_SCHEMES` (its module imported lazily there, so its driver stays optional).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from memento.store.base import BaseStore
from memento.store.sqlite import SQLiteStore

#: URL scheme -> the function opening such a location (``location, readonly`` -> store).
URL_SCHEMES: dict[str, Callable[[str, bool], BaseStore]] = {}


def open_store(location: str | os.PathLike[str], *, readonly: bool = False) -> BaseStore:
    """The store at ``location`` (lazily opened; ``readonly=True`` never writes or creates).

    Example::

        with open_store("runs/grid.sqlite", readonly=True) as store:
            print(store.run_count())
    """
    text = os.fspath(location)
    scheme, sep, _ = text.partition("://")
    if sep and scheme.lower() in URL_SCHEMES:
        return URL_SCHEMES[scheme.lower()](text, readonly)
    return SQLiteStore(location, readonly=readonly)


__all__ = ["URL_SCHEMES", "open_store"]
