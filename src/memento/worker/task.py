"""The code that runs inside a worker: one job = one or more experiments, each turned into an
:class:`Outcome` (value or error + traceback, timing, memory, metrics). Nothing here raises for
an experiment's failure: the failure *is* the outcome.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from memento._util.cpus import available_cpus
from memento._util.files import atomic_write
from memento._util.text import truncate
from memento.matrix.configs import Config
from memento.store.backends import open_checkpoints
from memento.store.outputs import output_folder_name, prepare_attempt
from memento.store.paths import INLINE_LIMIT, value_file_name
from memento.store.values import encode
from memento.worker.context import CheckpointProvider, Context, FileCheckpoints
from memento.worker.errors import describe_error, error_kind, raised_at
from memento.worker.imports import new_top_level_modules
from memento.worker.memory import MemoryWatch
from memento.worker.output import output_router
from memento.worker.process import peak_memory, progress_sink, reset_peak_memory
from memento.worker.resources import cap_this_thread, gpu_environment, thread_cap
from memento.worker.wire import Job, Outcome, Task


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
                failed = _failed(task, exc)
                failed.kind = "infrastructure"
                outcomes.append(failed)
    finally:
        if held:
            output_router.release()
    return outcomes


def _failed(task: Task, exc: BaseException) -> Outcome:
    host, pid = socket.gethostname(), os.getpid()
    outcome = Outcome(key=task.key, ok=False, host=host, pid=pid, attempt=task.attempt)
    _fill_error(outcome, exc)
    return outcome


def checkpoint_provider(job: Job) -> CheckpointProvider:
    """Where ``job``'s experiments checkpoint: the store's database (a server store), else
    one file per key in the store's side directory."""
    if job.checkpoint_url:
        provider: CheckpointProvider = open_checkpoints(job.checkpoint_url)
        return provider
    return FileCheckpoints(job.checkpoint_dir, job.checkpoint_mode)


def run_task(func: Any, task: Task, job: Job) -> Outcome:
    """Run one experiment; every exception it raises becomes a failed :class:`Outcome`."""
    sink = job.progress if job.progress is not None else progress_sink()
    provider = checkpoint_provider(job)
    # Whether a folder is left from an earlier attempt (emptied now unless this one resumes).
    had_folder = bool(job.output_root) and _start_attempt(job.output_root, task.key, provider)
    threads = _cap_threads(job)
    context = Context(
        task.key,
        provider,
        progress_sink=sink,
        output_root=job.output_root,
        output_mode=job.checkpoint_mode,
        threads=threads,
        gpus=list(job.gpus) if job.gpus is not None else None,
    )
    if sink is not None:
        try:
            sink(task.key, 0.0, None)  # tells the live display that this experiment began
        except Exception:
            pass
    host, pid = socket.gethostname(), os.getpid()
    if job.reset_memory_peak:
        reset_peak_memory()
    clock = time.thread_time if job.thread_cpu else time.process_time
    label = _label(task.config)
    if job.redirect_output:
        output_router.begin(label, task.key, sink=job.output, interactive=_ctrl_c_lands_here(job))
    config = _own_copy(task.config)
    # A reused worker process gives each experiment the directory and environment it started
    # with (threads share the driver's, which memento leaves alone).
    saved = _Surroundings() if job.pickle_values or job.gpus is not None else None
    if job.gpus is not None:
        os.environ.update(gpu_environment(job.gpus))  # put back with the rest afterwards
    own_process = job.pickle_values and job.reset_memory_peak
    watch = _watch_memory(job, task.key) if own_process and job.memory_limit else None
    stacks = _StackDump.arm(job, task.key) if job.pickle_values else None
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
        _store_value(outcome, value, job)
    finally:
        outcome.end_time = time.time()
        outcome.cpu_time = clock() - cpu0
        if stacks is not None:
            stacks.disarm()
        if watch is not None:
            watch.stop()
        if saved is not None:
            saved.restore()
        if job.redirect_output:
            outcome.output = output_router.end()
    outcome.start_time = start
    outcome.metrics = context.metric_rows()
    done, total = context.progress_state
    outcome.progress = (done / total) if total else None
    outcome.peak_rss, outcome.peak_vms = peak_memory()
    if job.pickle_values:  # another process: what it imported is not in the driver's
        outcome.modules = new_top_level_modules()
    if had_folder or context.output_used:
        outcome.output_dir = _used_folder(job.output_root, task.key)
    return outcome


def _cap_threads(job: Job) -> int | None:
    """Cap this worker process's BLAS and OpenMP pools at ``job.threads`` (``0``: the CPUs
    this process may use, a cluster job's allocation); the cap, or ``None`` when the pools
    are left alone. In-process executors share the driver's pools, which the driver caps for
    the whole run (:func:`memento.worker.resources.limited`): they only report it."""
    threads = job.threads
    if threads is None:
        return None
    if threads == 0:
        threads = available_cpus()
    if job.pickle_values:
        thread_cap.apply(threads)
    elif threading.current_thread() is not threading.main_thread():
        cap_this_thread(threads)  # OpenMP's count is per thread: a pool thread caps its own
    return threads


