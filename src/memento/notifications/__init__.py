"""Notification providers: tell a person (or a log) how a run is going.

The runner turns what happens into events (:mod:`memento.events`) and hands each one to a
:class:`NotificationDispatcher`, in the driver process only; providers never travel to workers.

::

    NotificationProvider            the seam: override notify(event)
    └── DefaultNotificationProvider do nothing (base of the legacy 1.2 subclasses)
        ├── ConsoleNotificationProvider      "Task completed" ... on stdout, as 1.2
        ├── FileSystemNotificationProvider   the same lines appended to a file
        └── (messages, digest + rate limit)
            ├── EmailNotificationProvider    SMTP, STARTTLS
            ├── WebhookNotificationProvider  POST {"text": ...} (Slack-compatible)
            └── AppriseNotificationProvider  100+ services through ``apprise``

Secrets (SMTP passwords, webhook and Apprise URLs) never appear in reprs or log records.
"""

from __future__ import annotations

from memento.notifications.base import (
    ConsoleNotificationProvider,
    DefaultNotificationProvider,
    FileSystemNotificationProvider,
    NotificationDispatcher,
    NotificationProvider,
)
from memento.notifications.messages import (
    AppriseNotificationProvider,
    EmailNotificationProvider,
    SmtpConfiguration,
    WebhookNotificationProvider,
)

__all__ = [
    "AppriseNotificationProvider",
    "ConsoleNotificationProvider",
    "DefaultNotificationProvider",
    "EmailNotificationProvider",
    "FileSystemNotificationProvider",
    "NotificationDispatcher",
    "NotificationProvider",
    "SmtpConfiguration",
    "WebhookNotificationProvider",
]
