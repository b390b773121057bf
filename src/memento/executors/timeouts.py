"""The one timeout error, and driver-side timeouts for engines that cannot stop a job.

Each engine enforces ``submit(job, timeout=...)`` in its own file (pebble kills the worker
process, ``SIGALRM`` interrupts the inline executor, Ray and Slurm cancel the task); every one
of them reports it with :func:`timed_out`, so the message reads the same everywhere.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from typing import Any

from memento.exceptions import ExperimentTimeout
from memento.executors.base import settle


def timed_out(seconds: float | None, consequence: str) -> ExperimentTimeout:
    """The error of an experiment stopped after ``seconds``; ``consequence`` says what the
    engine did about it ("its worker process was killed and replaced")."""
    limit = "" if seconds is None else f" of {seconds:g} s"
    return ExperimentTimeout(f"The experiment ran longer than its timeout{limit}; {consequence}")


class _Watched:
    __slots__ = ("inner", "outer", "started", "timeout")

    def __init__(self, inner: cf.Future[Any], outer: cf.Future[Any], timeout: float) -> None:
        self.inner = inner
        self.outer = outer
        self.timeout = timeout
        self.started: float | None = None


class SoftTimeouts:
    """Driver-side timeouts for engines that cannot stop a running job.

    A watchdog thread fails the outer future with :class:`ExperimentTimeout` once the inner one
    has run past its timeout; the job itself is abandoned, not stopped.
    """

    def __init__(self) -> None:
        self._watched: list[_Watched] = []
        self._lock = threading.Lock()
        #: How many jobs were abandoned after their timeout.
        self.abandoned = 0
        self._thread: threading.Thread | None = None

    def wrap(self, inner: cf.Future[Any], timeout: float) -> cf.Future[Any]:
        outer: cf.Future[Any] = cf.Future()
        outer.set_running_or_notify_cancel()
        watched = _Watched(inner, outer, timeout)

        def copy(done: cf.Future[Any]) -> None:
            if outer.done():
                return
            if done.cancelled():
                outer.cancel()
            else:
                settle(outer, result=None if done.exception() else done.result(),
                       exception=done.exception())  # fmt: skip

        inner.add_done_callback(copy)
        with self._lock:
            self._watched.append(watched)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, daemon=True)
                self._thread.start()
        return outer

    def _watch(self) -> None:
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            with self._lock:
                keep = []
                for w in self._watched:
                    if w.outer.done():
                        continue
                    if w.started is None and (w.inner.running() or w.inner.done()):
                        w.started = now
                    if w.started is not None and now - w.started > w.timeout:
                        w.inner.cancel()
                        self.abandoned += 1
                        error = timed_out(
                            w.timeout, "it could not be stopped on this executor and was abandoned"
                        )
                        settle(w.outer, exception=error)
                        continue
                    keep.append(w)
                self._watched = keep
                if not keep:
                    self._thread = None
                    return
