"""The provenance of a run as a user meets it: an experiment script committed in a real git
repository, run with ``python`` in a fresh interpreter, its store read with plain ``sqlite3``,
``open_results``, ``memento show`` and ``memento report``."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memento import open_results

SCRIPT_TIMEOUT = 180
SECRET = "s3cr3t-value"

#: The experiment script: numpy is imported only inside the experiment, so only the worker
#: imports it; the driver reports whether it has numpy loaded at the end (it must not).
SCRIPT = """
import json
import sys

from memento import Memento


def experiment(context, config):
    import numpy

    return {"total": float(numpy.arange(config.n).sum())}


if __name__ == "__main__":
    results = Memento(experiment, progress=False).run(
        {"parameters": {"n": [3, 4]}}, cache_path=sys.argv[1]
    )
    print(json.dumps({"keys": [r.key for r in results],
                      "driver_has_numpy": "numpy" in sys.modules}))
"""

#: git as it behaves by default, whatever the user's configuration.
GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` as a user with an identity of their own would."""
    command = ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=t@example.com"]
    command += ["-c", "commit.gpgsign=false", *args]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=GIT_ENV)
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit: the experiment script and a tracked settings file."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "run.py").write_text(textwrap.dedent(SCRIPT))
    (root / "settings.txt").write_text("lr = 0.1\n")
    git(root, "add", "run.py", "settings.txt")
    git(root, "commit", "-q", "-m", "first")
    return root


@pytest.fixture
def env(subprocess_env: dict[str, str]) -> dict[str, str]:
    """The user's environment, with a secret in it that must never reach the store."""
    return {**subprocess_env, "MY_SECRET_TOKEN": SECRET, **_git_defaults()}


def _git_defaults() -> dict[str, str]:
    return {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run ``command``; its stdout. A failure shows what the program said."""
    done = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_script(folder: Path, store: Path, env: dict[str, str]) -> dict[str, Any]:
    """``python run.py STORE`` in ``folder``; what the driver printed."""
    out = run([sys.executable, "run.py", str(store), "--flag"], env, folder)
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert summary["driver_has_numpy"] is False  # else the worker-only check proves nothing
    return summary


def provenance_rows(store: Path) -> list[dict[str, Any]]:
    """The provenance table, with plain sqlite3."""
    with sqlite3.connect(store) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM provenance")]


def memento(env: dict[str, str], cwd: Path, *args: str) -> str:
    """The ``memento`` command, as ``python -m memento``."""
    return run([sys.executable, "-m", "memento", *args], env, cwd)


def test_a_run_in_a_dirty_repository_records_its_commit_diff_and_machine(
    repo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    (repo / "settings.txt").write_text("lr = 0.5\n")
    store = tmp_path / "out" / "store.sqlite"
    summary = run_script(repo, store, env)

    (row,) = provenance_rows(store)
    assert row["git_commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert row["dirty"] == 1
    assert "-lr = 0.1" in row["diff"] and "+lr = 0.5" in row["diff"]
    assert Path(row["git_root"]).resolve() == repo.resolve()
    assert row["python"].startswith(platform.python_version())
    assert row["platform"] == platform.platform()
    assert row["host"] == platform.node()
    command = json.loads(row["command"])
    assert command[-3:] == ["run.py", str(store), "--flag"]
    packages = json.loads(row["packages"])
    assert packages.get("numpy") == np.__version__, row

    # Every result points to that run's provenance.
    with sqlite3.connect(store) as conn:
        run_ids = {r for (r,) in conn.execute("SELECT run_id FROM results")}
    assert run_ids == {row["run_id"]}
    assert len(summary["keys"]) == 2


def test_no_environment_variable_reaches_the_store_or_memento_show(
    repo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    (repo / "settings.txt").write_text("lr = 0.5\n")
    store = tmp_path / "out" / "store.sqlite"
    summary = run_script(repo, store, env)
    for path in store.parent.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    shown = memento(env, tmp_path, "show", str(store), summary["keys"][0])
    assert SECRET not in shown
    assert "MY_SECRET_TOKEN" not in shown


def test_memento_show_prints_the_commit_and_dirty(
    repo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    (repo / "settings.txt").write_text("lr = 0.5\n")
    store = tmp_path / "out" / "store.sqlite"
    summary = run_script(repo, store, env)
    shown = memento(env, tmp_path, "show", str(store), summary["keys"][0])
    section = shown[shown.index("Provenance") :]
    assert git(repo, "rev-parse", "HEAD").strip() in section
    assert "dirty" in section
    assert "numpy" in section


def test_open_results_has_provenance_columns_and_the_report_the_commit(
    repo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    pytest.importorskip("pandas")
    (repo / "settings.txt").write_text("lr = 0.5\n")
    store = tmp_path / "out" / "store.sqlite"
    run_script(repo, store, env)
    head = git(repo, "rev-parse", "HEAD").strip()

    records = open_results(store)
    assert all(r["provenance"]["git_commit"] == head for r in records)
    frame = records.to_dataframe()
    assert frame["git_commit"].tolist() == [head, head]
    assert frame["dirty"].tolist() == [True, True]

    report = tmp_path / "report.html"
    memento(env, tmp_path, "report", str(store), "-o", str(report))
    html = report.read_text()
    assert head[:7] in html
    assert "computed from a tree with uncommitted changes" in html  # each dirty result flagged

    listed = memento(env, tmp_path, "results", str(store)).splitlines()
    assert "git_commit" in listed[0].split() and "dirty" in listed[0].split()
    assert head[:7] in listed[2]


def test_a_clean_repository_gives_dirty_0(repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    store = tmp_path / "out" / "store.sqlite"
    run_script(repo, store, env)
    (row,) = provenance_rows(store)
    assert row["git_commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert row["dirty"] == 0
    assert row["diff"] is None
    with sqlite3.connect(store) as conn:
        (key,) = conn.execute("SELECT key FROM results LIMIT 1").fetchone()
    shown = memento(env, tmp_path, "show", str(store), key)
    assert "(clean)" in shown
    assert "dirty" not in shown


def test_a_run_outside_any_repository_has_no_commit(tmp_path: Path, env: dict[str, str]) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "run.py").write_text(textwrap.dedent(SCRIPT))
    # The folder must really be outside a repository for this test to mean anything.
    outside = subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
        capture_output=True,
        env=GIT_ENV,
    )
    assert outside.returncode != 0
    store = tmp_path / "out" / "store.sqlite"
    run_script(folder, store, env)
    (row,) = provenance_rows(store)
    assert row["git_commit"] is None
    assert row["dirty"] is None
    assert row["python"].startswith(platform.python_version())
