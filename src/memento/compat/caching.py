"""memento-ml 1.2's caching API: memoize any function, in memory or in a shared SQLite file.

::

    CacheProvider                 the seam: get (KeyError on a miss), set, contains, make_key
    ├── MemoryCacheProvider       a dict in this process
    └── FileSystemCacheProvider   a table in a memento store's SQLite file; several processes
                                  may read and write it at once
    Cache                         wraps a function (``@Cache`` or ``Cache(f, provider)``)
    default_key_provider          stable key of a call: function identity + arguments

Example::

    from memento import Cache, FileSystemCacheProvider

    @Cache
    def slow_square(x):
        return x * x

    slow_square(4)                    # computed
    slow_square(4)                    # read from the cache
    slow_square(4, force_run=True)    # computed again
    slow_square(5, force_cache=True)  # raises CacheMiss: nothing is computed

    shared = Cache(slow_square.__wrapped__,
                   FileSystemCacheProvider(filepath="results/cache.sqlite"))
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import pickle
import re
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from memento._util.text import display_value, truncate
from memento.exceptions import CacheMiss
from memento.keys.encoding import digest, encode, experiment_identity
from memento.store.handles import (
    Connection,
    SharedFileProvider,
    SQLiteHandle,
    check_connection,
    temporary_database,
    warn_both,
)
from memento.store.kv import KeyValueTable

logger = logging.getLogger("memento")

#: Version of :func:`default_key_provider`'s scheme; part of every key it makes.
CACHE_KEY_VERSION = 1
#: Table names a cache may not take: the memento store's own tables.
RESERVED_TABLES = frozenset({"meta", "results", "runs", "running", "checkpoints", "jobs"})

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


# -- keys ------------------------------------------------------------------------------------
def default_key_provider(func: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The stable key of the call ``func(*args, **kwargs)``: a 32-character hex string.

    Built like the keys of ``Memento.run``: the function's identity (module and qualified name;
    for lambdas and local functions their code and closure too) and the arguments in memento's
    canonical, type-tagged encoding, hashed. Equal calls give equal keys in every process,
    whatever ``PYTHONHASHSEED``; ``1``, ``1.0`` and ``True`` give three different keys.
    Arguments are bound to the function's signature first, so ``f(1)``, ``f(x=1)`` and, when
    ``x`` defaults to 1, ``f()`` share one key.

    Example::

        default_key_provider(pow, 2, 10) == default_key_provider(pow, 2, 10)  # True

    Raises :class:`~memento.exceptions.UnencodableValue` (a ``TypeError``) naming the argument
    that cannot be encoded.
    """
    parts = [encode(f"memento-cache-key-v{CACHE_KEY_VERSION}")]
    bound = None
    if callable(func):
        parts.append(experiment_identity(func))
        bound = _bind(func, args, kwargs)
    else:  # 1.2 accepted any first value, e.g. FileSystemCheckpointing.make_key("name")
        parts += [b"V", encode(func, "func")]
    if bound is not None:
        parts += [b"B", encode(bound, "arguments")]
    else:
        parts += [b"A", encode(args, "args"), encode(kwargs, "kwargs")]
    return digest(b"".join(parts))


