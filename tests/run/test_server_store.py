"""Whole runs on a PostgreSQL store: worker processes checkpoint into the database, a driver
that takes over a dead one's experiment resumes it, and the password never shows.

A real PostgreSQL server (tests/support/postgres.py); the SQLite store runs the same resume
test, so that both backends are held to it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from memento import Memento, open_results
from memento.notifications.base import FileSystemNotificationProvider
from memento.store.backends import open_store, redact
from memento.view.cli import cli

RESUMABLE = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from memento import Memento

    def experiment(context, config):
        start = context.restore() if context.checkpoint_exist() else 0
        for step in range(start, 10):
            context.checkpoint(step + 1)
            if step == 4 and os.environ.get("HANG_AT_5"):
                Path(os.environ["HUNG"]).write_text("yes")
                time.sleep(600)  # the driver is killed meanwhile
        return {"started_at": start, "n": config.n}

    if __name__ == "__main__":
        results = Memento(experiment, num_workers=1, progress=False).run(
            {"parameters": {"n": [1]}}, cache_path=sys.argv[1])
        print(json.dumps([r.inner for r in results]))
    """
)


def test_a_taken_over_experiment_resumes_from_its_checkpoint(
    tmp_path: Path, location: str, subprocess_env: dict[str, str]
) -> None:
    script = tmp_path / "resumable.py"
    script.write_text(RESUMABLE)
    hung = tmp_path / "hung"
    env = {**subprocess_env, "HUNG": str(hung)}
    first = subprocess.Popen(
        [sys.executable, str(script), location],
        env={**env, "HANG_AT_5": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not hung.exists():
        assert first.poll() is None, first.communicate()[1]
        assert time.monotonic() < deadline, "the experiment never reached step 5"
        time.sleep(0.05)
    first.kill()  # kill -9 of the driver: its lease stays, its worker dies with it
    first.wait(timeout=30)
    second = subprocess.run(
        [sys.executable, str(script), location],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    # The second driver claimed it at once (same host, pid gone) and resumed at step 5.
    assert json.loads(second.stdout.strip().splitlines()[-1]) == [{"started_at": 5, "n": 1}]
    with open_store(location, readonly=True) as store:
        assert store.leases() == {}


# -- PostgreSQL only ---------------------------------------------------------------------------
def halve(context: Any, config: Any) -> float:
    context.checkpoint({"seen": config.x})
    print(f"halving {config.x}")
    if config.x == 3:
        raise ValueError("three is odd")
    return float(config.x) / 2


def test_a_grid_on_postgres_with_process_workers_and_no_shared_files(
    postgres_database: str, tmp_path: Path
) -> None:
    results = Memento(halve, num_workers=2, progress=False).run(
        {"parameters": {"x": [1, 2, 3, 4]}}, cache_path=postgres_database, raise_on_failure=False
    )
    assert [r.inner for r in results] == [0.5, 1.0, None, 2.0]
    again = Memento(halve, progress=False).run(
        {"parameters": {"x": [1, 2, 4]}}, cache_path=postgres_database
    )
    assert all(r.was_cached for r in again)
    table = open_results(postgres_database).to_dataframe()
    assert sorted(table["status"]) == ["done", "done", "done", "failed"]
    # Nothing beside a store file: the working directory stays empty.
    assert list(Path.cwd().iterdir()) == []


def test_memento_cache_path_may_name_a_postgres_url(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMENTO_CACHE_PATH", postgres_database)
    Memento(halve, executor="thread", progress=False).run({"parameters": {"x": [2]}})
    status = CliRunner().invoke(cli, ["status"])
    assert status.exit_code == 0, status.output
    assert "halve" in status.output and "1" in status.output


def _with_password(url: str) -> tuple[str, str]:
    """The URL and its password (the CI server has one; a local one may not)."""
    from psycopg.conninfo import conninfo_to_dict

    password = str(conninfo_to_dict(url).get("password") or "")
    return url, password


def test_the_password_never_shows(
    postgres_database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, password = _with_password(postgres_database)
    if not password:
        pytest.skip("this PostgreSQL server takes no password (CI's does)")
    notes = tmp_path / "notifications.log"
    with caplog.at_level(logging.DEBUG, logger="memento"):
        provider = FileSystemNotificationProvider(notes)
        Memento(halve, progress=False, notification_provider=provider).run(
            {"parameters": {"x": [1, 3]}}, cache_path=url, raise_on_failure=False
        )
        Memento(halve).run({"parameters": {"x": [1, 3]}}, cache_path=url, dry_run=True)
    shown = [capsys.readouterr().out, caplog.text, notes.read_text()]
    runner = CliRunner()
    for args in (
        ["status", url],
        ["results", url],
        ["results", url, "--format", "json"],
        ["show", url, _a_key(url)],
        ["forget", url, "--failed", "--yes"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        shown.append(result.output)
    report = tmp_path / "report.html"
    assert runner.invoke(cli, ["report", url, "-o", str(report)]).exit_code == 0
    shown.append(report.read_text())
    with open_store(url) as store:
        shown += [repr(store), store.name, str(open_results(url).path)]
    bad = url.replace("/memento_", "/no_such_db_")
    failed = runner.invoke(cli, ["status", bad])
    assert failed.exit_code == 1
    shown.append(failed.output)
    for text in shown:
        assert password not in text
    assert redact(url) in shown[-1] or "***" in shown[-1]


def _a_key(url: str) -> str:
    key: str = next(iter(open_results(url)))["key"]
    return key[:12]


def test_importing_memento_and_running_on_sqlite_never_imports_psycopg(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import memento
        from memento import Memento
        def one(context, config):
            return 1
        Memento(one, executor="thread", progress=False).run(
            {{"parameters": {{"x": [1]}}}}, cache_path={str(tmp_path / "s.sqlite")!r})
        assert "psycopg" not in sys.modules, "psycopg was imported"
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_postgres_url_without_the_driver_says_which_extra(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["psycopg"] = None  # as if it were not installed
        from memento import Memento
        def one(context, config):
            return 1
        try:
            Memento(one, progress=False).run(
                {"parameters": {"x": [1]}}, cache_path="postgresql://me:s3cret@127.0.0.1:1/db")
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True
    )
    assert "memento-grid[postgres]" in done.stdout, done.stdout + done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    assert os.environ.get("MEMENTO_CACHE_PATH") is None
