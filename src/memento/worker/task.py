"""The code that runs inside a worker: one job = one or more experiments, each turned into an
:class:`Outcome` (value or error + traceback, timing, memory, metrics). Nothing here raises for
an experiment's failure: the failure *is* the outcome.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from memento._util.text import truncate
from memento.exceptions import ExperimentError
from memento.matrix.configs import Config
from memento.worker.context import Context, FileCheckpoints

_functions: dict[str, Any] = {}  # digest -> loaded experiment, once per worker process


class FunctionRef:
    """An experiment callable on its way to a worker: pickled once, loaded once per process."""

    __slots__ = ("digest", "obj", "payload")

    def __init__(self, obj: Any, digest: str, *, payload: bytes | None = None) -> None:
        self.obj = obj
        self.digest = digest
        self.payload = payload

    def ensure_payload(self) -> None:
        if self.payload is None:
            self.payload = dumps_keeping_filenames(self.obj)

    def __getstate__(self) -> tuple[str, bytes | None]:
        self.ensure_payload()
        return (self.digest, self.payload)

    def __setstate__(self, state: tuple[str, bytes | None]) -> None:
        self.obj = None
        self.digest, self.payload = state

    def resolve(self) -> Any:
        if self.obj is not None:
            return self.obj
        func = _functions.get(self.digest)
        if func is None:
            import cloudpickle

            assert self.payload is not None
            func = cloudpickle.loads(self.payload)
            _functions[self.digest] = func
        return func


def dumps_keeping_filenames(obj: Any) -> bytes:
    """``cloudpickle.dumps(obj)``, except that code sent by value (what a script or a notebook
    defines) keeps its file name: cloudpickle writes ``"<dynamic-code>"`` instead, and every
    traceback from the worker would then point there rather than at the user's file and line
    (a script's path, or the cell's name as IPython gives it)."""
    import io
    from collections import ChainMap

    import cloudpickle

    reduce_code = cloudpickle.Pickler.dispatch_table[types.CodeType]

    def keep_filename(code: types.CodeType) -> Any:
        rebuild, args = reduce_code(code)
        return rebuild, tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)

    class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        dispatch_table = ChainMap(
            {types.CodeType: keep_filename}, cloudpickle.Pickler.dispatch_table
        )

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


@dataclass
class Task:
    """One experiment to run."""

    key: str
    config: Config
    attempt: int = 1


@dataclass
class Job:
    """What an executor runs: experiments of one function, sharing the worker-side settings."""

    function: FunctionRef
    tasks: list[Task]
    checkpoint_dir: str
    #: Prefix the experiment's output with its config and send it to stderr.
    redirect_output: bool = True
    #: Measure CPU time of the thread (threads) rather than of the process.
    thread_cpu: bool = False
    #: Reset the process's peak-memory counter before each experiment (own process only).
    reset_memory_peak: bool = True
    #: Send each outcome's value pickled (cross-process) or as the object itself (in-process).
    pickle_values: bool = True
    progress: Callable[[str, float, float | None], None] | None = field(default=None, repr=False)
    #: Where an in-process experiment's output lines go (see :data:`OutputSink`).
    output: Callable[[str, str, str, bool], None] | None = field(default=None, repr=False)
    #: Set in a worker when the tasks' configs could not be rebuilt there (see ``_TaskWire``).
    load_error: BaseException | None = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # A local callback never travels; a worker sets load_error itself.
        state["progress"] = state["output"] = state["load_error"] = None
        wire = state.pop("_wire", None)  # a job passed on unchanged (Dask -> its process pool)
        state["tasks"] = wire if wire is not None else _TaskWire.pack(self.tasks)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        wire = state["tasks"]
        if isinstance(wire, _TaskWire):  # else a list: pickled by an earlier memento (Slurm)
            state["tasks"], state["load_error"] = wire.unpack()
            state["_wire"] = wire
        self.__dict__.update(state)


class _TaskWire:
    """The tasks of a job as they travel to a worker.

    The standard pickle (what ``multiprocessing`` and pebble use) cannot send lambdas, local
    functions and classes, modules, or anything defined in ``__main__`` under ``spawn``, so
    parameters and settings travel with cloudpickle, as memento-ml 1.2 sent them. One
    cloudpickle call per job, over plain tuples (the shared settings dict once): for plain
    data this costs less than pickling the ``Task`` and ``Config`` objects did. Keys and
    attempts travel beside it, so a worker that cannot rebuild the configs still reports
    each experiment's failure instead of losing the job.
    """

    __slots__ = ("attempts", "keys", "payload")

    def __init__(self, keys: list[str], attempts: list[int], payload: bytes) -> None:
        self.keys = keys
        self.attempts = attempts
        self.payload = payload

    @classmethod
    def pack(cls, tasks: list[Task]) -> _TaskWire:
        import cloudpickle

        # Config's whole state is its two slots (a test keeps this in step with matrix.py).
        rows = [(t.config._params, t.config.settings) for t in tasks]
        try:
            payload = cloudpickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise _unpicklable(tasks, exc) from exc
        return cls([t.key for t in tasks], [t.attempt for t in tasks], payload)

    def unpack(self) -> tuple[list[Task], BaseException | None]:
        try:
            import cloudpickle

            rows = cloudpickle.loads(self.payload)
        except Exception as exc:
            error = RuntimeError(
                "The experiment's parameters or settings could not be rebuilt in the worker "
                f"process: {type(exc).__name__}: {exc}. Every module a value comes from must be "
                "importable there; cloudpickle.register_pickle_by_value(module) sends a "
                "module's code along instead."
            )
            error.__cause__ = exc
            empty = Config._make({}, {})
            return [Task(k, empty, a) for k, a in zip(self.keys, self.attempts)], error
        tasks = [
            Task(key, Config._make(params, settings), attempt)
            for key, attempt, (params, settings) in zip(self.keys, self.attempts, rows)
        ]
        return tasks, None

    def __getstate__(self) -> tuple[list[str], list[int], bytes]:
        return (self.keys, self.attempts, self.payload)

    def __setstate__(self, state: tuple[list[str], list[int], bytes]) -> None:
        self.keys, self.attempts, self.payload = state


def _unpicklable(tasks: list[Task], exc: Exception) -> TypeError:
    """A clear error naming the first parameter or setting that cannot travel to a worker."""
    import cloudpickle

    for task in tasks:
        config = task.config
        values = [(f"parameter {k}", v) for k, v in config._params.items()]
        values += [(f"setting {k}", v) for k, v in config.settings.items()]
        for what, value in values:
            try:
                cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as inner:
                return TypeError(
                    f"The {what} (a {type(value).__qualname__}) of config {config} cannot be "
                    f"pickled to send it to a worker process: {inner}. Make it picklable, or "
                    "run in this process with executor='thread' or 'inline'."
                )
    return TypeError(
        f"The configs of this job cannot be pickled to send them to a worker process: {exc}"
    )


@dataclass
class Outcome:
    """What happened to one experiment."""

    key: str
    ok: bool
    value: bytes | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    error: bytes | None = None
    start_time: float = 0.0
    end_time: float = 0.0
    cpu_time: float = 0.0
    peak_rss: int | None = None
    peak_vms: int | None = None
    metrics: dict[str, list[tuple[Any, Any]]] = field(default_factory=dict)
    progress: float | None = None
    host: str = ""
    pid: int = 0
    attempt: int = 1
    #: What the experiment wrote to stdout and stderr (the last :data:`OUTPUT_LIMIT`
    #: characters); ``None`` when it never ran in a worker (the driver may know some of it).
    output: str | None = None
    #: The value itself, when the outcome never left the driver's process (not pickled).
    local_value: Any = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["local_value"] = None
        return state

    @property
    def runtime(self) -> float:
        return self.end_time - self.start_time


def run_job(job: Job) -> list[Outcome]:
    """Run every experiment of ``job`` and return their outcomes, in order."""
    if job.load_error is not None:
        return [_failed(task, job.load_error) for task in job.tasks]
    func = job.function.resolve()
    outcomes = []
    # Where nothing routes output (a cluster's worker), capture it for this job only.
    held = job.redirect_output and output_router.hold()
    try:
        for task in job.tasks:
            try:
                outcomes.append(run_task(func, task, job))
            except KeyboardInterrupt:
                raise  # Ctrl-C in the inline executor (see run_task)
            except BaseException as exc:  # memento's own bookkeeping broke: fail this task
                outcomes.append(_failed(task, exc))
    finally:
        if held:
            output_router.release()
    return outcomes


def _failed(task: Task, exc: BaseException) -> Outcome:
    host, pid = socket.gethostname(), os.getpid()
    outcome = Outcome(key=task.key, ok=False, host=host, pid=pid, attempt=task.attempt)
    _fill_error(outcome, exc)
    return outcome


def run_task(func: Any, task: Task, job: Job) -> Outcome:
    """Run one experiment; every exception it raises becomes a failed :class:`Outcome`."""
    sink = job.progress
    if sink is None and _progress_fd is not None:
        sink = _send_progress
    context = Context(task.key, FileCheckpoints(job.checkpoint_dir), progress_sink=sink)
    if sink is not None:
        try:
            sink(task.key, 0.0, None)  # tells the live display that this experiment began
        except Exception:
            pass
    host, pid = socket.gethostname(), os.getpid()
    if job.reset_memory_peak:
        _reset_peak_memory()
    clock = time.thread_time if job.thread_cpu else time.process_time
    label = _label(task.config)
    if job.redirect_output:
        output_router.begin(label, task.key, sink=job.output, interactive=_ctrl_c_lands_here(job))
    config = _own_copy(task.config)
    # A reused worker process gives each experiment the directory and environment it started
    # with (threads share the driver's, which memento leaves alone).
    saved = _Surroundings() if job.pickle_values else None
    start, cpu0 = time.time(), clock()
    outcome = Outcome(key=task.key, ok=True, host=host, pid=pid, attempt=task.attempt)
    try:
        value = func(context, config)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and _ctrl_c_lands_here(job):
            raise  # the user pressed Ctrl-C: stop the run (the driver stores what finished)
        # SystemExit (sys.exit() in the experiment) fails this cell, never the program.
        _fill_error(outcome, exc)
    else:
        if job.pickle_values:
            try:
                import cloudpickle

                outcome.value = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                _fill_error(
                    outcome,
                    TypeError(
                        f"The experiment returned a {type(value).__qualname__} that cannot be "
                        f"pickled, so it cannot be stored: {exc}"
                    ),
                )
        else:
            outcome.local_value = value
    finally:
        outcome.end_time = time.time()
        outcome.cpu_time = clock() - cpu0
        if saved is not None:
            saved.restore()
        if job.redirect_output:
            outcome.output = output_router.end()
    outcome.start_time = start
    outcome.metrics = context.metric_rows()
    done, total = context.progress_state
    outcome.progress = (done / total) if total else None
    outcome.peak_rss, outcome.peak_vms = _peak_memory()
    return outcome


def _own_copy(config: Config) -> Config:
    """``config`` with its own deep copy of the settings: what one experiment changes there,
    the next never sees (the experiments of a job share one settings dict on the wire, and
    in-process executors share the driver's). Settings that cannot be copied are shared."""
    if not config.settings:
        return config
    try:
        settings = copy.deepcopy(config.settings)
    except Exception:
        return config
    return Config._make(config._params, settings)


class _Surroundings:
    """The working directory and ``os.environ`` now, to put back after an experiment."""

    __slots__ = ("cwd", "environ")

    def __init__(self) -> None:
        try:
            self.cwd: str | None = os.getcwd()
        except OSError:
            self.cwd = None
        self.environ = _environ_data()

    def restore(self) -> None:
        if self.cwd is not None:
            try:
                changed = os.getcwd() != self.cwd
            except OSError:  # the experiment removed the directory it moved to
                changed = True
            if changed:
                try:
                    os.chdir(self.cwd)
                except OSError:
                    pass
        if _environ_data() != self.environ:
            before = {os.fsdecode(k): os.fsdecode(v) for k, v in self.environ.items()}
            for name in [n for n in os.environ if n not in before]:
                del os.environ[name]  # through os.environ, so that putenv/unsetenv follow
            for name, value in before.items():
                if os.environ.get(name) != value:
                    os.environ[name] = value


def _environ_data() -> dict[Any, Any]:
    # A copy of os.environ's own dict: a C-level copy, ~100 times cheaper than dict(os.environ)
    # (which decodes every entry), and this runs twice per experiment.
    data = getattr(os.environ, "_data", None)
    return dict(data) if isinstance(data, dict) else dict(os.environ)


def _ctrl_c_lands_here(job: Job) -> bool:
    """Whether a ``KeyboardInterrupt`` may be the user's Ctrl-C rather than the experiment's
    own ``raise``: only in the driver's main thread (the inline executor). Process workers
    ignore SIGINT and Python delivers it to the main thread only, so elsewhere the
    experiment raised it itself, and it fails that cell like any exception."""
    return not job.pickle_values and threading.current_thread() is threading.main_thread()


def _fill_error(outcome: Outcome, exc: BaseException) -> None:
    outcome.ok = False
    (outcome.error_type, outcome.error_message, outcome.traceback, outcome.error) = describe_error(
        exc
    )


def describe_error(exc: BaseException) -> tuple[str, str, str, bytes | None]:
    """In the worker: an exception as data for the driver: type name, message, traceback text,
    and the pickled exception (``None`` when it would not come back in one piece)."""
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception as inner:  # a broken __str__ is handled there; anything stranger here
        text = f"{type(exc).__qualname__}: (the traceback could not be formatted: {inner!r})\n"
    try:
        import cloudpickle

        data: bytes | None = cloudpickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)  # type: ignore[arg-type]  # one that pickles but cannot be rebuilt
    except Exception:
        data = None
    return type(exc).__qualname__, safe_str(exc), text, data


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in saying so when the exception's ``__str__`` itself raises."""
    try:
        return str(exc)
    except Exception as inner:
        return f"<str() of the {type(exc).__qualname__} failed: {type(inner).__name__}: {inner}>"