def _bind(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """The call's arguments by parameter name, defaults applied; None when there is no
    signature to bind to (some builtins) or the arguments do not fit it."""
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return None
    bound.apply_defaults()
    return dict(bound.arguments)


# -- the provider seam -----------------------------------------------------------------------
class CacheProvider(ABC):
    """Base class of cache providers: subclass it and implement :meth:`get` and :meth:`set`.

    ``provider[key]``, ``provider[key] = value`` and ``key in provider`` call :meth:`get`,
    :meth:`set` and :meth:`contains`.

    Example::

        class RedisCacheProvider(CacheProvider):
            def __init__(self, client):
                self.client = client

            def get(self, key):
                data = self.client.get(key)
                if data is None:
                    raise KeyError(key)
                return pickle.loads(data)

            def set(self, key, item):
                self.client.set(key, pickle.dumps(item))
    """

    @abstractmethod
    def get(self, key: Any) -> Any:
        """The item stored under ``key``; raises ``KeyError`` when there is none."""

    @abstractmethod
    def set(self, key: Any, item: Any) -> None:
        """Store ``item`` under ``key``, replacing what was there."""

    def contains(self, key: Any) -> bool:
        """Whether an item is stored under ``key``."""
        try:
            self.get(key)
        except KeyError:
            return False
        return True

    def make_key(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The key of the call ``func(*args, **kwargs)``, from the provider's key provider
        (:func:`default_key_provider` unless one was given)."""
        key_provider = getattr(self, "_key_provider", None) or default_key_provider
        return key_provider(func, *args, **kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self.get(key)

    def __setitem__(self, key: Any, item: Any) -> None:
        self.set(key, item)

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)

    def __str__(self) -> str:
        return type(self).__name__


class MemoryCacheProvider(CacheProvider):
    """A cache in a dict of this process.

    A copy sent to another process (a worker of a
    :class:`~memento.compat.parallel.TaskManager`, say) is a separate cache: what it stores
    there does not come back. Use :class:`FileSystemCacheProvider` to share a cache between
    processes.

    Example::

        provider = MemoryCacheProvider()
        square = Cache(lambda x: x * x, provider)
        square(3)
        provider.contains(provider.make_key(square.__wrapped__, 3))  # True

    :param initial_cache: a dict to use as the cache (used as is, not copied).
    :param key_provider: ``key_provider(func, *args, **kwargs)`` makes keys; defaults to
        :func:`default_key_provider`.
    """

    def __init__(
        self,
        initial_cache: dict[Any, Any] | None = None,
        key_provider: Callable[..., Any] | None = None,
    ) -> None:
        if initial_cache is not None and not isinstance(initial_cache, dict):
            raise TypeError(
                f"initial_cache must be a dict or None, got {type(initial_cache).__name__}"
            )
        self._cache: dict[Any, Any] = initial_cache if initial_cache is not None else {}
        self._key_provider = key_provider or default_key_provider

    def get(self, key: Any) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            raise KeyError(f"Key {key!r} not in cache") from None

    def set(self, key: Any, item: Any) -> None:
        self._cache[key] = item

    def contains(self, key: Any) -> bool:
        return key in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    def __str__(self) -> str:
        return str(self._cache)

    def __repr__(self) -> str:
        return f"MemoryCacheProvider({len(self._cache)} items)"


class FileSystemCacheProvider(SharedFileProvider, CacheProvider):
    """A cache in a table of a memento store's SQLite file, shared by every process using it.

    Every write is one ``BEGIN IMMEDIATE`` transaction and readers wait on a busy timeout, so
    any number of processes (and threads) may read and write the same file at once. Values are
    pickled with cloudpickle; large ones go to files beside the store, written atomically. A
    copy of the provider sent to another process opens its own connection there.

    Example::

        provider = FileSystemCacheProvider(filepath="memento.sqlite", table_name="features")
        provider.set("k", [1, 2, 3])
        provider.get("k")    # [1, 2, 3]; KeyError for a key that is not there

    :param connection: an open ``sqlite3.Connection`` to keep the cache in instead of a file
        (all values inline). Such a provider cannot be sent to another process.
    :param filepath: the SQLite file (a memento store, created when missing; the same file
        ``Memento.run`` uses is fine). Defaults, as in memento-ml 1.2, to a new temporary file,
        private to this provider; it is removed when the process that made it exits.
    :param key_provider: ``key_provider(func, *args, **kwargs)`` makes keys; defaults to
        :func:`default_key_provider`.
    :param table_name: the table holding this cache (default ``"cache"``), so that several
        caches can share one file. Letters, digits and underscores; not one of the store's
        own tables.
    """

    def __init__(
        self,
        connection: Connection | None = None,
        filepath: str | os.PathLike[str] | None = None,
        key_provider: Callable[..., Any] | None = None,
        table_name: str | None = None,
    ) -> None:
        if connection is not None and filepath is not None:
            warn_both("FileSystemCacheProvider")
            filepath = None
        check_connection(connection)
        self._table = check_table_name("cache" if table_name is None else table_name)
        self._key_provider = key_provider or default_key_provider
        self._connection = connection
        self.filepath: Path | None = None
        if connection is None:
            if filepath is None:
                filepath = temporary_database("_memento.cache.sqlite")
            self.filepath = Path(filepath).expanduser().absolute()
        self._rows = KeyValueTable(
            SQLiteHandle(self.filepath, connection), self._table, value_files=True
        ).create()

    @property
    def table_name(self) -> str:
        return self._table

    # -- the seam --------------------------------------------------------------------------
    def get(self, key: Any) -> Any:
        import cloudpickle

        row = self._rows.find(_sql_key(key))
        if row is None:
            raise KeyError(f"Key {key!r} not in cache")
        try:
            return cloudpickle.loads(self._rows.read(*row))
        except Exception as exc:
            # A cache may always recompute: an entry that cannot be read back (its file was
            # removed, its class no longer imports) counts as a miss, loudly.
            logger.warning(
                "Cached value for key %r cannot be loaded (%s); treating it as missing", key, exc
            )
            raise KeyError(f"Key {key!r} cannot be loaded from the cache: {exc}") from exc

    def set(self, key: Any, item: Any) -> None:
        import cloudpickle

        sql_key = _sql_key(key)
        data = cloudpickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        file_name = f"cache/{self._table}/{digest(encode(sql_key))}.pkl"
        self._rows.put(sql_key, data, file_name=file_name)

    def contains(self, key: Any) -> bool:
        return self._rows.contains(_sql_key(key))

    # -- extras ----------------------------------------------------------------------------
    def remove(self, key: Any) -> None:
        """Forget the item under ``key`` (no error when there is none)."""
        self._rows.delete(_sql_key(key))

    def __delitem__(self, key: Any) -> None:
        self.remove(key)

    def __len__(self) -> int:
        return self._rows.count()

    def keys(self) -> Iterator[Any]:
        """Every key in the cache, oldest write first."""
        return iter(self._rows.keys())

    def close(self) -> None:
        """Close this process's connection (a later call opens a new one)."""
        self._rows.handle.close()

    def __enter__(self) -> Connection:
        """``with provider as database: database.execute(sql)``, as in memento-ml 1.2.

        Gives a new ``sqlite3.Connection`` to the provider's file, committed (or rolled back,
        if the block raised) and closed when the block ends. The file is a memento store: the
        cache is the table :attr:`table_name` (``key``, ``value`` (the pickle, or NULL when it
        is in ``value_file``), ``value_file``, ``updated``), beside the store's own tables
        (docs/store.md). A provider built on a ``connection`` gives that connection, untouched.
        """
        return super().__enter__()

    _rows: KeyValueTable
    _share_hint = "build it with filepath=... to share it between processes"

    def _file(self) -> Path | None:
        return self.filepath

    def _reopen(self) -> Any:
        return KeyValueTable(SQLiteHandle(self.filepath, None), self._table, value_files=True)

    def __str__(self) -> str:
        where = self.filepath if self.filepath is not None else self._connection
        return f"Filesystem cache, using {where} (table {self._table})"

    def __repr__(self) -> str:
        where = str(self.filepath) if self.filepath is not None else self._connection
        return f"FileSystemCacheProvider({where!r}, table_name={self._table!r})"


def check_table_name(name: Any) -> str:
    """Return ``name`` if it is a safe, unreserved SQL table name; else raise."""
    if not isinstance(name, str):
        raise TypeError(f"table_name must be a str, got {type(name).__name__}: {name!r}")
    if not _TABLE_NAME.fullmatch(name) or name.lower().startswith("sqlite_"):
        raise ValueError(
            f"table_name {name!r} is not usable: use 1 to 64 letters, digits and underscores, "
            "starting with a letter or underscore (and not 'sqlite_')"
        )
    if name.lower() in RESERVED_TABLES:
        raise ValueError(
            f"table_name {name!r} is one of the memento store's own tables "
            f"({', '.join(sorted(RESERVED_TABLES))}); choose another name"
        )
    return name


def _sql_key(key: Any) -> str | bytes | int:
    if isinstance(key, (str, bytes, int)) and not isinstance(key, bool):
        return key
    raise TypeError(
        f"FileSystemCacheProvider keys must be str, bytes or int, got {type(key).__name__}: "
        f"{key!r}; make the key provider return one of those"
    )


# -- the function wrapper --------------------------------------------------------------------
class Cache:
    """Caches the results of ``func``: works as ``Cache(func)`` and as the decorator ``@Cache``.

    Calling it looks up the call's key (from the provider's ``make_key``) and returns the
    stored result, or calls ``func``, stores the result and returns it. Two extra keyword
    arguments change that for one call: ``force_run=True`` computes (and stores) the result
    even when one is stored; ``force_cache=True`` computes nothing and raises
    :class:`~memento.exceptions.CacheMiss` (also a ``KeyError``, as in 1.2) on a miss.

    Example::

        @Cache
        def fetch(url, retries=3):
            ...

        fetch("https://example.org")                   # downloads
        fetch("https://example.org", retries=3)        # the same call: cached
        fetch("https://example.org", force_run=True)   # downloads again

        cached = Cache(fetch_page, FileSystemCacheProvider(filepath="pages.sqlite"))

    Two processes that miss the same key at the same moment both compute it; the last write
    wins. Exceptions raised by ``func`` are not cached.

    :param func: the function to cache.
    :param cache_provider: where results go; defaults to a new
        :class:`FileSystemCacheProvider` in a temporary file (as 1.2), shared with the
        worker processes this wrapper is sent to.
    """

    def __init__(
        self, func: Callable[..., Any], cache_provider: CacheProvider | None = None
    ) -> None:
        if not callable(func):
            raise TypeError(f"Cache needs a callable to cache, got {func!r}")
        if cache_provider is not None and not all(
            callable(getattr(cache_provider, m, None)) for m in ("get", "set", "make_key")
        ):
            raise TypeError(
                "cache_provider must be a CacheProvider (with get, set and make_key), "
                f"got {cache_provider!r}"
            )
        # First: update_wrapper copies func's __dict__, which must not overwrite ours.
        functools.update_wrapper(self, func)
        self._func = func
        self._cache_provider = (
            cache_provider if cache_provider is not None else FileSystemCacheProvider()
        )

    @property
    def func(self) -> Callable[..., Any]:
        """The function being cached."""
        return self._func

    @property
    def cache_provider(self) -> CacheProvider:
        return self._cache_provider

    def __call__(
        self, *args: Any, force_cache: bool = False, force_run: bool = False, **kwargs: Any
    ) -> Any:
        if force_cache and force_run:
            raise ValueError("force_cache=True and force_run=True contradict each other")
        provider = self._cache_provider
        key = provider.make_key(self._func, *args, **kwargs)
        if not force_run:
            try:
                return provider.get(key)
            except KeyError:
                if force_cache:
                    raise CallCacheMiss(_describe_call(self._func, args, kwargs), key) from None
        value = self._func(*args, **kwargs)
        provider.set(key, value)
        return value

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # As a method decorator: bind like a function, the instance becomes part of the key.
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __str__(self) -> str:
        return f"Cached function object: func: {self._func}, cache: {self._cache_provider}"

    def __repr__(self) -> str:
        return f"Cache({self._func!r}, {self._cache_provider!r})"


class CallCacheMiss(CacheMiss, KeyError):
    """``Cache(...)(..., force_cache=True)`` found nothing stored for the call.

    A :class:`~memento.exceptions.CacheMiss` and, as 1.2 raised, a ``KeyError``.
    """

    def __init__(self, call: str, key: Any = None) -> None:
        Exception.__init__(
            self,
            f"No cached result for {call} (force_cache=True computes nothing); call it "
            "without force_cache to compute it.",
        )
        self.config = call
        self.key = key

    __str__ = Exception.__str__  # not KeyError's, which would quote the message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_miss, (self.args[0], self.config, self.key))


def _rebuild_miss(message: str, call: str, key: Any) -> CallCacheMiss:
    error = CallCacheMiss(call, key)
    error.args = (message,)
    return error


def _describe_call(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    shown = [display_value(a) for a in args] + [
        f"{k}={display_value(v)}" for k, v in kwargs.items()
    ]
    return truncate(f"{display_value(func)}({', '.join(shown)})", 200)


__all__ = [
    "CACHE_KEY_VERSION",
    "Cache",
    "CacheProvider",
    "CallCacheMiss",
    "FileSystemCacheProvider",
    "MemoryCacheProvider",
    "default_key_provider",
]
