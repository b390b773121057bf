"""memento-ml 1.2 import path for what experiments see and return."""

from memento.checkpointing import FileSystemCheckpointing
from memento.context import Context
from memento.results import MemoryUsage, MetricTable, Result

__all__ = ["Context", "FileSystemCheckpointing", "MemoryUsage", "MetricTable", "Result"]