def rebuild_error(
    pickled: bytes | None, exc_type: str, message: str, text: str, **attributes: Any
) -> BaseException:
    """In the driver: the worker's exception back (or an :class:`ExperimentError` standing in
    for it), with ``attributes`` (``config``, ``traceback``, ...) attached."""
    error: BaseException | None = None
    if pickled is not None:
        try:
            import cloudpickle

            error = cloudpickle.loads(pickled)
            str(error)  # one whose __str__ raises would break every message that shows it
            if isinstance(error, SystemExit) and error.code is None and error.args:
                # tblib's pickling (installed by dask.distributed) rebuilds exceptions
                # without calling __init__, which is what sets SystemExit.code.
                error.code = error.args[0] if len(error.args) == 1 else str(error.args)
        except Exception:
            error = None
    if error is None:
        # Stands in for an exception that cannot come back: its type name leads the message.
        error = ExperimentError(f"{exc_type}: {message}", exc_type=exc_type, traceback=text)
    return attach(error, **attributes)


def attach(error: BaseException, **attributes: Any) -> BaseException:
    """Set ``attributes`` on ``error``; an exception that refuses them (``__slots__``) is
    wrapped in an :class:`ExperimentError` that carries them instead."""
    try:
        for name, value in attributes.items():
            setattr(error, name, value)
    except (AttributeError, TypeError):
        wrapped = ExperimentError(
            f"{type(error).__qualname__}: {error}",
            exc_type=type(error).__qualname__,
            traceback=attributes.get("traceback", ""),
            config=attributes.get("config"),
        )
        for name, value in attributes.items():
            setattr(wrapped, name, value)
        return wrapped
    return error


