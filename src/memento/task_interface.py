"""memento-ml 1.2 import path for what experiments see and return."""

from memento.caching import default_key_provider
from memento.checkpointing import FileSystemCheckpointing
from memento.context import Context, Metric
from memento.matrix import Config
from memento.results import MemoryUsage, MetricTable, Result

__all__ = [
    "Config",
    "Context",
    "FileSystemCheckpointing",
    "MemoryUsage",
    "Metric",
    "MetricTable",
    "Result",
    "default_key_provider",
]
