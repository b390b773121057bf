"""TaskManager and delayed: real worker processes, real crashes, notifications in the driver."""

from __future__ import annotations

import ctypes
import faulthandler
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from memento import (
    TASK_PRIORITY_HIGH,
    TASK_PRIORITY_LOW,
    TASK_PRIORITY_MEDIUM,
    AggregateException,
    DefaultNotificationProvider,
    NotificationProvider,
    TaskManager,
    delayed,
)
from memento.events import ExperimentFailed, ExperimentFinished, RunFinished
from memento.exceptions import ExperimentError, ExperimentTimeout, WorkerDied

pytestmark = pytest.mark.timeout(120)


def fail(message: str) -> None:
    raise ValueError(message)


def started_at(tag: Any) -> tuple[Any, float]:
    time.sleep(0.05)
    return tag, time.monotonic()


def segfault() -> None:
    faulthandler.disable()  # pytest's, inherited through fork: keep the log quiet
    ctypes.string_at(0)


class Recorder(NotificationProvider):
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.closed = 0

    def notify(self, event: Any) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed += 1


class Legacy(DefaultNotificationProvider):
    """A provider written for 1.2: only the no-argument methods."""

    def __init__(self) -> None:
        self.completed = self.failures = self.all_done = 0

    def task_completed(self) -> None:
        self.completed += 1

    def task_failure(self) -> None:
        self.failures += 1

    def all_tasks_completed(self) -> None:
        self.all_done += 1


# --- delayed -----------------------------------------------------------------------------------


def test_delayed_binds_arguments_now_and_calls_later() -> None:
    task = delayed(sum)([1, 2])
    assert task() == 3 and task() == 3
    assert delayed(pow)(2, exp=10)() == 1024
    assert task.__name__ == "sum"
    assert repr(task) == "delayed(sum)([1, 2])"
    assert pickle.loads(pickle.dumps(task))() == 3
    with pytest.raises(TypeError, match="callable"):
        delayed(3)  # type: ignore[arg-type]


def test_priorities_are_those_of_12() -> None:
    assert (TASK_PRIORITY_HIGH, TASK_PRIORITY_MEDIUM, TASK_PRIORITY_LOW) == (1, 2, 3)


# --- running -----------------------------------------------------------------------------------


def test_results_come_back_in_the_order_tasks_were_added() -> None:
    manager = TaskManager(workers=3)
    manager.add_task(delayed(time.sleep)(0.3))
    manager.add_tasks(delayed(pow)(2, n) for n in range(6))
    manager.add_task(lambda: "lambda")
    factor = 7
    manager.add_task(lambda: factor * 6)
    manager.add_task(delayed(os.getpid)())
    assert len(manager) == 10
    results = manager.run()
    assert results[:9] == [None, 1, 2, 4, 8, 16, 32, "lambda", 42]
    assert results[9] != os.getpid()  # ran in a worker process
    assert len(manager) == 0


def test_an_empty_manager_returns_an_empty_list() -> None:
    assert TaskManager().run() == []


def test_a_manager_can_be_filled_and_run_again() -> None:
    manager = TaskManager(workers=1)
    manager.add_task(lambda: 1)
    assert manager.run() == [1]
    manager.add_task(lambda: 2)
    manager.add_task(lambda: 3)
    assert manager.run() == [2, 3]


def test_lower_priority_numbers_start_first() -> None:
    manager = TaskManager(workers=1)
    manager.add_tasks((delayed(started_at)(("low", i)) for i in range(3)), TASK_PRIORITY_LOW)
    manager.add_tasks((delayed(started_at)(("mid", i)) for i in range(3)), TASK_PRIORITY_MEDIUM)
    manager.add_tasks((delayed(started_at)(("high", i)) for i in range(3)), TASK_PRIORITY_HIGH)
    manager.add_task(delayed(started_at)(("zero", 0)), 0)
    results = manager.run()
    # Results in insertion order ...
    assert [tag for tag, _ in results] == [
        *(("low", i) for i in range(3)),
        *(("mid", i) for i in range(3)),
        *(("high", i) for i in range(3)),
        ("zero", 0),
    ]
    # ... but started by priority, then insertion order.
    by_start = [tag for tag, at in sorted(results, key=lambda r: r[1])]
    assert by_start == [
        ("zero", 0),
        *(("high", i) for i in range(3)),
        *(("mid", i) for i in range(3)),
        *(("low", i) for i in range(3)),
    ]