def _label(config: Config) -> str:
    return truncate(str(config), 60)


# -- output ----------------------------------------------------------------------------------
#: Characters of an experiment's output kept on its outcome (the tail; at least 1 MiB).
OUTPUT_LIMIT = 1 << 20
#: A line longer than this is forwarded in pieces (each shown as a line of its own).
_LINE_CAP = 1 << 16
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: One piece of an experiment's output on its way to the driver: (key, label, text, first).
#: ``text`` holds whole lines, except from an interactive (inline) experiment that flushed a
#: partial one (a prompt); ``first`` marks the first piece of an attempt.
OutputRecord = tuple[str, str, str, bool]
OutputSink = Callable[[str, str, str, bool], None]


class OutputTail:
    """The last :data:`OUTPUT_LIMIT` characters written, and how many came before them."""

    __slots__ = ("_chunks", "_size", "cut", "limit")

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.limit = limit
        self._chunks: list[str] = []
        self._size = 0
        self.cut = 0

    def add(self, text: str) -> None:
        if text:
            self._chunks.append(text)
            self._size += len(text)
            if self._size > 2 * self.limit:  # trimming at twice the limit keeps add() O(1)
                self._trim()

    def _trim(self) -> None:
        joined = "".join(self._chunks)
        kept = joined[-self.limit :]
        self.cut += len(joined) - len(kept)
        self._chunks, self._size = [kept], len(kept)

    @property
    def open_line(self) -> bool:
        """Whether the text ends inside a line (an interactive prompt)."""
        return bool(self._chunks) and not self._chunks[-1].endswith("\n")

    def text(self) -> str:
        if self._size > self.limit:
            self._trim()
        body = "".join(self._chunks)
        if self.cut:
            return f"[memento: {self.cut} earlier characters of output were cut]\n{body}"
        return body


