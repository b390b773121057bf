"""Every exception memento raises, in one place.

::

    Exception
    ├── MementoError                      base of everything below
    │   ├── AggregateException            some experiments of a run failed (``.exceptions``)
    │   ├── CacheMiss                     ``force_cache=True`` and a config is not stored
    │   ├── CyclicDependency              ``run_all`` matrices depend on each other in a cycle
    │   ├── ExperimentError               one failed experiment, when its own exception is lost
    │   │   ├── ExperimentTimeout         it ran longer than ``timeout`` and was stopped
    │   │   │                             (also a TimeoutError)
    │   │   ├── WorkerDied                its worker process died (segfault, ``os._exit``, kill)
    │   │   └── WorkerLost                the engine lost it (a node, a worker, a connection)
    │   ├── StoreError                    the store file is missing, corrupt or of unknown version
    │   │   └── LegacyStoreError          it was written by memento-ml 1.2 (left untouched)
    │   └── MissingExtra (ImportError)    an optional engine is not installed
    ├── TypeError / ValueError            a bad matrix, parameter or argument (raised up front)
    └── UnencodableValue (TypeError)      a config value that cannot be turned into a stable key

Every exception in ``AggregateException.exceptions`` carries ``.config`` (the failed
:class:`~memento.matrix.configs.Config`), ``.traceback`` (the worker-side traceback as text) and
``.kind``, the failure's kind (:data:`FAILURE_KINDS`):

=================  ==================================================================
``error``          the experiment raised an exception
``timeout``        it ran past ``timeout`` and was stopped
``crash``          its process died: a signal (segfault, ``kill -9``) or an exit code
``oom``            it ran out of memory: over ``memory_limit``, killed by the kernel's
                   OOM killer, or it raised ``MemoryError`` (or a CUDA out-of-memory error)
``interrupted``    it was stopped from outside: SIGTERM, SIGINT, or the cluster preempted it
``infrastructure`` a worker or an engine was lost, or memento's own machinery failed
=================  ==================================================================

``retries`` applies by default to the transient kinds only (:data:`TRANSIENT_KINDS`).
"""

from __future__ import annotations

from typing import Any

#: Every kind a failure can have, in the order they are shown.
FAILURE_KINDS = ("error", "timeout", "crash", "oom", "interrupted", "infrastructure")
#: The kinds ``retries`` applies to by default: the ones that may not happen again. An
#: ``error`` or a ``timeout`` usually repeats (the same code on the same input).
TRANSIENT_KINDS = frozenset({"crash", "oom", "infrastructure", "interrupted"})


def kind_of_stored(kind: str | None, error_type: str | None) -> str:
    """The kind of a stored failure: its ``kind`` column, or for a failure stored before kinds
    were (store schema 4 and older) the kind its exception type implies."""
    if kind:
        return kind
    if error_type == "ExperimentTimeout":
        return "timeout"
    if error_type == "WorkerDied":
        return "crash"
    if error_type in ("MemoryError", "OutOfMemoryError"):
        return "oom"
    return "error"


class MementoError(Exception):
    """Base class of memento's own errors."""


class AggregateException(MementoError):
    """Raised at the end of a run when one or more experiments failed.

    Every other experiment has finished and been stored by then. ``exceptions`` holds one
    exception per failure, each with ``.config`` and ``.traceback`` attributes.
    """

    def __init__(self, exceptions: list[BaseException]) -> None:
        self.exceptions = list(exceptions)
        lines = []
        for exc in self.exceptions:
            config = getattr(exc, "config", None)
            where = f"{config}: " if config is not None else ""
            lines.append(f"{where}{type(exc).__name__}: {exc}")
        noun = "experiment" if len(lines) == 1 else "experiments"
        message = f"{len(lines)} {noun} failed:\n\t" + "\n\t".join(lines)
        super().__init__(message)


class CacheMiss(MementoError):
    """Raised by ``Memento.run(..., force_cache=True)`` when a config has no stored result."""

    def __init__(self, config: Any) -> None:
        self.config = config
        super().__init__(
            f"Config {config} was not found in the cache (force_cache=True runs nothing); "
            "run without force_cache to compute it."
        )


class CyclicDependency(MementoError):
    """Raised by ``Memento.run_all`` when matrices depend on each other in a cycle."""

    def __init__(self, cycle: list[Any] | None = None) -> None:
        self.cycle = cycle
        detail = f": {' -> '.join(map(repr, cycle))}" if cycle else ""
        super().__init__(f"Cyclic dependency detected between matrices{detail}")


