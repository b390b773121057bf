"""memento-ml 1.2's ``memento.caching`` (built in :mod:`memento.compat.caching`)."""

from __future__ import annotations

from memento.compat.caching import (
    CACHE_KEY_VERSION,
    Cache,
    CacheProvider,
    CallCacheMiss,
    FileSystemCacheProvider,
    MemoryCacheProvider,
    default_key_provider,
)

__all__ = [
    "CACHE_KEY_VERSION",
    "Cache",
    "CacheProvider",
    "CallCacheMiss",
    "FileSystemCacheProvider",
    "MemoryCacheProvider",
    "default_key_provider",
]
