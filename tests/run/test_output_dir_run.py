"""Each experiment's output folder as a user meets it: driver scripts run in fresh
interpreters with the default process executor, the folder checked on disk, with
``memento show`` and ``memento forget``, across a failed attempt, a killed worker resumed from
its checkpoint, and a PostgreSQL store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

SCRIPT_TIMEOUT = 180
MARKER = ".memento-output"

#: The experiments, in a module of their own so that worker processes import them.
EXPERIMENTS = '''
import os
import signal
from pathlib import Path


def names(folder):
    """What the experiment sees in its folder (memento's marker left out)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name != ".memento-output")


def write_model(context, config):
    (context.output_dir / "model.txt").write_text(f"weights for {config.n}")
    return str(context.output_dir)


def fails_first(context, config):
    """The first attempt leaves a file behind and fails; the next reports what it finds."""
    flag = Path(config.flag)
    if not flag.exists():
        flag.write_text("attempted")
        (context.output_dir / "first.txt").write_text("partial")
        raise RuntimeError("first attempt fails")
    return names(context.output_dir)


def killed_then_resumed(context, config):
    """Checkpoints with a file beside it, then its worker is killed (once); the resumed
    attempt must find the checkpoint and the file together."""
    resumed = context.checkpoint_exist()
    if not resumed:
        (context.output_dir / "epoch1.bin").write_bytes(b"state after epoch 1")
        context.checkpoint({"epoch": 1})
    flag = Path(config.flag)
    if not flag.exists():
        flag.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    (context.output_dir / "epoch2.bin").write_bytes(b"state after epoch 2")
    return {"resumed": resumed, "state": context.restore(), "files": names(context.output_dir)}
'''

#: The driver: ``python drive.py STORE EXPERIMENT RETRIES OUTPUT_DIR|- PARAMS_JSON``.
DRIVER = """
import json, sys
from memento import Memento
import experiments

store, name, retries, output_dir, params = sys.argv[1:6]
# Every failure is retried (the default retries crashes, not a raise: issue 12).
memento = Memento(getattr(experiments, name), progress=False, retries=int(retries),
                  retry_on=lambda failure: True,
                  output_dir=None if output_dir == "-" else output_dir)
results = memento.run({"parameters": json.loads(params)}, cache_path=store,
                      raise_on_failure=False)
for r in results:
    print(json.dumps({"key": r.key, "status": r.status, "inner": r.inner,
                      "error": None if r.error is None else str(r.error),
                      "output_dir": None if r.output_dir is None else str(r.output_dir),
                      "cached": r.was_cached}, default=repr))
"""


@pytest.fixture
def project(tmp_path: Path, subprocess_env: dict[str, str]) -> Path:
    """A user's project folder holding the experiments and the driver."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "experiments.py").write_text(textwrap.dedent(EXPERIMENTS))
    (folder / "drive.py").write_text(textwrap.dedent(DRIVER))
    subprocess_env["PYTHONPATH"] = f"{folder}:{subprocess_env['PYTHONPATH']}"
    return folder


def run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run ``command``; its stdout. A failure shows what the program said."""
    done = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def drive(
    project: Path,
    env: dict[str, str],
    store: str | Path,
    experiment: str,
    params: dict[str, list[Any]],
    retries: int = 0,
    output_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Run one experiment over ``params`` in a new interpreter; one dict per result."""
    command = [sys.executable, str(project / "drive.py"), str(store), experiment, str(retries)]
    command += [str(output_dir) if output_dir else "-", json.dumps(params)]
    out = run(command, env, project)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def memento(env: dict[str, str], cwd: Path, *args: str) -> str:
    """The ``memento`` command, as ``python -m memento``."""
    return run([sys.executable, "-m", "memento", *args], env, cwd)


def folder_of(store: Path, key: str) -> Path:
    """Where the issue says a SQLite store keeps an experiment's folder."""
    return Path(f"{store}.d") / "outputs" / key


def test_files_an_experiment_writes_are_kept_shown_and_forgotten_with_it(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store" / "grid.sqlite"
    results = drive(project, subprocess_env, store, "write_model", {"n": [1, 2]})
    assert [r["status"] for r in results] == ["done", "done"]
    first, second = results
    folder = folder_of(store, first["key"])
    assert (folder / "model.txt").read_text() == "weights for 1"
    assert Path(first["output_dir"]).resolve() == folder.resolve()
    assert Path(first["inner"]).resolve() == folder.resolve()  # what the experiment saw

    cached = drive(project, subprocess_env, store, "write_model", {"n": [1]})
    assert cached[0]["cached"] is True
    assert Path(cached[0]["output_dir"]).resolve() == folder.resolve()

    shown = memento(subprocess_env, tmp_path, "show", str(store), first["key"])
    assert "model.txt" in shown

    memento(subprocess_env, tmp_path, "forget", str(store), "--key", first["key"], "--yes")
    assert not folder.exists()
    with sqlite3.connect(store) as conn:
        keys = [k for (k,) in conn.execute("SELECT key FROM results")]
    assert keys == [second["key"]]
    # The other experiment's folder is not touched.
    assert (folder_of(store, second["key"]) / "model.txt").read_text() == "weights for 2"


def test_a_retry_starts_with_an_empty_folder(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "grid.sqlite"
    flag = tmp_path / "attempted"
    (result,) = drive(
        project, subprocess_env, store, "fails_first", {"flag": [str(flag)]}, retries=1
    )
    assert flag.exists()  # the first attempt ran and failed
    assert result["status"] == "done"
    assert result["inner"] == []
    assert not (folder_of(store, result["key"]) / "first.txt").exists()


def test_a_failed_attempts_files_stay_until_the_next_attempt_starts(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "grid.sqlite"
    flag = tmp_path / "attempted"
    (failed,) = drive(project, subprocess_env, store, "fails_first", {"flag": [str(flag)]})
    assert failed["status"] == "failed"
    left = folder_of(store, failed["key"]) / "first.txt"
    assert left.read_text() == "partial"  # kept for inspection
    assert "first.txt" in memento(subprocess_env, tmp_path, "show", str(store), failed["key"])

    (again,) = drive(project, subprocess_env, store, "fails_first", {"flag": [str(flag)]})
    assert again["status"] == "done"
    assert again["inner"] == []
    assert not left.exists()


def test_a_checkpoint_and_the_folder_survive_a_killed_worker_together(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "grid.sqlite"
    flag = tmp_path / "killed"
    params = {"flag": [str(flag)]}
    (killed,) = drive(project, subprocess_env, store, "killed_then_resumed", params)
    assert flag.exists()
    assert killed["status"] == "failed"
    folder = folder_of(store, killed["key"])
    assert (folder / "epoch1.bin").read_bytes() == b"state after epoch 1"

    (resumed,) = drive(project, subprocess_env, store, "killed_then_resumed", params)
    assert resumed["status"] == "done", resumed
    assert resumed["inner"] == {
        "resumed": True,
        "state": {"epoch": 1},
        "files": ["epoch1.bin", "epoch2.bin"],
    }


def test_a_server_store_needs_an_output_dir_the_user_names(
    project: Path, subprocess_env: dict[str, str], tmp_path: Path, postgres_database: str
) -> None:
    (failed,) = drive(project, subprocess_env, postgres_database, "write_model", {"n": [1]})
    assert failed["status"] == "failed"
    assert "output_dir" in failed["error"]
    assert "Memento(" in failed["error"]

    outputs = tmp_path / "outputs"
    (done,) = drive(
        project, subprocess_env, postgres_database, "write_model", {"n": [1]}, output_dir=outputs
    )
    assert done["status"] == "done", done
    folder = outputs / done["key"]
    assert (folder / "model.txt").read_text() == "weights for 1"
    assert Path(done["output_dir"]).resolve() == folder.resolve()
