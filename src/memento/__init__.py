"""memento: run grids of expensive experiments in parallel, durably, crash-isolated.

Example::

    from memento import Memento

    def experiment(context, config):
        return config.a * config.b

    results = Memento(experiment).run({"parameters": {"a": [1, 2], "b": [3, 4]}})

Compatible with memento-ml 1.2's public API. Names are loaded on first use so that
``import memento`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "2.0.0.dev0"

_EXPORTS = {
    # the core
    "Memento": "memento.run.memento",
    "Plan": "memento.plan.planning",
    "Config": "memento.matrix.configs",
    "Configurations": "memento.matrix.configs",
    "generate_configurations": "memento.matrix.configs",
    "loguniform": "memento.matrix.sampling",
    "uniform": "memento.matrix.sampling",
    "randint": "memento.matrix.sampling",
    "choice": "memento.matrix.sampling",
    "register_format": "memento.store.values",
    "Context": "memento.worker.context",
    "Result": "memento.results.result",
    "ResultList": "memento.results.result",
    "MemoryUsage": "memento.results.result",
    "MetricTable": "memento.results.result",
    "open_results": "memento.results.reading",
    "AggregateException": "memento.exceptions",
    "CacheMiss": "memento.exceptions",
    "CyclicDependency": "memento.exceptions",
    "LegacyStoreError": "memento.exceptions",
    "ExperimentError": "memento.exceptions",
    "ExperimentTimeout": "memento.exceptions",
    "MementoError": "memento.exceptions",
    "MissingExtra": "memento.exceptions",
    "RunInterrupted": "memento.exceptions",
    "StoreError": "memento.exceptions",
    "UnencodableValue": "memento.exceptions",
    "WorkerDied": "memento.exceptions",
    "WorkerLost": "memento.exceptions",
    # notifications
    "NotificationProvider": "memento.notifications",
    "DefaultNotificationProvider": "memento.notifications",
    "ConsoleNotificationProvider": "memento.notifications",
    "FileSystemNotificationProvider": "memento.notifications",
    "EmailNotificationProvider": "memento.notifications",
    "SmtpConfiguration": "memento.notifications",
    "WebhookNotificationProvider": "memento.notifications",
    "AppriseNotificationProvider": "memento.notifications",
    # memento-ml 1.2's lower-level API
    "FileSystemCheckpointing": "memento.compat.checkpointing",
    "CacheProvider": "memento.compat.caching",
    "MemoryCacheProvider": "memento.compat.caching",
    "FileSystemCacheProvider": "memento.compat.caching",
    "Cache": "memento.compat.caching",
    "default_key_provider": "memento.compat.caching",
    "TaskManager": "memento.compat.parallel",
    "delayed": "memento.compat.parallel",
    "TASK_PRIORITY_LOW": "memento.compat.parallel",
    "TASK_PRIORITY_MEDIUM": "memento.compat.parallel",
    "TASK_PRIORITY_HIGH": "memento.compat.parallel",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'memento' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


if TYPE_CHECKING:
    from memento.compat.caching import (
        Cache,
        CacheProvider,
        FileSystemCacheProvider,
        MemoryCacheProvider,
        default_key_provider,
    )
    from memento.compat.checkpointing import FileSystemCheckpointing
    from memento.compat.parallel import (
        TASK_PRIORITY_HIGH,
        TASK_PRIORITY_LOW,
        TASK_PRIORITY_MEDIUM,
        TaskManager,
        delayed,
    )
    from memento.exceptions import (
        AggregateException,
        CacheMiss,
        CyclicDependency,
        ExperimentError,
        ExperimentTimeout,
        LegacyStoreError,
        MementoError,
        MissingExtra,
        RunInterrupted,
        StoreError,
        UnencodableValue,
        WorkerDied,
        WorkerLost,
    )
    from memento.matrix.configs import Config, Configurations, generate_configurations
    from memento.matrix.sampling import choice, loguniform, randint, uniform
    from memento.notifications import (
        AppriseNotificationProvider,
        ConsoleNotificationProvider,
        DefaultNotificationProvider,
        EmailNotificationProvider,
        FileSystemNotificationProvider,
        NotificationProvider,
        SmtpConfiguration,
        WebhookNotificationProvider,
    )
    from memento.plan.planning import Plan
    from memento.results.reading import open_results
    from memento.results.result import MemoryUsage, MetricTable, Result, ResultList
    from memento.run.memento import Memento
    from memento.store.values import register_format
    from memento.worker.context import Context
