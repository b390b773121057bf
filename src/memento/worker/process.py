"""What a worker process sets up for itself: its initializer (dies with the driver, ignores
Ctrl-C, leads its own process group, routes its output to the driver), the progress updates
it sends, and its peak-memory counters.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from memento.worker.output import connect_output, install_output_router

#: Where this worker's ``context.progress`` updates go: the write end of the driver's pipe.
_progress_fd: int | None = None
_progress_conn: Any = None


def send_progress(key: str, done: float, total: float | None) -> None:
    """Send one progress update (``done`` of ``total``) of experiment ``key`` to the driver."""
    # One short line per write: atomic on a pipe, never interleaved with other workers'.
    # The pipe is non-blocking: when the driver lags, the update is dropped, never waited for.
    if _progress_fd is None:
        return
    line = f"{key}\t{done}\t{'' if total is None else total}\n".encode()
    try:
        os.write(_progress_fd, line)
    except OSError:
        pass


def progress_sink() -> Callable[[str, float, float | None], None] | None:
    """:func:`send_progress` in a worker process connected to the driver's progress pipe."""
    return send_progress if _progress_fd is not None else None


def init_process_worker(progress: Any = None, output: Any = None) -> None:
    """Initializer of each worker process.

    The worker dies with the driver (no orphan keeps computing after ``kill -9`` of the
    driver), ignores Ctrl-C (the driver handles it and stops the workers), and sends its
    stdout to stderr so that stdout stays the user's program's own. ``progress`` is the
    write end of the pipe that carries ``context.progress`` updates to the driver, ``output``
    that of the pipe that carries experiments' output: ``multiprocessing`` connections, so
    that they reach workers of every start method (``progress`` may also be a descriptor
    the worker inherited).
    """
    global _progress_fd, _progress_conn
    if progress is not None:
        _progress_conn = progress  # keeps the descriptor open
        _progress_fd = progress if isinstance(progress, int) else progress.fileno()
        try:
            os.set_blocking(_progress_fd, False)
        except OSError:
            pass
    if output is not None:
        connect_output(output)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        except Exception:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _lead_own_process_group()
    try:
        sys.stdout.flush()
        os.dup2(2, 1)
    except OSError:
        pass
    install_output_router()


def _lead_own_process_group() -> None:
    """Make this worker the leader of a process group of its own, so that stopping it
    (a timeout or a cancel: pebble sends SIGTERM) also kills every process the experiment
    started: ``subprocess`` children, ``multiprocessing`` children and their children,
    unless they left the group themselves (``start_new_session=True``)."""
    if not hasattr(os, "setpgrp"):
        return
    try:
        os.setpgrp()
    except OSError:
        return
    signal.signal(signal.SIGTERM, _kill_own_group)


def _kill_own_group(signum: int, frame: Any) -> None:
    # Never signal a group this worker does not lead (the driver's, say).
    if os.getpgrp() == os.getpid():
        _kill_group_members(os.getpid())
    # Exit with the shell's status for the signal (143 for SIGTERM), so the driver tells a
    # stop from outside (an ``interrupted`` failure) from a crash; pebble replaces the worker.
    os._exit(128 + signum)


def _kill_group_members(group: int) -> None:
    """SIGKILL every process of process group ``group`` but this one (read from ``/proc``:
    ``killpg`` would kill this process too, before it could say why it ends)."""
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        os.killpg(group, signal.SIGKILL)  # no /proc: the whole group, this worker too
        return
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            # pid (comm) state ppid pgrp ...: the command may hold spaces and parentheses.
            fields = stat[stat.rindex(b")") + 2 :].split()
            if int(fields[2]) == group:
                os.kill(int(name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


# -- memory ----------------------------------------------------------------------------------
def reset_peak_memory() -> None:
    """Reset this process's peak-memory counter (Linux), before an experiment: only when the
    peak (VmHWM) is above the resident size now, i.e. when an earlier experiment left a peak
    this one must not inherit (writing ``clear_refs`` costs an open and a write)."""
    status = _status()
    if status is not None:
        hwm, rss = _field(status, b"VmHWM:"), _field(status, b"VmRSS:")
        if hwm is not None and rss is not None and hwm <= rss:
            return
    # Writing 5 to clear_refs resets the peak RSS (VmHWM) of this process (Linux >= 4.0).
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


_status_fd: tuple[int, int] | None = None  # (pid, descriptor of /proc/self/status)


def _status() -> bytes | None:
    """The text of /proc/self/status, read with one ``pread`` of a descriptor kept open (per
    process: a forked child opens its own)."""
    global _status_fd
    pid = os.getpid()
    if _status_fd is None or _status_fd[0] != pid:
        try:
            _status_fd = (pid, os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            return None
    try:
        return os.pread(_status_fd[1], 16384, 0)
    except OSError:
        return None


def _field(status: bytes, name: bytes) -> int | None:
    """A ``kB`` field of /proc/self/status, in bytes."""
    at = status.find(name)
    if at < 0:
        return None
    end = status.find(b"\n", at)
    try:
        return int(status[at + len(name) : end].split()[0]) * 1024
    except (ValueError, IndexError):
        return None


def peak_memory() -> tuple[int | None, int | None]:
    """This process's peak resident and virtual memory in bytes (``None``: unknown)."""
    status = _status()
    if status is None:
        try:
            import resource

            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return (maxrss if sys.platform == "darwin" else maxrss * 1024), None
        except Exception:
            return None, None
    return _field(status, b"VmHWM:"), _field(status, b"VmPeak:")


__all__ = [
    "init_process_worker",
    "peak_memory",
    "progress_sink",
    "reset_peak_memory",
    "send_progress",
]
