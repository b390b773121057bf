"""The executor seam: the runner only submits callables and waits on futures.

Every executor, the built-in local ones and the cluster engines, implements
:class:`Executor`. The runner calls :meth:`Executor.submit` with a module-level function and
picklable arguments, waits on the returned :class:`concurrent.futures.Future` objects with
``concurrent.futures.wait``, and reads each one through :meth:`Executor.result`, which turns an
engine's own errors into :class:`~memento.exceptions.ExperimentTimeout` and
:class:`~memento.exceptions.WorkerDied`.
"""

from __future__ import annotations

import concurrent.futures as cf
import signal
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from memento.exceptions import ExperimentTimeout, StoreError

if TYPE_CHECKING:
    from memento.store.sqlite import Store


_E = TypeVar("_E", bound="Executor")


class Executor(ABC):
    """Base class of every executor.

    Subclasses implement :meth:`submit` and usually :meth:`shutdown`; the class attributes
    tell the runner what the engine can do.
    """

    #: How many jobs run at once; the runner keeps about twice that many submitted.
    max_workers: int = 1
    #: Jobs run in the driver's own process (values need no pickling).
    in_process: bool = False
    #: Each worker runs one experiment at a time in a process of its own, so per-experiment
    #: peak memory can be measured.
    own_process: bool = False
    #: Several short experiments may be sent as one job to save round trips.
    batching: bool = False
    #: A short name for messages.
    name: str = "executor"

    @abstractmethod
    def submit(
        self, fn: Callable[..., Any], /, *args: Any, timeout: float | None = None
    ) -> cf.Future[Any]:
        """Start ``fn(*args)``; stop it and fail its future if it runs past ``timeout`` s."""

    def result(self, future: cf.Future[Any]) -> Any:
        """The job's return value; engine errors become memento's exceptions."""
        return future.result()

    def prepare(self, store: Store) -> None:  # noqa: B027
        """Called once per run before anything is submitted, with the run's store.

        Cluster executors check here that workers can reach ``store.directory`` (checkpoints
        and large values live there), and may keep engine job ids in the store.
        """

    def max_in_flight(self) -> int:
        """How many jobs the runner keeps submitted at once."""
        return max(1, 2 * self.max_workers)

    def flush(self) -> None:  # noqa: B027
        """Called by the runner after each round of submissions, just before it waits.

        Executors that buffer submissions (Slurm sends them as job arrays) submit them now.
        """

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:  # noqa: B027
        """Release the engine's resources; ``cancel=True`` stops running jobs now."""

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def describe(self) -> str:
        return f"{self.name} executor with {self.max_workers} worker(s)"


def describe_exit(exitcode: int | None) -> str:
    """'killed by signal SIGSEGV (11)' or 'exited with code 3'."""
    if exitcode is None:
        return "died"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"was killed by signal {name} ({-exitcode}){hint}"
    return f"exited with code {exitcode}"


def settle(
    future: cf.Future[Any], *, result: Any = None, exception: BaseException | None = None
) -> None:
    """Resolve ``future`` unless it already is (timed out or cancelled meanwhile)."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except cf.InvalidStateError:
        pass


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
    has been running longer than its timeout; the job itself is abandoned, not stopped.
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
                        settle(
                            w.outer,
                            exception=ExperimentTimeout(
                                f"The experiment ran longer than its timeout of {w.timeout} s "
                                "(it could not be stopped on this executor and was abandoned)"
                            ),
                        )
                        continue
                    keep.append(w)
                self._watched = keep
                if not keep:
                    self._thread = None
                    return


# -- is the store's directory shared? (engine-neutral) ----------------------------------------
def check_shared_directory(
    directory: Path, run_everywhere: Callable[..., Mapping[str, Any]], engine: str
) -> None:
    """Fail early unless every worker can read and write ``directory``.

    ``run_everywhere(fn, *args)`` runs ``fn(*args)`` on every worker and returns
    ``{worker: result}``. The driver writes a random token in ``directory``; each worker must
    read that very token back (the same filesystem, not just the same path name) and create
    a file beside it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    path = directory / f".probe-{token}"
    path.write_text(token)
    try:
        answers = run_everywhere(answer_probe, str(path), token)
    finally:
        path.unlink(missing_ok=True)
    bad = {str(w): a if isinstance(a, str) else repr(a) for w, a in answers.items() if a != ""}
    if bad:
        shown = "\n".join(f"  {w}: {a}" for w, a in sorted(bad.items())[:10])
        raise StoreError(
            f"{len(bad)} of {len(answers)} {engine} worker(s) cannot use the store's directory "
            f"{directory}, where checkpoints and large values live:\n{shown}\n"
            "Put the store (cache_path) on a filesystem that every worker mounts at the same "
            "path."
        )


def answer_probe(path: str, token: str) -> str:
    """On a worker: ``""`` if ``path`` holds ``token`` and a file can be written beside it."""
    host = socket.gethostname()
    try:
        if Path(path).read_text() != token:
            return f"{path} on {host} is not the file the driver wrote (another filesystem?)"
        reply = Path(f"{path}.{uuid.uuid4().hex}")
        reply.write_text(host)
        reply.unlink()
    except FileNotFoundError:
        return f"the file the driver wrote, {path}, is not visible on {host} (another filesystem?)"
    except OSError as exc:
        return f"{type(exc).__name__} on {host}: {exc}"
    return ""
