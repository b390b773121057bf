"""Executors on this machine: worker processes (pebble), threads, inline, or any
``concurrent.futures.Executor`` you already have."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from memento._util.checks import positive_int_or_none
from memento._util.cpus import available_cpus
from memento.exceptions import WorkerDied
from memento.executors.base import Executor, ProgressUpdate, describe_exit, exit_kind
from memento.executors.timeouts import SoftTimeouts, timed_out
from memento.worker.memory import OOM_EXIT_CODE
from memento.worker.output import OutputFrames, OutputRecord, encode_marker, prefix_lines
from memento.worker.process import init_process_worker
from memento.worker.task import run_job
from memento.worker.wire import Job, Outcome


def default_start_method() -> str:
    """How worker processes start when ``ProcessExecutor(start_method=None)``.

    The method set with ``multiprocessing.set_start_method``, else ``"fork"`` on Linux, else
    the platform's default. A method equal to the platform's default counts as not set:
    ``multiprocessing`` fixes that one on its own as soon as anything uses it.
    """
    default = multiprocessing.get_all_start_methods()[0]
    chosen = multiprocessing.get_start_method(allow_none=True)
    if chosen is not None and chosen != default:
        return chosen
    return "fork" if sys.platform.startswith("linux") else default


def _check_workers(num_workers: int | None) -> int:
    return positive_int_or_none("num_workers", num_workers) or available_cpus()


_pebble_lock = threading.Lock()
#: The thread importing pebble ahead of the pool (see :func:`import_pebble_soon`).
_pebble_import: threading.Thread | None = None


def import_pebble_soon() -> None:
    """Start importing pebble in a background thread, once per process, unless it is loaded.

    pebble's import takes 25-35 ms (it loads ``asyncio``), all of it on the way to a run's
    first experiment when the pool imports it; started when a :class:`ProcessExecutor` is
    made, it overlaps with what the run does before it needs the pool (the store opened and
    created, mostly waiting for the disk). The pool waits for this thread to end
    (:func:`wait_for_pebble`) before it forks its workers: a child forked in the middle of an
    import would inherit that module's lock held by a thread it does not have.

    Example::

        import_pebble_soon()
        ...  # other work
        wait_for_pebble()
        from pebble import ProcessPool  # already loaded
    """
    global _pebble_import
    with _pebble_lock:
        if _pebble_import is not None or "pebble" in sys.modules:
            return
        _pebble_import = threading.Thread(
            target=_import_pebble, name="memento-import-pebble", daemon=True
        )
        _pebble_import.start()


def _import_pebble() -> None:
    """The thread of :func:`import_pebble_soon`."""
    try:
        import pebble  # noqa: F401
    except Exception:  # not installed, broken: the pool's own import says so, in its thread
        pass


def wait_for_pebble() -> None:
    """Wait until the import :func:`import_pebble_soon` started has ended (no-op without)."""
    with _pebble_lock:
        thread = _pebble_import
    if thread is not None and thread is not threading.current_thread():
        thread.join()


class ProcessExecutor(Executor):
    """Crash-isolated worker processes (a pebble ``ProcessPool``).

    A segfault, ``os._exit`` or OOM kill fails only the experiment it hit; a timeout kills
    and replaces the worker. The experiment, its parameters and its settings travel with
    cloudpickle, so lambdas, local functions and classes, modules, and whatever ``__main__``
    (a script or a notebook) defines work under every start method.

    ``max_tasks=n`` replaces each worker after ``n`` experiments (experiments are then never
    batched into one job); ``max_tasks=1`` gives every experiment a fresh process.

    ``start_method`` is ``"fork"``, ``"spawn"`` or ``"forkserver"``. By default it is the one
    the program chose with ``multiprocessing.set_start_method`` (as memento-ml 1.2's pool
    did), else ``"fork"`` on Linux, so that scripts without an
    ``if __name__ == "__main__":`` guard work, else the platform's default (``"spawn"`` on
    macOS and Windows, where a script needs that guard).

    Example::

        Memento(experiment, executor=ProcessExecutor(max_workers=4, max_tasks=100))
        Memento(experiment, executor=ProcessExecutor(start_method="spawn"))
    """

    own_process = True
    batching = True
    reports_progress = True
    name = "process"

    def __init__(
        self, max_workers: int | None = None, *, max_tasks: int = 0, start_method: str | None = None
    ) -> None:
        self.max_workers = _check_workers(max_workers)
        #: Experiments a worker process runs before it is replaced (0: never).
        self.max_tasks = max_tasks
        # pebble counts jobs, not experiments: a batch would run several in one process.
        self.batching = max_tasks == 0
        methods = multiprocessing.get_all_start_methods()
        if start_method is not None and start_method not in methods:
            raise ValueError(
                f"start_method must be one of {', '.join(map(repr, methods))} on this platform "
                f"(or None for the default), got {start_method!r}"
            )
        #: As given: ``None`` is resolved when the workers start (:func:`default_start_method`).
        self.start_method = start_method
        self._pool: Any = None
        # context.progress updates: a pipe of their own, non-blocking on the workers' side
        # (an update the driver is too slow for is dropped), read by progress_updates().
        self._pipe: tuple[Any, Any] | None = None
        self._reading = False
        self._pending: set[cf.Future[Any]] = set()
        # Experiments' output: a pipe of its own (blocking writes, nothing dropped), read by a
        # thread that hands each record to the sink.
        self._output: tuple[Any, Any] | None = None
        self._output_reader: threading.Thread | None = None
        self._output_sink: Callable[[list[Any]], None] | None = None
        self._marks = 0
        self._marks_seen = 0
        self._marks_changed = threading.Condition()
        import_pebble_soon()

    def _get_pool(self) -> Any:
        if self._pool is None:
            wait_for_pebble()  # before any fork: see import_pebble_soon
            from pebble import ProcessPool

            context = multiprocessing.get_context(self.start_method or default_start_method())
            # A connection (not a bare descriptor) reaches spawned workers too; the workers
            # write to its descriptor directly (no lock to die with, see worker.py).
            out_read, out_write = context.Pipe(duplex=False)
            self._output = (out_read, out_write)
            self._output_reader = threading.Thread(
                target=self._read_output, args=(out_read,), name="memento-output", daemon=True
            )
            self._output_reader.start()
            # Progress updates too travel on a connection (every start method), which the
            # workers write to directly (no lock to die with).
            read, write = context.Pipe(duplex=False)
            os.set_blocking(write.fileno(), False)
            self._pipe = (read, write)
            self._pool = ProcessPool(
                max_workers=self.max_workers,
                max_tasks=self.max_tasks,
                initializer=init_process_worker,
                initargs=(write, out_write),
                context=context,
            )
        return self._pool

    def progress_updates(self) -> Iterator[ProgressUpdate]:
        """``context.progress`` updates from the workers, until :meth:`shutdown`.

        The pool (and its pipe) is created now, in the calling thread; the iterator may then
        be consumed in another thread.
        """
        self._get_pool()
        if self._pipe is None:
            return iter(())
        self._reading = True
        return self._read_progress(self._pipe[0])

    def _read_progress(self, read: Any) -> Iterator[ProgressUpdate]:
        buffer = b""
        try:
            while True:
                chunk = os.read(read.fileno(), 65536)
                if not chunk:
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line:  # the stop sentinel from shutdown()
                        return
                    key, done, total = line.decode().split("\t")
                    yield key, float(done), float(total) if total else None
        except (OSError, ValueError):
            return
        finally:
            read.close()

    def set_output_sink(self, sink: Callable[[list[OutputRecord]], None] | None) -> None:
        """Where the output records of the workers go (lists of ``(key, label, text,
        first)``, see :data:`memento.worker.output.OutputRecord`), from the reader thread. ``None``:
        to this process's stderr, each line prefixed with its config."""
        self._output_sink = sink

    def drain_output(self, timeout: float = 10.0) -> None:
        """Wait until the output the workers wrote so far has reached the sink."""
        output, reader = self._output, self._output_reader
        if output is None or reader is None or not reader.is_alive():
            return
        with self._marks_changed:
            self._marks += 1
            number = self._marks
        try:
            os.write(output[1].fileno(), encode_marker(number))
        except OSError:
            return
        with self._marks_changed:
            self._marks_changed.wait_for(lambda: self._marks_seen >= number, timeout)

    def _read_output(self, conn: Any) -> None:
        frames = OutputFrames()
        fd = conn.fileno()
        try:
            while True:
                data = os.read(fd, 1 << 16)
                if not data:
                    return
                records = []
                for item in frames.feed(data):
                    if isinstance(item, tuple):
                        records.append(item)
                        continue
                    self._deliver(records)
                    records = []
                    if item is None:  # the stop signal from shutdown()
                        return
                    with self._marks_changed:
                        self._marks_seen = max(self._marks_seen, item)
                        self._marks_changed.notify_all()
                self._deliver(records)
        except OSError:
            return
        finally:
            conn.close()
            with self._marks_changed:
                self._marks_seen = 1 << 62  # nobody waits for a reader that is gone
                self._marks_changed.notify_all()

    def _deliver(self, records: list[Any]) -> None:
        if not records:
            return
        sink = self._output_sink
        try:
            if sink is not None:
                sink(records)
            else:
                sys.stderr.write("".join(prefix_lines(r[1], r[2]) for r in records))
                sys.stderr.flush()
        except Exception:  # a broken sink must not stop the reader (the workers would block)
            pass

    def submit(self, job: Job, *, timeout: float | None = None) -> cf.Future[list[Outcome]]:
        return self.schedule(run_job, job, timeout=timeout)

    def schedule(
        self, fn: Callable[..., Any], /, *args: Any, timeout: float | None = None
    ) -> cf.Future[Any]:
        """Run any picklable ``fn(*args)`` in a worker; the timeout kills that worker.

        Read the future with :meth:`result`, as for :meth:`submit` (memento-ml 1.2's
        ``TaskManager`` runs its tasks this way).
        """
        future: cf.Future[Any] = self._get_pool().schedule(fn, args=args, timeout=timeout)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    def result(self, future: cf.Future[Any]) -> Any:
        from pebble import ProcessExpired

        try:
            return future.result()
        except ProcessExpired as exc:
            died = WorkerDied(
                f"The worker process {describe_exit(exc.exitcode)}",
                kind=exit_kind(exc.exitcode, oom_exit=OOM_EXIT_CODE),
            )
            died.exitcode = exc.exitcode
            raise died from None
        except cf.TimeoutError as exc:
            seconds = exc.args[1] if len(exc.args) > 1 else None
            raise timed_out(seconds, "its worker process was killed and replaced") from None

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            try:
                os.set_blocking(pipe[1].fileno(), True)
                os.write(pipe[1].fileno(), b"\n\n")  # wakes and stops the progress reader
            except OSError:
                pass
            pipe[1].close()
            if not self._reading:
                pipe[0].close()
            self._reading = False
        try:
            if pool is None:
                return
            if wait and not cancel and self._pending:
                pool.close()  # let submitted jobs finish (close() polls every 0.1 s)
                pool.join()
            elif cancel:
                pool.stop()
                pool.join()
            else:
                # Nothing is left to run (the runner's case: it shuts down when done). pebble's
                # join() waits up to 0.1 s for its manager thread's next tick: let a background
                # thread do that instead of the caller; idle workers are stopped either way.
                pool.stop()
                threading.Thread(target=pool.join, name="memento-pool-join", daemon=True).start()
        finally:
            self._stop_output(wait=not cancel)

    def _stop_output(self, wait: bool) -> None:
        """Stop the output reader once it has handed on everything written so far."""
        output, self._output = self._output, None
        reader, self._output_reader = self._output_reader, None
        if output is None:
            return
        try:
            os.write(output[1].fileno(), encode_marker(0, stop=True))
        except OSError:
            pass
        if reader is not None and wait:
            reader.join(timeout=10)
        output[1].close()