def prefix_lines(label: str, text: str, continued: bool = False) -> str:
    """``text`` with ``[label] `` before each line (not before the first when ``continued``:
    it goes on a line an interactive experiment left open)."""
    prefix = f"[{label}] "
    lines = text.split("\n")
    last = lines.pop()  # "" when text ends with a newline
    out = [line if (i == 0 and continued) else prefix + line for i, line in enumerate(lines)]
    shown = "\n".join(out) + "\n" if out else ""
    if last:
        shown += last if (continued and not out) else prefix + last
    return shown


class _Capture:
    """The output of one running experiment: its tail, and the line being written."""

    __slots__ = ("first", "interactive", "key", "label", "lock", "pending", "sink", "size", "tail")

    def __init__(self, key: str, label: str, sink: OutputSink | None, interactive: bool) -> None:
        self.key = key
        self.label = _CONTROL.sub(" ", label)
        self.sink = sink
        self.interactive = interactive
        self.tail = OutputTail()
        self.pending: list[str] = []
        self.size = 0
        self.first = True
        # Threads the experiment starts write here too (in a worker process).
        self.lock = threading.Lock()

    def write(self, text: str, original: Any) -> None:
        with self.lock:
            self.tail.add(text)
            if self.sink is None:  # nobody to forward to (a cluster worker): pass it through
                if original is not None:
                    original.write(text)
                return
            self.pending.append(text)
            self.size += len(text)
            if "\n" not in text and self.size < _LINE_CAP:
                return
            joined = "".join(self.pending)
            head, newline, rest = joined.rpartition("\n")
            self.pending, self.size = ([rest], len(rest)) if rest else ([], 0)
            if newline:
                self._send(head + "\n")
            if self.size >= _LINE_CAP:
                self.pending, self.size = [], 0
                self._send(rest + "\n")

    def flush(self, final: bool = False) -> None:
        """Forward the partial line: always at the end, on ``flush()`` when interactive (so
        that a debugger's or ``input()``'s prompt shows)."""
        with self.lock:
            if self.pending and self.sink is not None and (final or self.interactive):
                text = "".join(self.pending)
                self.pending, self.size = [], 0
                self._send(text if self.interactive and not final else text + "\n")

    def _send(self, text: str) -> None:
        assert self.sink is not None
        first, self.first = self.first, False
        try:
            self.sink(self.key, self.label, text, first)
        except Exception:  # a closed channel must not fail the experiment
            pass


