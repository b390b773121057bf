"""Issue 12: every failure has a kind, produced for real and classed right; retries follow
the policy; a systematic failure is said at once; ``max_failures`` stops a run; a timeout
keeps the stacks of where it hung."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from memento import AggregateException, Memento
from memento.events import SystematicFailure
from memento.exceptions import FAILURE_KINDS, TRANSIENT_KINDS
from memento.notifications import NotificationProvider
from memento.store.paths import INLINE_LIMIT


def _stored(path: Path) -> dict[str, tuple[Any, ...]]:
    """Each stored row's (status, kind, error_type, attempts, stacks), by the config's value."""
    import json

    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT params, status, kind, error_type, attempts, stacks FROM results"
        ).fetchall()
    return {json.loads(p)["case"]: tuple(rest) for p, *rest in rows}


# --- each kind, for real ---------------------------------------------------------------------


def hang_here(seconds: float) -> None:
    time.sleep(seconds)


def every_kind(context: Any, config: Any) -> Any:
    case = config.case
    if case == "ok":
        return 1
    if case == "error":
        raise ValueError("a bug")
    if case == "memory_error":
        raise MemoryError("no room")
    if case == "timeout":
        hang_here(60)
    if case == "exit":
        os._exit(3)
    if case == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if case == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    if case == "hog":
        blocks = []
        while True:  # the memory watch stops this
            blocks.append(bytearray(20 << 20))
            blocks[-1][::4096] = b"x" * len(blocks[-1][::4096])
    if case == "big":
        return b"x" * (INLINE_LIMIT * 2)  # written by the worker into <store>.d/values
    raise AssertionError(case)


def test_each_failure_kind_is_produced_for_real_and_classed_right(tmp_path: Path) -> None:
    store = tmp_path / "grid.sqlite"
    # The side directory's "values" is a file: writing a large value there fails in the worker,
    # outside the experiment: memento's machinery broke (infrastructure).
    (tmp_path / "grid.sqlite.d").mkdir()
    (tmp_path / "grid.sqlite.d" / "values").write_text("not a folder")
    cases = ["ok", "error", "memory_error", "timeout", "exit", "segfault", "sigterm", "hog", "big"]
    memento = Memento(every_kind, num_workers=2, timeout=3, memory_limit="150MiB", progress=False)
    with pytest.raises(AggregateException) as caught:
        memento.run({"parameters": {"case": cases}}, cache_path=store)
    kinds = {e.config.case: e.kind for e in caught.value.exceptions}
    expected = {
        "error": "error",
        "memory_error": "oom",
        "timeout": "timeout",
        "exit": "crash",
        "segfault": "crash",
        "sigterm": "interrupted",
        "hog": "oom",
        "big": "infrastructure",
    }
    assert kinds == expected
    assert set(expected.values()) == set(FAILURE_KINDS)
    rows = _stored(store)
    assert {case: row[1] for case, row in rows.items()} == {"ok": None, **expected}
    results = caught.value.results  # type: ignore[attr-defined]
    assert {r.config.case: r.kind for r in results} == {"ok": None, **expected}
    hog = next(e for e in caught.value.exceptions if e.config.case == "hog")
    assert "over memory_limit=150 MiB" in str(hog)


def test_a_timeout_stores_the_stacks_naming_the_hanging_function(tmp_path: Path) -> None:
    store = tmp_path / "grid.sqlite"
    results = Memento(every_kind, timeout=1.5, progress=False).run(
        {"parameters": {"case": ["timeout"]}}, cache_path=store, raise_on_failure=False
    )
    assert results is not None
    failure = results[0].error
    assert failure.kind == "timeout"
    assert "hang_here" in failure.stacks and "every_kind" in failure.stacks
    assert "hang_here" in _stored(store)["timeout"][4]
    # Nothing is left of the run's worker reports.
    assert not (tmp_path / "grid.sqlite.d" / "reports").exists()


# --- the retry policy --------------------------------------------------------------------------


def fails_once(context: Any, config: Any) -> str:
    """Fails its first attempt in the way ``config.how`` says, then succeeds."""
    marker = Path(config.settings["folder"]) / f"{config.how}.tried"
    if not marker.exists():
        marker.write_text("1")
        if config.how == "error":
            raise ValueError("first attempt")
        if config.how == "crash":
            os._exit(5)
        if config.how == "interrupted":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        if config.how == "memory_error":
            raise MemoryError("first attempt")
    return config.how


def _attempts(store: Path) -> dict[str, tuple[str, int]]:
    import json

    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT params, status, attempts FROM results").fetchall()
    return {json.loads(p)["how"]: (status, attempts) for p, status, attempts in rows}


def test_retries_apply_to_transient_kinds_only_by_default(tmp_path: Path) -> None:
    store = tmp_path / "grid.sqlite"
    matrix = {
        "parameters": {"how": ["error", "crash", "interrupted", "memory_error"]},
        "settings": {"folder": str(tmp_path)},
    }
    results = Memento(fails_once, retries=2, progress=False).run(
        matrix, cache_path=store, raise_on_failure=False
    )
    assert results is not None
    assert _attempts(store) == {
        "error": ("failed", 1),  # a bug repeats: not retried
        "crash": ("done", 2),
        "interrupted": ("done", 2),
        "memory_error": ("done", 2),
    }
    assert {"crash", "oom", "infrastructure", "interrupted"} == TRANSIENT_KINDS


def test_retry_on_names_kinds(tmp_path: Path) -> None:
    store = tmp_path / "grid.sqlite"
    matrix = {"parameters": {"how": ["error", "crash"]}, "settings": {"folder": str(tmp_path)}}
    Memento(fails_once, retries=1, retry_on={"error"}, progress=False).run(
        matrix, cache_path=store, raise_on_failure=False
    )
    assert _attempts(store) == {"error": ("done", 2), "crash": ("failed", 1)}


def test_retry_on_may_be_a_callable_that_gets_the_failure(tmp_path: Path) -> None:
    store = tmp_path / "grid.sqlite"
    seen: list[tuple[str, str, int]] = []

    def policy(failure: BaseException) -> bool:
        seen.append((failure.kind, failure.config.how, failure.attempts))  # type: ignore[attr-defined]
        return isinstance(failure, ValueError)

    matrix = {"parameters": {"how": ["error", "crash"]}, "settings": {"folder": str(tmp_path)}}
    Memento(fails_once, retries=3, retry_on=policy, progress=False).run(
        matrix, cache_path=store, raise_on_failure=False
    )
    assert sorted(seen) == [("crash", "crash", 1), ("error", "error", 1)]
    assert _attempts(store) == {"error": ("done", 2), "crash": ("failed", 1)}


def test_retry_on_is_checked_up_front() -> None:
    with pytest.raises(ValueError, match=r"unknown failure kind 'crahs'.*did you mean 'crash'"):
        Memento(fails_once, retry_on={"crahs"})
    with pytest.raises(TypeError, match="retry_on must be"):
        Memento(fails_once, retry_on=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_memory_factor"):
        Memento(fails_once, retry_memory_factor=0.5)
    with pytest.raises(ValueError, match="max_failures"):
        Memento(fails_once, max_failures=0)


# --- systematic failures and max_failures ------------------------------------------------------


def always_broken(context: Any, config: Any) -> None:
    if config.x >= 0:
        raise ValueError(f"bad input {config.x}")


class Recorder(NotificationProvider):
    def __init__(self) -> None:
        self.events: list[Any] = []

    def notify(self, event: Any) -> None:
        self.events.append(event)


def test_a_systematic_failure_is_said_as_soon_as_three_failures_agree(tmp_path: Path) -> None:
    recorder = Recorder()
    memento = Memento(always_broken, recorder, num_workers=1, progress=False)
    results = memento.run(
        {"parameters": {"x": list(range(8))}},
        cache_path=tmp_path / "grid.sqlite",
        raise_on_failure=False,
    )
    assert results is not None
    names = [type(e).__name__ for e in recorder.events]
    systematic = [e for e in recorder.events if isinstance(e, SystematicFailure)]
    assert len(systematic) == 1
    # Said after the third failure, before the rest of the grid ran.
    assert names.index("SystematicFailure") == names.index("RunStarted") + 4
    line = always_broken.__code__.co_firstlineno + 2
    assert systematic[0].text == f"3 of 3 failures: ValueError at test_failure_policy.py:{line}"


def test_max_failures_stops_submitting_and_the_next_run_runs_the_rest(tmp_path: Path) -> None:
    store = tmp_path / "grid.sqlite"
    matrix = {"parameters": {"x": list(range(20))}}
    memento = Memento(always_broken, num_workers=1, max_failures=3, progress=False)
    with pytest.raises(AggregateException) as caught:
        memento.run(matrix, cache_path=store)
    failed = len(caught.value.exceptions)
    not_run = caught.value.not_run  # type: ignore[attr-defined]
    # Running ones finish (about two jobs per worker are in flight), the rest do not run.
    assert 3 <= failed <= 5
    assert len(not_run) == 20 - failed
    assert "not run: max_failures=3" in str(caught.value)
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT count(*) FROM results").fetchone()[0] == failed
    # The next run runs what was not run (and the failures again).
    with pytest.raises(AggregateException):
        Memento(always_broken, num_workers=1, progress=False).run(matrix, cache_path=store)
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT count(*) FROM results").fetchone()[0] == 20


def test_memento_show_prints_where_a_real_timeout_hung_and_status_counts_kinds(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from memento.view.cli import cli

    store = tmp_path / "grid.sqlite"
    results = Memento(every_kind, timeout=1.5, progress=False).run(
        {"parameters": {"case": ["timeout", "error", "ok"]}},
        cache_path=store,
        raise_on_failure=False,
    )
    assert results is not None
    key = next(r.key for r in results if r.config.case == "timeout")
    shown = CliRunner().invoke(cli, ["show", str(store), key])
    assert shown.exit_code == 0, shown.output
    assert "timeout" in shown.output and "Stacks when it timed out" in shown.output
    assert "in hang_here" in shown.output
    status = CliRunner().invoke(cli, ["status", str(store)])
    assert "failed: 2 (1 error, 1 timeout)" in status.output
