"""memento-ml 1.2 import path: ``from memento.memento import Memento`` (and what 1.2 imported
there: ``Config``, ``Context``, ``Result``, ``CacheMiss``...)."""

import logging

from memento.compat.caching import CacheProvider, FileSystemCacheProvider
from memento.compat.checkpointing import FileSystemCheckpointing
from memento.compat.parallel import TaskManager, delayed
from memento.exceptions import CacheMiss, CyclicDependency
from memento.matrix.configs import Config, generate_configurations
from memento.notifications import DefaultNotificationProvider, NotificationProvider
from memento.results.result import Result
from memento.run.memento import Memento
from memento.worker.context import Context

#: The logger runs report to (1.2 logged from ``memento.memento``; memento logs as ``memento``).
logger = logging.getLogger("memento")

__all__ = [
    "CacheMiss",
    "CacheProvider",
    "Config",
    "Context",
    "CyclicDependency",
    "DefaultNotificationProvider",
    "FileSystemCacheProvider",
    "FileSystemCheckpointing",
    "Memento",
    "NotificationProvider",
    "Result",
    "TaskManager",
    "delayed",
    "generate_configurations",
    "logger",
]
