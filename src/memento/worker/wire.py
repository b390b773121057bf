"""The wire types: what travels between the driver and a worker. A :class:`Job` (one or more
:class:`Task` items of one experiment function, sent as a :class:`FunctionRef`) goes out; an
:class:`Outcome` per experiment comes back. Objects are pickled by reference to this module.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from memento.matrix.configs import Config

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
    #: The checkpoint files' permissions: the store file's (``None``: private, 0600).
    checkpoint_mode: int | None = None
    #: A server store's URL: checkpoints go to its database instead of ``checkpoint_dir``
    #: (``repr=False``: it may carry a password).
    checkpoint_url: str = field(default="", repr=False)
    #: Where each experiment's output folder goes (``<output_root>/<key>``, see
    #: :mod:`memento.store.outputs`); ``""``: the store keeps none, ``context.output_dir`` fails.
    output_root: str = ""
    #: Prefix the experiment's output with its config and send it to stderr.
    redirect_output: bool = True
    #: Measure CPU time of the thread (threads) rather than of the process.
    thread_cpu: bool = False
    #: Reset the process's peak-memory counter before each experiment (own process only).
    reset_memory_peak: bool = True
    #: Send each outcome's value encoded (cross-process) or also as the object (in-process).
    pickle_values: bool = True
    #: The store's side directory (``<store>.d``): a value too large to keep in a row is
    #: written there by the worker (``values/<key>.<ext>``); ``""``: it travels back to the
    #: driver (a server store keeps it in its database).
    side_dir: str = ""
    #: Seconds the engine gives each experiment (``None``: no limit): a worker process dumps
    #: its threads' stacks into ``report_dir`` just before, so a timeout shows where it hung.
    timeout: float | None = None
    #: Where a worker leaves what the driver reads when an experiment dies or times out
    #: (``<key>.stacks``, ``<key>.memory``); ``""``: nowhere.
    report_dir: str = ""
    #: BLAS/OpenMP threads per experiment (:mod:`memento.worker.resources`); ``None``: leave
    #: the pools alone; ``0``: as many as the worker's own CPUs (a cluster job's allocation).
    threads: int | None = None
    #: The GPU ids this job's experiments see (``CUDA_VISIBLE_DEVICES``); ``None``: leave it.
    gpus: tuple[str, ...] | None = None
    #: GPUs per experiment as asked (``Memento(gpus_per_experiment=...)``), for engines that
    #: place GPUs themselves (Slurm, Ray); ``None``: none asked.
    gpu_request: float | None = None
    #: Bytes of memory each experiment's process tree may use (this attempt's: an ``oom``
    #: retry may ask for more); ``None``: no limit.
    memory_limit: int | None = None
    #: How many times its first memory request this attempt asks for (``oom`` retries, see
    #: ``Memento(retry_memory_factor=...)``): engines that allocate memory per job apply it,
    #: to ``memory_limit`` or to their own default (``memory_limit`` is already scaled when
    #: the engine :attr:`~memento.executors.base.Executor.requests_memory`).
    memory_scale: float = 1.0
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
    #: The value as :func:`memento.store.values.encode` stored it (``value_format``), or
    #: ``None`` when the worker wrote it to ``value_file`` (in the store's side directory).
    value: bytes | None = None
    value_format: str | None = None
    #: What the value is (``{"type": ...}``), as JSON text.
    value_info: str | None = None
    value_file: str | None = None
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
    #: The experiment's output folder, when it used ``context.output_dir``.
    output_dir: str | None = None
    #: Top-level modules first imported in the worker's process by this experiment (for the
    #: run's provenance; ``None``: none new).
    modules: list[str] | None = None
    #: The failure's kind (:data:`memento.exceptions.FAILURE_KINDS`); ``None`` for a success.
    kind: str | None = None
    #: Where the exception was raised, ``file.py:42`` (innermost frame), or ``""``.
    where: str = ""
    #: The threads' stacks when the experiment timed out (faulthandler's text).
    stacks: str | None = None
    #: The value itself, when the outcome never left the driver's process (not pickled).
    local_value: Any = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["local_value"] = None
        return state

    @property
    def runtime(self) -> float:
        return self.end_time - self.start_time


__all__ = ["FunctionRef", "Job", "Outcome", "Task", "dumps_keeping_filenames"]