class ExperimentError(MementoError):
    """One experiment failed and its original exception could not be brought back, or it
    failed in a way that raised nothing in it (a timeout, a dead worker).

    ``exc_type`` names the original exception's type, ``traceback`` is the worker's text,
    ``kind`` the failure's kind (:data:`FAILURE_KINDS`).
    """

    #: The kind of failure this class stands for, unless the instance says otherwise.
    kind: str = "error"

    def __init__(
        self,
        message: str,
        *,
        exc_type: str | None = None,
        traceback: str = "",
        config: Any = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.exc_type = exc_type or type(self).__name__
        self.traceback = traceback
        self.config = config
        if kind is not None:
            self.kind = kind

    def __reduce__(self) -> Any:
        return (_rebuild_experiment_error, (type(self), self.args, self.__dict__))


def _rebuild_experiment_error(
    cls: type[ExperimentError], args: tuple[Any, ...], state: dict[str, Any]
) -> Any:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class ExperimentTimeout(ExperimentError, TimeoutError):
    """The experiment ran past ``Memento(timeout=...)`` seconds; its worker was stopped.

    Also a :class:`TimeoutError`, so ``except TimeoutError`` catches it. ``stacks`` holds the
    Python stacks of the experiment's threads just before it was stopped, when the engine
    could take them (worker processes: faulthandler), else ``""``.
    """

    kind = "timeout"
    stacks: str = ""


class WorkerDied(ExperimentError):
    """The worker process running the experiment died: a signal, ``os._exit`` or an OOM kill.

    ``kind`` is ``"crash"``, ``"oom"`` (over ``memory_limit``, or the kernel's OOM killer as
    far as it can be told) or ``"interrupted"`` (SIGTERM, SIGINT, preemption); ``exitcode`` is
    the process's exit status as ``multiprocessing`` gives it (a negative signal number), when
    known.
    """

    kind = "crash"
    exitcode: int | None = None


class WorkerLost(ExperimentError):
    """The engine lost the experiment: its worker, node or connection went away, or memento's
    own machinery failed around it. Kind ``infrastructure``: retried by default."""

    kind = "infrastructure"


class RunInterrupted(KeyboardInterrupt):
    """Raised by ``Memento.run`` after Ctrl-C or SIGTERM, once the run's summary is printed.

    It is a ``KeyboardInterrupt`` (code written for memento-ml 1.2 keeps catching it); when a
    script does not catch it, it ends without a traceback, as the summary said everything.
    """


class StoreError(MementoError):
    """The store cannot be used: missing, corrupt, or written by an unknown version."""


class LegacyStoreError(StoreError):
    """The file at ``cache_path`` was written by memento-ml 1.2. It is never modified.

    ``path`` is the file. Its results can be copied into a new store with
    ``memento import-1.2 OLD NEW --experiment SCRIPT.py:FUNCTION`` (see docs/cli.md).
    """

    def __init__(self, path: Any) -> None:
        import shlex

        self.path = path
        quoted = shlex.quote(str(path))
        super().__init__(
            f"{path} was written by memento-ml 1.2, whose store format this memento does not "
            "use; the file has been left unchanged. To keep its results, copy them into a new "
            f"store with: memento import-1.2 {quoted} NEW.sqlite --experiment SCRIPT.py:FUNCTION "
            "(see memento import-1.2 --help), then run with cache_path='NEW.sqlite' (or "
            "MEMENTO_CACHE_PATH=NEW.sqlite). Otherwise give a new cache_path."
        )

    def __reduce__(self) -> Any:
        return (type(self), (self.path,))


class MissingExtra(MementoError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` to run."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{module}' package, which is not installed. "
            f"Install it with: pip install 'memento-grid[{extra}]'"
        )
        self.name = module


class UnencodableValue(TypeError):
    """A value cannot be encoded into a stable key.

    Give its class a ``__memento_key__(self)`` method returning a stable, encodable value
    (str, numbers, tuples, dicts...) that identifies it.
    """


def __getattr__(name: str) -> Any:
    # memento-ml 1.2's ``memento.exceptions`` imported ``Config``; code imported it from here.
    # Loaded on use so that this module stays at the bottom of the import graph.
    if name == "Config":
        from memento.matrix.configs import Config

        return Config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AggregateException",
    "CacheMiss",
    "CyclicDependency",
    "ExperimentError",
    "ExperimentTimeout",
    "FAILURE_KINDS",
    "LegacyStoreError",
    "MementoError",
    "MissingExtra",
    "RunInterrupted",
    "StoreError",
    "TRANSIENT_KINDS",
    "UnencodableValue",
    "WorkerDied",
    "WorkerLost",
    "kind_of_stored",
]