def test_max_tasks_per_worker_replaces_workers() -> None:
    manager = TaskManager(workers=1, max_tasks_per_worker=1)
    manager.add_tasks(delayed(os.getpid)() for _ in range(3))
    assert len(set(manager.run())) == 3
    manager = TaskManager(workers=1)
    manager.add_tasks(delayed(os.getpid)() for _ in range(3))
    assert len(set(manager.run())) == 1


# --- failures ----------------------------------------------------------------------------------


def test_failures_are_raised_together_after_every_task_ran() -> None:
    manager = TaskManager(workers=2)
    manager.add_task(lambda: 1)
    manager.add_task(delayed(fail)("first"))
    manager.add_task(delayed(time.sleep)(0.3))
    manager.add_task(delayed(fail)("second"))
    with pytest.raises(AggregateException) as caught:
        manager.run()
    error = caught.value
    assert [type(e) for e in error.exceptions] == [ValueError, ValueError]
    first, second = error.exceptions
    assert str(first) == "first" and first.config == "Task 2"  # type: ignore[attr-defined]
    assert second.config == "Task 4"  # type: ignore[attr-defined]
    assert "in fail" in first.traceback and "ValueError: first" in first.traceback  # type: ignore[attr-defined]
    assert "Task 2: ValueError: first" in str(error)
    assert error.results == [1, None, None, None]  # type: ignore[attr-defined]
    assert len(manager) == 0


@pytest.mark.parametrize(
    ("crash", "exit_text"),
    [(lambda: os._exit(3), "exited with code 3"), (segfault, "SIGSEGV")],
    ids=["os._exit", "segfault"],
)
def test_a_task_that_kills_its_worker_fails_alone(crash: Any, exit_text: str) -> None:
    manager = TaskManager(workers=2)
    manager.add_tasks(delayed(pow)(3, n) for n in range(3))
    manager.add_task(crash)
    manager.add_tasks(delayed(pow)(5, n) for n in range(3))
    with pytest.raises(AggregateException) as caught:
        manager.run()
    (died,) = caught.value.exceptions
    assert isinstance(died, WorkerDied) and exit_text in str(died)
    assert died.config == "Task 4"
    assert caught.value.results == [1, 3, 9, None, 1, 5, 25]  # type: ignore[attr-defined]


def test_a_task_past_its_timeout_is_stopped() -> None:
    manager = TaskManager(workers=2, timeout=0.5)
    manager.add_task(delayed(time.sleep)(60))
    manager.add_task(lambda: "quick")
    started = time.monotonic()
    with pytest.raises(AggregateException) as caught:
        manager.run()
    assert time.monotonic() - started < 30
    (timed_out,) = caught.value.exceptions
    assert isinstance(timed_out, ExperimentTimeout)
    assert caught.value.results == [None, "quick"]  # type: ignore[attr-defined]


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(a)  # rebuilding it from args fails
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise Unpicklable(1, 2)


def test_an_exception_that_cannot_travel_keeps_its_type_name_and_traceback() -> None:
    manager = TaskManager(workers=1)
    manager.add_task(raise_unpicklable)
    with pytest.raises(AggregateException) as caught:
        manager.run()
    (error,) = caught.value.exceptions
    assert isinstance(error, ExperimentError)
    assert error.exc_type == "Unpicklable" and "raise_unpicklable" in error.traceback


def test_a_result_that_cannot_be_pickled_fails_its_task() -> None:
    manager = TaskManager(workers=1)
    manager.add_task(threading.Lock)
    manager.add_task(lambda: "fine")
    with pytest.raises(AggregateException) as caught:
        manager.run()
    (error,) = caught.value.exceptions
    assert isinstance(error, TypeError) and "cannot be pickled" in str(error)
    assert caught.value.results == [None, "fine"]  # type: ignore[attr-defined]


# --- validation --------------------------------------------------------------------------------