class _LineRouter:
    """Replaces ``sys.stdout``/``sys.stderr``: what an experiment writes while it runs is kept
    (the tail of it goes on its outcome) and forwarded line by line to a sink: in a worker
    process the output pipe to the driver, in the driver the run's display. Output written
    when no experiment runs passes through unchanged.

    In a worker process one experiment runs at a time, so threads it starts are captured too;
    with the thread executor each thread captures its own experiment.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self.installed = False
        self._originals: tuple[Any, Any] | None = None
        self._holds = 0
        self._hold_lock = threading.Lock()
        #: The process's default sink (a worker process: the pipe to the driver).
        self.sink: OutputSink | None = None
        #: Attribute every thread's output to the running experiment (worker processes).
        self.process_wide = False
        self._shared: _Capture | None = None

    def install(self) -> None:
        if self.installed:
            return
        self._originals = (sys.stdout, sys.stderr)
        sys.stdout = _RoutedStream(self, 0)  # type: ignore[assignment]
        sys.stderr = _RoutedStream(self, 1)  # type: ignore[assignment]
        self.installed = True

    def uninstall(self) -> None:
        if self.installed and self._originals is not None:
            # Streams the program set since are its own: leave them.
            if isinstance(sys.stdout, _RoutedStream):
                sys.stdout = self._originals[0]
            if isinstance(sys.stderr, _RoutedStream):
                sys.stderr = self._originals[1]
            self.installed = False

    def hold(self) -> bool:
        """Install for the length of a job, unless installed already; say whether to release."""
        with self._hold_lock:
            if self.installed and not self._holds:
                return False
            self._holds += 1
            self.install()
            return True

    def release(self) -> None:
        with self._hold_lock:
            self._holds -= 1
            if not self._holds:
                self.uninstall()

    def original(self, index: int) -> Any:
        """The stream this router stands in for (``index`` 0: stdout, 1: stderr)."""
        if self._originals is not None and self.installed:
            return self._originals[index]
        return sys.stdout if index == 0 else sys.stderr

    def begin(
        self,
        label: str,
        key: str = "",
        *,
        sink: OutputSink | None = None,
        interactive: bool = False,
    ) -> None:
        capture = _Capture(key, label, sink or self.sink, interactive)
        self._local.capture = capture
        if self.process_wide:
            self._shared = capture

    def end(self) -> str:
        """Stop capturing in this thread; return what the experiment wrote (its tail)."""
        capture = self._current()
        self._local.capture = None
        self._shared = None
        if capture is None:
            return ""
        capture.flush(final=True)
        return capture.tail.text()

    def _current(self) -> _Capture | None:
        capture: _Capture | None = getattr(self._local, "capture", None)
        return capture if capture is not None else self._shared

    def write(self, index: int, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        capture = self._current()
        original = self.original(index)
        if capture is None:
            return int(original.write(text)) if original is not None else len(text)
        capture.write(text, original)
        return len(text)

    def flush(self, index: int) -> None:
        capture = self._current()
        if capture is not None:
            capture.flush()
        if capture is None or capture.sink is None:
            try:
                self.original(index).flush()
            except Exception:
                pass

    def isatty(self, index: int) -> bool:
        if self._current() is not None:
            return False
        try:
            return bool(self.original(index).isatty())
        except Exception:
            return False

    def fileno(self, index: int) -> int:
        capture = self._current()
        if capture is not None and capture.sink is not None:
            return 2  # what bypasses the router still never lands on the driver's stdout
        return int(self.original(index).fileno())


class _RoutedStream:
    encoding = "utf-8"
    errors = "replace"

    def __init__(self, router: _LineRouter, index: int) -> None:
        self._router = router
        self._index = index

    def write(self, text: str) -> int:
        return self._router.write(self._index, text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._router.flush(self._index)

    def isatty(self) -> bool:
        return self._router.isatty(self._index)

    def fileno(self) -> int:
        return self._router.fileno(self._index)

    @property
    def buffer(self) -> Any:
        return sys.__stderr__.buffer if sys.__stderr__ is not None else None


#: The one router of this process (public: `compat.parallel` routes `TaskManager` output with it).
output_router = _LineRouter()


def install_output_router() -> None:
    """Route experiment output in this process (see :class:`_LineRouter`).

    Logging handlers created before (``logging.basicConfig`` in the user's script, inherited
    by a forked worker) write to the old stream objects; they are pointed at the router too,
    so that log records are captured and prefixed like prints.
    """
    import logging

    old_out, old_err = sys.stdout, sys.stderr
    output_router.install()
    handlers = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handlers.extend(getattr(logger, "handlers", ()))
    for handler in handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (old_out, old_err):
            handler.setStream(sys.stderr)


def uninstall_output_router() -> None:
    output_router.uninstall()


def driver_stderr() -> Any:
    """Where the driver shows forwarded output without a display: its stderr, never the router
    (a thread experiment's line would be captured again)."""
    return output_router.original(1)


# The output pipe: records cut into chunks of at most PIPE_BUF bytes, each written in one
# blocking os.write, which POSIX makes atomic: chunks of concurrent workers never mix, none is
# ever dropped, and a worker that outruns the driver waits. A chunk's header says which
# process sent it, so the reader puts each record back together.
_PIPE_BUF = getattr(select, "PIPE_BUF", 512)
_HEADER = struct.Struct("<IBH")  # pid (or a marker's number), flags, payload length
_START, _END, _MARK, _STOP = 1, 2, 4, 8
_output_fd: int | None = None
_send_lock = threading.Lock()


def encode_record(pid: int, key: str, label: str, text: str, first: bool) -> list[bytes]:
    """A record as the chunks that carry it on the output pipe."""
    data = b"".join(
        (
            b"\1" if first else b"\0",
            key.encode(),
            b"\0",
            label.encode("utf-8", "replace"),
            b"\0",
            text.encode("utf-8", "replace"),
        )
    )
    size = _PIPE_BUF - _HEADER.size
    chunks = []
    for start in range(0, len(data), size):
        flags = (_START if start == 0 else 0) | (_END if start + size >= len(data) else 0)
        piece = data[start : start + size]
        chunks.append(_HEADER.pack(pid, flags, len(piece)) + piece)
    return chunks


def encode_marker(number: int, *, stop: bool = False) -> bytes:
    """A chunk the driver writes itself: a drain marker, or the reader's stop signal."""
    return _HEADER.pack(number, _STOP if stop else _MARK, 0)


class OutputFrames:
    """The driver's side of the output pipe: bytes in, records (and markers) out."""

    def __init__(self) -> None:
        self._buffer = b""
        self._partial: dict[int, list[bytes]] = {}

    def feed(self, data: bytes) -> Iterator[OutputRecord | int | None]:
        """Records completed by ``data``; a marker as its number; ``None`` for stop."""
        buffer = self._buffer + data
        offset = 0
        while len(buffer) - offset >= _HEADER.size:
            pid, flags, length = _HEADER.unpack_from(buffer, offset)
            end = offset + _HEADER.size + length
            if end > len(buffer):
                break
            payload = buffer[offset + _HEADER.size : end]
            offset = end
            if flags & _STOP:
                yield None
                continue
            if flags & _MARK:
                yield pid
                continue
            if flags & _START:  # a worker killed mid-record left the rest behind: drop it
                self._partial[pid] = []
            parts = self._partial.setdefault(pid, [])
            parts.append(payload)
            if flags & _END:
                del self._partial[pid]
                record = _decode_record(b"".join(parts))
                if record is not None:
                    yield record
        self._buffer = buffer[offset:]


def _decode_record(data: bytes) -> OutputRecord | None:
    try:
        key, label, text = data[1:].split(b"\0", 2)
    except ValueError:
        return None
    return (
        key.decode(),
        label.decode("utf-8", "replace"),
        text.decode("utf-8", "replace"),
        data[:1] == b"\1",
    )


def _send_output(key: str, label: str, text: str, first: bool) -> None:
    if _output_fd is None:
        return
    chunks = encode_record(os.getpid(), key, label, text, first)
    # One record at a time per process: the reader joins chunks by process id.
    with _send_lock:
        for chunk in chunks:
            try:
                os.write(_output_fd, chunk)  # blocking: never dropped, whole or not at all
            except OSError:  # the driver is gone
                return


def _reset_send_lock() -> None:
    # A child forked while another thread held the lock would wait forever.
    global _send_lock
    _send_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_send_lock)


