"""Notification providers: tell a person (or a log) how a run is going.

The runner turns what happens into events (:mod:`memento.events`) and hands each one to a
:class:`NotificationDispatcher`, in the driver process only; providers never travel to workers.

::

    NotificationProvider            the seam: override notify(event)
    └── DefaultNotificationProvider do nothing (base of the legacy 1.2 subclasses)
        ├── ConsoleNotificationProvider      "Task completed" ... on stdout, as 1.2
        ├── FileSystemNotificationProvider   the same lines appended to a file
        └── MessageProvider              digest + rate limit; override send(message)
            ├── EmailNotificationProvider    SMTP, STARTTLS; a mail per event, as 1.2
            ├── WebhookNotificationProvider  POST {"text": ...} (Slack-compatible)
            └── AppriseNotificationProvider  100+ services through ``apprise``
    as_provider(obj)                accepts the above, and any object with notify(event) or
                                    1.2's three methods (duck typing, as 1.2)

Secrets (SMTP passwords, webhook and Apprise URLs) never appear in reprs or log records.

The message providers and their base are loaded on first use, so importing the dispatcher (as
every run does) costs no ``smtplib``, ``urllib`` or ``apprise``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memento.notifications.base import (
    ConsoleNotificationProvider,
    DefaultNotificationProvider,
    FileSystemNotificationProvider,
    NotificationDispatcher,
    NotificationProvider,
    as_provider,
)

if TYPE_CHECKING:
    from memento.notifications.digest import Message, MessageProvider
    from memento.notifications.messages import (
        AppriseNotificationProvider,
        EmailNotificationProvider,
        SmtpConfiguration,
        WebhookNotificationProvider,
    )

_LAZY = {
    "Message": "memento.notifications.digest",
    "MessageProvider": "memento.notifications.digest",
    "AppriseNotificationProvider": "memento.notifications.messages",
    "EmailNotificationProvider": "memento.notifications.messages",
    "SmtpConfiguration": "memento.notifications.messages",
    "WebhookNotificationProvider": "memento.notifications.messages",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    loaded = importlib.import_module(module)
    for lazy, where in _LAZY.items():  # every name of that module, so vars() shows them too
        if where == module:
            globals()[lazy] = getattr(loaded, lazy)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AppriseNotificationProvider",
    "ConsoleNotificationProvider",
    "DefaultNotificationProvider",
    "EmailNotificationProvider",
    "FileSystemNotificationProvider",
    "Message",
    "MessageProvider",
    "NotificationDispatcher",
    "NotificationProvider",
    "SmtpConfiguration",
    "WebhookNotificationProvider",
    "as_provider",
]
