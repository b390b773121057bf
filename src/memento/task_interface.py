"""memento-ml 1.2 import path for what experiments see and return."""

from memento.compat.caching import default_key_provider
from memento.compat.checkpointing import FileSystemCheckpointing
from memento.matrix.configs import Config
from memento.results.result import MemoryUsage, MetricTable, Result
from memento.worker.context import Context, Metric

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
