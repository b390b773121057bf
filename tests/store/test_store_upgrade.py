"""Stores of an older schema version, and staleness that does not depend on what was forgotten.

Scripts run in new interpreters, as a user runs them; the store is inspected with the CLI.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from memento import Memento, open_results
from memento.store.sqlite import SCHEMA_VERSION
from memento.view.cli import cli

MODULE = """
def experiment(context, config):
    if config.x == 3:
        raise ValueError("three")
    return config.x * FACTOR

FACTOR = 2
"""

DRIVER = """
import sys
from memento import Memento
from exp_mod import experiment

from memento.exceptions import AggregateException

xs = [int(v) for v in sys.argv[2].split(",")]
try:
    Memento(experiment, executor="inline", progress=False).run(
        {"parameters": {"x": xs}}, cache_path=sys.argv[1]
    )
except AggregateException:
    pass  # x=3 fails on purpose
"""


def _python(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    out = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr


def _stale_keys(store: Path) -> set[str]:
    result = CliRunner().invoke(cli, ["results", str(store), "--format", "json"])
    assert result.exit_code == 0, result.output
    import json

    return {row["key"] for row in json.loads(result.output) if row["stale"]}


@pytest.mark.timeout(300)
def test_forgetting_failed_results_does_not_make_stale_results_current(tmp_path: Path) -> None:
    store = tmp_path / "grid.sqlite"
    (tmp_path / "exp_mod.py").write_text(MODULE)
    (tmp_path / "driver.py").write_text(DRIVER)
    _python(["driver.py", str(store), "1,2"], tmp_path)
    assert _stale_keys(store) == set()

    # The code changes; the new run only adds x=3, which fails.
    (tmp_path / "exp_mod.py").write_text(
        MODULE.replace("config.x * FACTOR", "config.x * FACTOR * 10")
    )
    _python(["driver.py", str(store), "3"], tmp_path)
    stale = _stale_keys(store)
    assert len(stale) == 2  # x=1 and x=2 came from the old code

    forget = CliRunner().invoke(cli, ["forget", str(store), "--failed", "--yes"])
    assert forget.exit_code == 0, forget.output
    assert _stale_keys(store) == stale


def _make_version_1(store: Path) -> None:
    """Turn a store into what schema version 1 wrote (no output, no run fingerprints)."""
    with sqlite3.connect(store) as conn:
        conn.execute("ALTER TABLE results DROP COLUMN output")
        conn.execute("ALTER TABLE runs DROP COLUMN fingerprint")
        conn.execute("UPDATE meta SET value = '1' WHERE name = 'schema_version'")
    conn.close()
    with sqlite3.connect(store) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _double(context: object, config: object) -> int:
    return int(config.x) * 2  # type: ignore[attr-defined]


def test_a_version_1_store_reads_untouched_and_upgrades_when_a_run_writes(tmp_path: Path) -> None:
    store = tmp_path / "old.sqlite"
    memento = Memento(_double, executor="inline", progress=False)
    memento.run({"parameters": {"x": [1, 2]}}, cache_path=store)
    _make_version_1(store)
    before = _digest(store)

    status = CliRunner().invoke(cli, ["status", str(store)])
    assert status.exit_code == 0, status.output
    shown = CliRunner().invoke(cli, ["results", str(store), "--format", "csv"])
    assert shown.exit_code == 0 and shown.output.count("\n") == 3, shown.output
    table = open_results(store).to_dataframe()
    assert sorted(table["inner"]) == [2, 4]
    assert _digest(store) == before  # reading never migrates

    results = memento.run({"parameters": {"x": [1, 2, 3]}}, cache_path=store)
    assert [r.was_cached for r in results] == [True, True, False]
    assert [r.inner for r in results] == [2, 4, 6]
    with sqlite3.connect(store) as conn:
        version = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        columns = {row[1] for row in conn.execute("PRAGMA table_info(results)")}
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert version == (str(SCHEMA_VERSION),) and "output" in columns and "leases" in tables
