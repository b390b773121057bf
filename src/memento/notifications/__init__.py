"""Notification providers: tell a person (or a log) how a run is going.

The runner turns what happens into events (:mod:`memento.events`) and hands each one to a
:class:`NotificationDispatcher`, in the driver process only; providers never travel to workers.

::

    NotificationProvider            the seam: override notify(event)
    └── DefaultNotificationProvider do nothing (base of the legacy 1.2 subclasses)
        ├── ConsoleNotificationProvider      "Task completed" ... on stdout, as 1.2
        ├── FileSystemNotificationProvider   the same lines appended to a file
        └── (messages, digest + rate limit)
            ├── EmailNotificationProvider    SMTP, STARTTLS; a mail per event, as 1.2
            ├── WebhookNotificationProvider  POST {"text": ...} (Slack-compatible)
            └── AppriseNotificationProvider  100+ services through ``apprise``
    as_provider(obj)                accepts the above, and any object with notify(event) or
                                    1.2's three methods (duck typing, as 1.2)

Secrets (SMTP passwords, webhook and Apprise URLs) never appear in reprs or log records.
"""

from __future__ import annotations

from memento.notifications.base import (
    ConsoleNotificationProvider,
    DefaultNotificationProvider,
    FileSystemNotificationProvider,
    NotificationDispatcher,
    NotificationProvider,
    as_provider,
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
    "as_provider",
]