class FuturesExecutor(Executor):
    """Adapts any ``concurrent.futures.Executor`` (yours, or a cluster's) to the seam.

    Timeouts are enforced on the driver's side: the experiment is reported as timed out, but
    a running job cannot be stopped, so it is abandoned. The wrapped executor is not shut down.
    """

    name = "concurrent.futures"

    def __init__(
        self, executor: cf.Executor, max_workers: int | None = None, *, owned: bool = False
    ) -> None:
        self.executor = executor
        self.max_workers = (
            max_workers or getattr(executor, "_max_workers", None) or available_cpus()
        )
        self._owned = owned
        self._timeouts = SoftTimeouts()

    def submit(self, job: Job, *, timeout: float | None = None) -> cf.Future[list[Outcome]]:
        inner = self.executor.submit(run_job, job)
        return inner if timeout is None else self._timeouts.wrap(inner, timeout)

    def check_resources(
        self, *, gpus_per_experiment: float | None, memory_limit: int | None
    ) -> None:
        if memory_limit is not None:
            raise ValueError(
                f"memory_limit needs memento's own worker processes (executor='process') or a "
                f"cluster engine; the {self.name} executor cannot stop one experiment's "
                "processes without breaking its pool"
            )

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:
        if self._owned:
            # Jobs abandoned after a timeout may still be running: never wait for them.
            wait = wait and not cancel and not self._timeouts.abandoned
            self.executor.shutdown(wait=wait, cancel_futures=cancel)


