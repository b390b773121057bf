"""Executors: where experiments run. One seam (:class:`Executor`), many engines.

Local: :class:`ProcessExecutor` (default), :class:`ThreadExecutor`, :class:`InlineExecutor`,
and :class:`FuturesExecutor` for any ``concurrent.futures.Executor``. Cluster engines
(``SlurmExecutor``, ``DaskExecutor``, ``RayExecutor``) load lazily and say which extra to
install when their engine is missing.
"""

from __future__ import annotations

from typing import Any

from memento._util.cpus import available_cpus
from memento.executors.base import Executor, describe_exit
from memento.executors.local import (
    FuturesExecutor,
    InlineExecutor,
    ProcessExecutor,
    ThreadExecutor,
    make_executor,
)
from memento.executors.timeouts import SoftTimeouts, timed_out
from memento.executors.workspace import JobRegistry, Workspace, check_shared_directory

_LAZY = {
    "SlurmExecutor": "memento.executors.slurm",
    "DaskExecutor": "memento.executors.dask",
    "RayExecutor": "memento.executors.ray",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'memento.executors' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "DaskExecutor",
    "Executor",
    "FuturesExecutor",
    "InlineExecutor",
    "JobRegistry",
    "ProcessExecutor",
    "RayExecutor",
    "SlurmExecutor",
    "SoftTimeouts",
    "ThreadExecutor",
    "Workspace",
    "available_cpus",
    "check_shared_directory",
    "describe_exit",
    "make_executor",
    "timed_out",
]
