"""The plan stage (``memento.plan``): keys x store -> cached / failed / stale / new.

One real store holds a result of each kind; the plan is read through ``Memento.run(...,
dry_run=True)`` and through :func:`~memento.plan.planning.make_plan` directly. Also: the
frozen ``RunSettings`` the driver runs with.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
from experiments import fail_on_three

from memento import Memento, Plan
from memento.keys.encoding import experiment_name
from memento.keys.fingerprint import code_fingerprint
from memento.plan.planning import LOAD_COLUMNS, classify, make_plan
from memento.run.settings import RunSettings

#: What the store of ``mixed_store`` makes of each config.
EXPECTED = ["cached", "stale", "failed", "new"]
MATRIX = {"parameters": {"a": [1, 2, 3, 5]}}


def _older_code(fingerprint: str) -> str:
    """A fingerprint of the same scheme as ``fingerprint`` but of other code."""
    scheme, overall = fingerprint.split(";", 1)[0].split(":", 1)
    return f"{scheme}:{'0' * len(overall)}"


@pytest.fixture
def mixed_store(store_path: Path) -> Path:
    """A store where a=1 is cached, a=2 was computed by older code, a=3 failed; a=5 is new."""
    memento = Memento(fail_on_three, executor="inline", progress=False)
    memento.run({"parameters": {"a": [1, 2, 3]}}, cache_path=store_path, raise_on_failure=False)
    stale_key = memento.plan({"parameters": {"a": [2]}}, store_path).keys[0]
    older = _older_code(code_fingerprint(fail_on_three))
    with sqlite3.connect(store_path) as conn:
        conn.execute("UPDATE results SET fingerprint = ? WHERE key = ?", (older, stale_key))
    conn.close()
    return store_path


def test_a_dry_run_prints_each_state(mixed_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    memento = Memento(fail_on_three, executor="inline", progress=False)
    assert memento.run(MATRIX, dry_run=True, cache_path=mixed_store) is None
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"Plan for {experiment_name(fail_on_three)}: 4 configs: "
        f"1 cached, 1 failed before, 1 stale, 1 new (store: {mixed_store})"
    )
    assert lines[1:5] == [
        "  [       cached] a=1",
        "  [ stale: reuse] a=2",
        "  [failed before] a=3",
        "  [          new] a=5",
    ]
    assert lines[5] == "Exiting due to dry run"


def test_a_dry_run_says_when_stale_results_run_again(
    mixed_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    memento = Memento(fail_on_three, executor="inline", progress=False, on_code_change="rerun")
    memento.run(MATRIX, dry_run=True, cache_path=mixed_store)
    assert "  [ stale: rerun] a=2" in capsys.readouterr().out.splitlines()


def test_make_plan_classifies_the_store(mixed_store: Path) -> None:
    plan = make_plan(fail_on_three, MATRIX, mixed_store)
    assert isinstance(plan, Plan)
    assert plan.states == EXPECTED
    assert [c.a for c in plan.configs] == [1, 2, 3, 5]
    assert plan.store_path == str(mixed_store)
    assert plan.experiment == experiment_name(fail_on_three)
    assert plan.fingerprint == code_fingerprint(fail_on_three)
    assert plan.rows is None  # only a real run takes the stored rows along
    assert plan.summary() == "4 configs: 1 cached, 1 failed before, 1 stale, 1 new"
    # The Memento's plan is this plan.
    by_memento = Memento(fail_on_three, progress=False).plan(MATRIX, mixed_store)
    assert (by_memento.keys, by_memento.states) == (plan.keys, plan.states)


def test_make_plan_keeps_the_rows_a_run_reuses(mixed_store: Path) -> None:
    plan = make_plan(fail_on_three, MATRIX, mixed_store, keep_rows=True)
    assert plan.rows is not None
    assert set(plan.rows) == set(plan.keys[:3])  # a=5 has no row
    assert all(len(row) == len(LOAD_COLUMNS) for row in plan.rows.values())
    assert [plan.rows[k][0] for k in plan.keys[:3]] == ["done", "done", "failed"]


def test_the_version_is_part_of_every_key(mixed_store: Path) -> None:
    plan = make_plan(fail_on_three, MATRIX, mixed_store, version="2")
    assert plan.states == ["new"] * 4
    assert not set(plan.keys) & set(make_plan(fail_on_three, MATRIX, mixed_store).keys)


def test_without_a_store_everything_is_new_and_nothing_is_created(store_path: Path) -> None:
    plan = make_plan(fail_on_three, MATRIX, store_path, keep_rows=True)
    assert plan.states == ["new"] * 4
    assert plan.rows == {}
    assert not store_path.exists()


def test_classify_reads_status_then_fingerprint() -> None:
    current = code_fingerprint(fail_on_three)
    rows = {
        "cached": ("done", current),
        "stale": ("done", _older_code(current)),
        "failed": ("failed", _older_code(current)),  # a failure is a failure, whatever code
        "unknown": ("done", None),  # no fingerprint stored: never stale
        "other scheme": ("done", "v0:" + "1" * 32),  # another scheme: never stale
    }
    keys = ["new", *rows]
    assert classify(keys, rows, current) == [
        "new",
        "cached",
        "stale",
        "failed",
        "cached",
        "cached",
    ]


def test_run_settings_are_frozen() -> None:
    settings = RunSettings(fail_on_three, retries=2, force_run=True)
    assert (settings.retries, settings.force_run, settings.timeout) == (2, True, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.retries = 3  # type: ignore[misc]
    assert dataclasses.replace(settings, retries=3).retries == 3
    assert settings.retries == 2