def test_add_task_validates_as_12() -> None:
    manager = TaskManager()
    with pytest.raises(TypeError, match="callable"):
        manager.add_task(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="priority"):
        manager.add_task(lambda: 1, priority=-1)
    with pytest.raises(TypeError, match="priority"):
        manager.add_task(lambda: 1, priority="high")  # type: ignore[arg-type]
    lock = threading.Lock()
    with pytest.raises(TypeError, match="cannot be pickled"):
        manager.add_task(lambda: lock)
    assert len(manager) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"workers": 0},
        {"workers": -2},
        {"workers": 1.5},
        {"max_tasks_per_worker": 0},
        {"timeout": 0},
        {"timeout": "soon"},
    ],
)
def test_the_constructor_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TaskManager(**kwargs)


def test_a_bad_notification_provider_fails_at_construction() -> None:
    with pytest.raises(TypeError, match="notify"):
        TaskManager(notification_provider=object())


# --- notifications -----------------------------------------------------------------------------


def test_notifications_reach_the_provider_in_this_process() -> None:
    recorder = Recorder()
    manager = TaskManager(workers=2, notification_provider=recorder, notify_on_complete=True)
    manager.add_tasks([lambda: 1, lambda: 2, delayed(fail)("no")])
    with pytest.raises(AggregateException):
        manager.run()
    finished = [e for e in recorder.events if isinstance(e, ExperimentFinished)]
    failed = [e for e in recorder.events if isinstance(e, ExperimentFailed)]
    assert sorted(e.config for e in finished) == ["Task 1", "Task 2"]
    assert [(e.config, e.exc_type, e.message) for e in failed] == [("Task 3", "ValueError", "no")]
    assert "ValueError: no" in failed[0].traceback
    assert isinstance(recorder.events[-1], RunFinished)
    end = recorder.events[-1]
    assert (end.done, end.cached, end.failed) == (2, 0, 1)
    assert end.failures == tuple(failed)
    assert recorder.closed == 1


def test_no_end_notification_unless_asked() -> None:
    recorder = Recorder()
    manager = TaskManager(workers=1, notification_provider=recorder)
    manager.add_task(lambda: 1)
    manager.run()
    assert [type(e) for e in recorder.events] == [ExperimentFinished]


def test_a_12_provider_is_told_in_the_driver_not_in_copies() -> None:
    # 1.2 pickled the provider into every task: its counts stayed in the workers.
    legacy = Legacy()
    manager = TaskManager(workers=2, notification_provider=legacy, notify_on_complete=True)
    manager.add_tasks([lambda: 1, lambda: 2, lambda: 3, delayed(fail)("x")])
    with pytest.raises(AggregateException):
        manager.run()
    assert (legacy.completed, legacy.failures, legacy.all_done) == (3, 1, 1)


# --- __main__, lambdas and output, in a script of its own ---------------------------------------

SCRIPT = """
import sys
from memento import TaskManager, delayed

def shout(word):
    print(f"saying {word}")
    print("to stderr", file=sys.stderr)
    return word.upper()

if __name__ == "__main__":
    manager = TaskManager(workers=2)
    manager.add_task(delayed(shout)("hello"))
    manager.add_task(lambda: shout("lambda"))
    print("RESULTS", manager.run())
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_main_functions_and_lambdas_run_and_output_is_prefixed(
    tmp_path: Path, subprocess_env: dict[str, str], start_method: str
) -> None:
    script = tmp_path / "script.py"
    code = SCRIPT
    if start_method == "spawn":
        # Workers that start fresh: functions of __main__ must travel by value.
        code = code.replace(
            "from memento import TaskManager, delayed",
            "import memento.executors.local as local\n"
            "from memento import TaskManager, delayed\n"
            "_init = local.ProcessExecutor.__init__\n"
            "local.ProcessExecutor.__init__ = lambda self, n=None, **kw: _init(\n"
            "    self, n, **{**kw, 'start_method': 'spawn'})",
        )
    script.write_text(textwrap.dedent(code))
    done = subprocess.run(
        [sys.executable, str(script)],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=100,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "RESULTS ['HELLO', 'LAMBDA']" in done.stdout
    assert "saying" not in done.stdout  # a task's output goes to stderr, prefixed
    assert "[Task 1] saying hello" in done.stderr
    assert "[Task 2] saying lambda" in done.stderr
    assert "[Task 1] to stderr" in done.stderr
