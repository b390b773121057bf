"""memento-ml 1.2's ``memento.parallel`` (built in :mod:`memento.compat.parallel`)."""

from __future__ import annotations

from memento.compat.parallel import (
    TASK_PRIORITY_HIGH,
    TASK_PRIORITY_LOW,
    TASK_PRIORITY_MEDIUM,
    AggregateException,
    DefaultNotificationProvider,
    NotificationProvider,
    TaskManager,
    delayed,
)

__all__ = [
    "AggregateException",
    "DefaultNotificationProvider",
    "NotificationProvider",
    "TASK_PRIORITY_HIGH",
    "TASK_PRIORITY_LOW",
    "TASK_PRIORITY_MEDIUM",
    "TaskManager",
    "delayed",
]
