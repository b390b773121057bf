"""Progress from worker processes of every start method: a ``spawn`` worker's first update
says that its experiment began (so it is marked running in the store), and its
``context.progress`` updates reach the driver."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memento import Memento
from memento.executors.base import ProgressUpdate
from memento.executors.local import ProcessExecutor


def waits_for_go(context: Any, config: Any) -> int:
    """Reports a quarter done, then waits (up to a minute) for the file the test creates."""
    context.progress(1, total=4)
    go = Path(config.settings["go"])
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never created the go file")
        time.sleep(0.01)  # waiting for the test's file, not an ordering
    return int(config.a) * 10


class RecordingExecutor(ProcessExecutor):
    """A spawn-started process executor that keeps every progress update the driver reads."""

    def __init__(self) -> None:
        super().__init__(2, start_method="spawn")
        self.seen: list[ProgressUpdate] = []

    def progress_updates(self) -> Iterator[ProgressUpdate]:
        updates = super().progress_updates()  # creates the pool now, in the driver's thread

        def recorded() -> Iterator[ProgressUpdate]:
            for update in updates:
                self.seen.append(update)
                yield update

        return recorded()


def _running(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM running").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _poll(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        time.sleep(0.02)  # a poll interval, not an ordering


@pytest.mark.timeout(120)
def test_spawned_workers_report_progress_and_are_marked_running(
    store_path: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    executor = RecordingExecutor()
    memento = Memento(waits_for_go, executor=executor, progress=False)
    matrix = {"parameters": {"a": [1, 2]}, "settings": {"go": str(go)}}
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.extend(memento.run(matrix, cache_path=store_path))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        _poll(lambda: _running(store_path) == 2 or not thread.is_alive(), "2 running rows")
        assert not errors, errors
        assert _running(store_path) == 2
        _poll(lambda: len({k for k, d, t in executor.seen if t == 4.0}) == 2, "progress")
        quarter = {key for key, done, total in executor.seen if (done, total) == (1.0, 4.0)}
        began = {key for key, done, total in executor.seen if (done, total) == (0.0, None)}
        assert len(began) == 2 and quarter == began
    finally:
        go.touch()
        thread.join(60)
    assert not errors, errors
    assert sorted(r.inner for r in results) == [10, 20]
    assert _running(store_path) == 0
