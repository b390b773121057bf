"""Stopping a run: SIGTERM handled like Ctrl-C, and an interrupt that ends a script quietly.

Used by :mod:`memento.run.driver` for the duration of one ``Memento.run``.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from memento.exceptions import RunInterrupted


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same stopping path as Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    # A second SIGTERM must not break the cleanup the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def catch_sigterm() -> Any:
    """Route SIGTERM (Slurm, Kubernetes, `timeout`) into the run's stopping path, for the
    duration of the run only; return the previous handler (``None`` when not installed)."""
    if threading.current_thread() is not threading.main_thread():
        return None  # only the main thread may set signal handlers
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        return None


def restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def install_quiet_excepthook() -> None:
    """Let an uncaught :class:`RunInterrupted` end the program without a traceback; every
    other exception goes to the hook that was there before."""
    current = sys.excepthook
    if getattr(current, "_memento_quiet", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if isinstance(value, RunInterrupted):
            return
        current(kind, value, tb)

    hook._memento_quiet = True  # type: ignore[attr-defined]
    sys.excepthook = hook


__all__ = ["RunInterrupted"]
