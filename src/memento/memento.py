"""memento-ml 1.2 import path: ``from memento.memento import Memento`` (and what 1.2 imported
there: ``Config``, ``Context``, ``Result``, ``CacheMiss``...)."""

import logging

from memento.caching import CacheProvider, FileSystemCacheProvider
from memento.checkpointing import FileSystemCheckpointing
from memento.context import Context
from memento.exceptions import CacheMiss, CyclicDependency
from memento.matrix import Config, generate_configurations
from memento.notifications import DefaultNotificationProvider, NotificationProvider
from memento.parallel import TaskManager, delayed
from memento.results import Result
from memento.runner import Memento

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