# -- process workers -------------------------------------------------------------------------
_progress_fd: int | None = None
_output_conn: Any = None


def _send_progress(key: str, done: float, total: float | None) -> None:
    # One short line per write: atomic on a pipe, never interleaved with other workers'.
    # The pipe is non-blocking: when the driver lags, the update is dropped, never waited for.
    if _progress_fd is None:
        return
    line = f"{key}\t{done}\t{'' if total is None else total}\n".encode()
    try:
        os.write(_progress_fd, line)
    except OSError:
        pass


def init_process_worker(progress_fd: int | None = None, output: Any = None) -> None:
    """Initializer of each worker process.

    The worker dies with the driver (no orphan keeps computing after ``kill -9`` of the
    driver), ignores Ctrl-C (the driver handles it and stops the workers), and sends its
    stdout to stderr so that stdout stays the user's program's own. ``progress_fd`` is the
    write end of the pipe that carries ``context.progress`` updates to the driver; ``output``
    the write end (a ``multiprocessing`` connection, so that it reaches spawned workers too)
    of the pipe that carries experiments' output.
    """
    global _progress_fd, _output_fd, _output_conn
    _progress_fd = progress_fd
    if output is not None:
        _output_conn = output  # keeps the descriptor open
        _output_fd = output.fileno()
        output_router.sink = _send_output
        output_router.process_wide = True
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
        os.killpg(os.getpid(), signal.SIGKILL)  # this worker too: pebble replaces it
    os._exit(128 + signum)


# -- memory ----------------------------------------------------------------------------------
def _reset_peak_memory() -> None:
    # Writing 5 to clear_refs resets the peak RSS (VmHWM) of this process (Linux >= 4.0).
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_memory() -> tuple[int | None, int | None]:
    try:
        with open("/proc/self/status") as f:
            status = f.read()
    except OSError:
        try:
            import resource

            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return (maxrss if sys.platform == "darwin" else maxrss * 1024), None
        except Exception:
            return None, None
    rss: int | None = None
    vms: int | None = None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmPeak:"):
            vms = int(line.split()[1]) * 1024
    return rss, vms


__all__ = ["FunctionRef", "Job", "Outcome", "Task", "init_process_worker", "run_job"]