class ThreadExecutor(FuturesExecutor):
    """Threads of the driver's process: no pickling, no crash isolation.

    A timed-out experiment is reported as failed, but its thread cannot be stopped and runs on
    in the background.
    """

    in_process = True
    measures_thread_cpu = True
    name = "thread"

    def __init__(self, max_workers: int | None = None) -> None:
        workers = _check_workers(max_workers)
        super().__init__(
            cf.ThreadPoolExecutor(workers, thread_name_prefix="memento"), workers, owned=True
        )


class InlineExecutor(Executor):
    """Runs each experiment in the calling thread, one at a time: breakpoints and debuggers
    work. A timeout is enforced with ``SIGALRM`` when running in the main thread."""

    in_process = True
    name = "inline"
    max_workers = 1

    def submit(self, job: Job, *, timeout: float | None = None) -> cf.Future[list[Outcome]]:
        future: cf.Future[list[Outcome]] = cf.Future()
        future.set_running_or_notify_cancel()
        try:
            with _Alarm(timeout):
                outcomes = run_job(job)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(outcomes)
        return future

    def max_in_flight(self) -> int:
        return 1


class _Alarm:
    """The inline executor's timeout: ``SIGALRM`` interrupts the experiment with
    :class:`~memento.exceptions.ExperimentTimeout` (in the main thread only; elsewhere no
    signal can reach it, and the timeout is not enforced)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._previous: Any = None

    def __enter__(self) -> None:
        if not self.seconds or threading.current_thread() is not threading.main_thread():
            self.seconds = None
            return
        seconds = self.seconds

        def on_alarm(signum: int, frame: Any) -> None:
            raise timed_out(seconds, "it was interrupted")

        self._previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def __exit__(self, *exc: object) -> None:
        if self.seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)


def make_executor(spec: Any, num_workers: int | None) -> tuple[Executor, bool]:
    """Turn ``Memento(executor=...)`` into an :class:`Executor`; also say whether we own it."""
    if isinstance(spec, Executor):
        return spec, False
    if isinstance(spec, cf.Executor):
        return FuturesExecutor(spec, num_workers), False
    if spec == "process":
        return ProcessExecutor(num_workers), True
    if spec == "thread":
        return ThreadExecutor(num_workers), True
    if spec == "inline":
        return InlineExecutor(), True
    raise ValueError(
        f"executor must be 'process', 'thread', 'inline', a memento Executor or a "
        f"concurrent.futures.Executor, got {spec!r}"
    )