def _watch_memory(job: Job, key: str) -> MemoryWatch:
    """Start watching the experiment's process tree against ``job.memory_limit``: over it,
    the worker leaves a report for the driver and ends itself (an ``oom`` failure)."""
    assert job.memory_limit is not None
    watch = MemoryWatch()
    watch.start(job.memory_limit, key, job.report_dir or None)
    return watch


class _StackDump:
    """faulthandler's dump of every thread's Python stack, armed to fire just before the
    engine's timeout kills the worker, into ``<report_dir>/<key>.stacks``: what the driver
    stores with the timeout, so ``memento show KEY`` says where the experiment hung. An
    experiment that finishes in time leaves no file."""

    __slots__ = ("file", "path")

    #: Fire this share of the timeout early (at most this many seconds), so that the dump is
    #: written before the engine's kill; the stack of a hung experiment does not move.
    _EARLY = 0.1
    _EARLY_MAX = 1.0

    def __init__(self, path: str, file: Any) -> None:
        self.path = path
        self.file = file

    @classmethod
    def arm(cls, job: Job, key: str) -> _StackDump | None:
        if not job.timeout or not job.report_dir:
            return None
        import faulthandler

        path = os.path.join(job.report_dir, f"{key}.stacks")
        try:
            os.makedirs(job.report_dir, exist_ok=True)
            file = open(path, "w")  # noqa: SIM115  (kept open for the C-level dump)
        except OSError:
            return None
        early = min(job.timeout * cls._EARLY, cls._EARLY_MAX)
        faulthandler.dump_traceback_later(max(job.timeout - early, 0.001), file=file)
        return cls(path, file)

    def disarm(self) -> None:
        import faulthandler

        faulthandler.cancel_dump_traceback_later()
        self.file.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def read_stacks(report_dir: str, key: str) -> str | None:
    """In the driver: the stacks a timed-out worker dumped for ``key`` (removed once read)."""
    if not report_dir:
        return None
    path = os.path.join(report_dir, f"{key}.stacks")
    try:
        with open(path, errors="replace") as f:
            text = f.read()
        os.unlink(path)
    except OSError:
        return None
    return _without_worker_frames(text).strip() or None


def _without_worker_frames(text: str) -> str:
    """faulthandler's dump with each thread's frames below the experiment's call cut off:
    memento's worker loop, the process pool, and (in a forked worker) the driver's own stack
    at the fork, which say nothing about where the experiment hung."""
    kept: list[str] = []
    skipping = False
    here = os.path.abspath(__file__)
    for line in text.splitlines():
        if not line.startswith(" "):  # a thread's header, or the "Timeout (...)!" line
            skipping = False
            kept.append(line)
        elif not skipping:
            if line.strip().startswith(f'File "{here}"') and line.rstrip().endswith(" in run_task"):
                kept.append("  (memento's worker below)")
                skipping = True
            else:
                kept.append(line)
    return "\n".join(kept)


def _start_attempt(root: str, key: str, provider: CheckpointProvider) -> bool:
    """Empty a failed attempt's output folder, unless this attempt resumes from a checkpoint;
    whether there was a folder.

    The checkpoint is looked up only when there is a folder (a server store's lookup is a
    query): most experiments never make one, and then this is one ``lstat``.
    """
    if not os.path.lexists(output_folder_name(root, key)):
        return False
    prepare_attempt(root, key, provider.contains(key))
    return True


def _used_folder(root: str, key: str) -> str | None:
    """The experiment's output folder when it has one now (this attempt made it, or a resumed
    one kept it), for :attr:`Outcome.output_dir`; one ``lstat``."""
    folder = output_folder_name(root, key)
    return folder if os.path.isdir(folder) and not os.path.islink(folder) else None


def _store_value(outcome: Outcome, value: Any, job: Job) -> None:
    """Put the experiment's return value in ``outcome`` in its stored form: the most durable
    format that fits (:mod:`memento.store.values`), kept in the outcome or, when large and the
    store's side directory is reachable, written to a file there by this worker (so a large
    array never travels through the driver). In-process, the object itself goes along too.
    A value that no format can store fails the experiment."""
    try:
        encoded = encode(value)
    except Exception as exc:
        _fill_error(
            outcome,
            TypeError(
                f"The experiment returned a {type(value).__qualname__} that cannot be pickled, "
                f"so it cannot be stored: {exc}"
            ),
        )
        return
    outcome.value_format = encoded.format
    # As the store keeps it (JSON text), made here: workers run in parallel, the driver not.
    outcome.value_info = json.dumps(encoded.info, separators=(",", ":"), default=str)
    if job.side_dir and encoded.size > INLINE_LIMIT:
        name = value_file_name(outcome.key, encoded.extension)
        atomic_write(Path(job.side_dir) / name, encoded.chunks, mode=job.checkpoint_mode)
        outcome.value_file = name
    else:
        outcome.value = encoded.data()
    if not job.pickle_values:
        outcome.local_value = value


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
    outcome.kind = error_kind(exc)
    outcome.where = raised_at(exc)


def _label(config: Config) -> str:
    return truncate(str(config), 60)


__all__ = ["read_stacks", "run_job", "run_task"]
