"""memento-ml 1.2's ``TaskManager``: run any callables in crash-isolated worker processes.

It sits on the executor seam ``Memento`` uses (:class:`~memento.executors.ProcessExecutor`):
each task is shipped with cloudpickle (lambdas and functions of ``__main__`` work), runs in a
worker process, and a task that kills its worker (segfault, ``os._exit``, OOM kill) fails alone
with :class:`~memento.exceptions.WorkerDied` while the others complete. Notifications are sent
from the calling process only.

Example::

    from memento import TaskManager, delayed

    manager = TaskManager(workers=4)
    manager.add_tasks(delayed(pow)(2, n) for n in range(10))
    manager.add_task(lambda: "urgent", priority=TASK_PRIORITY_HIGH)
    results = manager.run()   # in the order the tasks were added
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime
import pickle
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from memento._util.checks import positive_int_or_none, timeout_or_none
from memento._util.text import display_value
from memento.events import ExperimentFailed, ExperimentFinished, RunFinished
from memento.exceptions import AggregateException
from memento.executors.inflight import InFlight
from memento.executors.local import ProcessExecutor
from memento.matrix.configs import Config
from memento.notifications.base import (
    DefaultNotificationProvider,
    NotificationDispatcher,
    NotificationProvider,
)
from memento.store.values import decode
from memento.worker.errors import attach, describe_error, rebuild_error
from memento.worker.output import output_router
from memento.worker.wire import FunctionRef, Job, Task

TASK_PRIORITY_LOW: int = 3
TASK_PRIORITY_MEDIUM: int = 2
TASK_PRIORITY_HIGH: int = 1

P = ParamSpec("P")
R = TypeVar("R")


class _Delayed(Generic[R]):
    """A call with its arguments bound, made later: ``delayed(f)(1, b=2)()`` is ``f(1, b=2)``."""

    __slots__ = ("args", "func", "kwargs")

    def __init__(
        self, func: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs

    def __call__(self) -> R:
        return self.func(*self.args, **self.kwargs)

    @property
    def __name__(self) -> str:
        return str(getattr(self.func, "__name__", type(self.func).__name__))

    @property
    def __wrapped__(self) -> Callable[..., R]:
        return self.func

    def __repr__(self) -> str:

        shown = [display_value(a) for a in self.args]
        shown += [f"{k}={display_value(v)}" for k, v in self.kwargs.items()]
        return f"delayed({display_value(self.func)})({', '.join(shown)})"


def delayed(func: Callable[P, R]) -> Callable[P, Callable[[], R]]:
    """Bind arguments to ``func`` now, call it later: returns a zero-argument callable.

    Example::

        task = delayed(sum)([1, 2])
        task()   # 3, the same as sum([1, 2])
    """
    if not callable(func):
        raise TypeError(f"delayed() needs a callable, got {func!r}")

    def bind(*args: P.args, **kwargs: P.kwargs) -> Callable[[], R]:
        return _Delayed(func, args, kwargs)

    return bind


def _call(context: Any, config: Config) -> Any:
    """The job's function in the worker (run by :func:`~memento.worker.task.run_job`, which
    times it and turns its value or failure into an outcome): the task's callable, with what
    it prints sent to stderr as ``"[Task 3] ..."``."""
    import cloudpickle

    output_router.begin(config.label, config.label)
    try:
        return cloudpickle.loads(config.payload)()
    finally:
        output_router.end()


#: Every task's job runs this function; the task's callable travels as its parameter.
_CALL = FunctionRef(_call, "memento.compat.parallel.TaskManager")


@dataclass
class _Task:
    label: str
    index: int
    payload: bytes
    priority: float

    def job(self) -> Job:
        """The task as a job of one experiment: its callable (pickled) and its label."""
        config = Config(None, payload=self.payload, label=self.label)
        # Output is routed by _call itself, under the task's label.
        return Job(_CALL, [Task(self.label, config)], checkpoint_dir="", redirect_output=False)


class TaskManager:
    """Runs tasks (zero-argument callables) in parallel worker processes.

    Tasks with a lower priority number start first (``TASK_PRIORITY_HIGH`` = 1 before
    ``TASK_PRIORITY_LOW`` = 3); equal priorities start in the order they were added.
    :meth:`run` returns the results in the order the tasks were added. When tasks fail, it
    waits for all the others, then raises :class:`~memento.exceptions.AggregateException`;
    each of its ``exceptions`` has ``.traceback`` (the worker's text) and ``.config`` (the
    task's label, ``"Task 3"``), and the exception's ``.results`` holds every result (``None``
    for failed tasks).

    Example::

        manager = TaskManager(workers=2, notification_provider=ConsoleNotificationProvider(),
                              notify_on_complete=True)
        manager.add_task(delayed(train)(model="svm"))
        manager.add_task(lambda: 1 + 1, priority=TASK_PRIORITY_LOW)
        svm, two = manager.run()

    :param workers: worker processes; defaults to the CPUs this process may use.
    :param max_tasks_per_worker: replace a worker after it ran this many tasks (default: never).
    :param notification_provider: a provider (or list of them) told, in this process, about each
        task that finished or failed.
    :param notify_on_complete: also send the end-of-run notification.
    :param timeout: seconds per task; a task that runs longer is stopped (its worker killed and
        replaced) and fails with :class:`~memento.exceptions.ExperimentTimeout`.
    """

    def __init__(
        self,
        workers: int | None = None,
        max_tasks_per_worker: int | None = None,
        notification_provider: Any = None,
        notify_on_complete: bool = False,
        *,
        timeout: float | None = None,
    ) -> None:

        positive_int_or_none("workers", workers)
        positive_int_or_none("max_tasks_per_worker", max_tasks_per_worker)
        timeout_or_none(timeout)
        NotificationDispatcher(notification_provider)  # a bad provider fails here, not at the end
        self._workers = workers
        self._max_tasks_per_worker = max_tasks_per_worker
        self._notification_provider = notification_provider
        self._notify_on_complete = notify_on_complete
        self._timeout = None if timeout is None else float(timeout)
        self._tasks: list[_Task] = []

    def __len__(self) -> int:
        """How many tasks wait for :meth:`run`."""
        return len(self._tasks)

    def add_task(self, callable_: Callable[[], Any], priority: float = TASK_PRIORITY_HIGH) -> None:
        """Add a zero-argument callable (see :func:`delayed`) to run.

        It is pickled now, so a callable that cannot travel to a worker fails here.
        """
        if not callable(callable_):
            raise TypeError(f"'callable' must be a callable but was {type(callable_).__name__!r}")
        if isinstance(priority, bool) or not isinstance(priority, (int, float)):
            raise TypeError(f"'priority' must be a number but was {type(priority).__name__!r}")
        if not priority >= 0:
            raise ValueError(f"'priority' must be 0 or more but was {priority!r}")
        import cloudpickle

        index = len(self._tasks)
        label = f"Task {index + 1}"
        try:
            payload = cloudpickle.dumps(callable_, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TypeError(
                f"{label} ({callable_!r}) cannot be pickled to send it to a worker process: {exc}"
            ) from exc
        self._tasks.append(_Task(label, index, payload, priority))

    def add_tasks(
        self, callables: Iterable[Callable[[], Any]], priority: float = TASK_PRIORITY_HIGH
    ) -> None:
        """Add each of ``callables`` with the same priority."""
        for callable_ in callables:
            self.add_task(callable_, priority)

    def run(self) -> list[Any]:
        """Run every added task and return their results in the order they were added.

        The task list is emptied, so the manager can be filled and run again. Raises
        :class:`~memento.exceptions.AggregateException` after all tasks have run when any
        failed.
        """

        tasks, self._tasks = self._tasks, []
        results: list[Any] = [None] * len(tasks)
        errors: dict[int, BaseException] = {}
        events: list[Any] = []
        started = time.monotonic()
        notifier = NotificationDispatcher(self._notification_provider)
        executor = ProcessExecutor(self._workers, max_tasks=self._max_tasks_per_worker or 0)
        interrupted = False
        try:
            queue = deque(sorted(tasks, key=lambda t: (t.priority, t.index)))
            inflight: InFlight[_Task] = InFlight(executor, self._timeout)
            while queue or inflight:
                # Submitting in priority order, a few ahead: the pool starts them first-in
                # first-out, so lower priority numbers start first.
                while queue and inflight.has_room():
                    task = queue.popleft()
                    inflight.submit(task.job(), task)
                done = inflight.wait(1.0)
                notifier.tick()
                for future, task in done:
                    self._collect(executor, future, task, results, errors, events, notifier)
        except KeyboardInterrupt:
            interrupted = True
            executor.shutdown(wait=False, cancel=True)
            raise
        finally:
            executor.shutdown()
            if self._notify_on_complete and not interrupted:
                notifier.emit(
                    RunFinished.since(
                        started, done=len(tasks) - len(errors), cached=0, failures=events
                    )
                )
            notifier.close()
        if errors:
            error = AggregateException([errors[i] for i in sorted(errors)])
            error.results = results  # type: ignore[attr-defined]
            raise error
        return results

    @staticmethod
    def _collect(
        executor: Any,
        future: cf.Future[Any],
        task: _Task,
        results: list[Any],
        errors: dict[int, BaseException],
        events: list[Any],
        notifier: Any,
    ) -> None:
        """Put one finished task's value or error in place and notify about it."""
        try:
            (outcome,) = executor.result(future)  # or WorkerDied, ExperimentTimeout
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            text = getattr(exc, "traceback", "") or "".join(
                traceback.format_exception_only(type(exc), exc)
            )
            error, error_type, message = exc, type(exc).__qualname__, str(exc)
        else:
            text = outcome.traceback or ""
            error_type, message = outcome.error_type or "", outcome.error_message or ""
            if outcome.ok:
                try:
                    results[task.index] = decode(outcome.value_format, outcome.value)
                except Exception as exc:
                    error = exc
                    error_type, message, text, _ = describe_error(exc)
                else:
                    runtime = datetime.timedelta(seconds=outcome.runtime)
                    notifier.emit(ExperimentFinished(task.label, task.label, runtime))
                    return
            else:
                error = rebuild_error(outcome.error, error_type, message, text)
        errors[task.index] = attach(error, config=task.label, traceback=text)
        event = ExperimentFailed(task.label, task.label, error_type, message, text)
        events.append(event)
        notifier.emit(event)

    def __repr__(self) -> str:
        return f"TaskManager(workers={self._workers}, {len(self._tasks)} tasks waiting)"


__all__ = [
    "AggregateException",
    "DefaultNotificationProvider",
    "NotificationProvider",
    "TASK_PRIORITY_HIGH",
    "TASK_PRIORITY_LOW",
    "TASK_PRIORITY_MEDIUM",
    "TaskManager",
    "delayed",
]
