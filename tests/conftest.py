"""Shared fixtures: every test gets its own store path and never writes into the cwd."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MEMENTO_CACHE_PATH", raising=False)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "results.sqlite"


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes that import memento and the tests' helpers."""
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT / "tests")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("MEMENTO_CACHE_PATH", None)
    return env


PYTHON = sys.executable


def run_at_once(script: str, args: list[list[str]], env: dict[str, str]) -> list[str]:
    """Start one ``python -c script *a`` per entry of ``args`` together; wait for all of them;
    each must succeed. Returns their stdouts, in order."""
    import subprocess

    procs = [
        subprocess.Popen(
            [PYTHON, "-c", script, *a],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a in args
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, err
        outputs.append(out)
    return outputs


def run_notebook(cells: list[str], timeout: int = 240) -> list[str]:
    """Execute ``cells`` as a notebook in a real IPython kernel; each cell's stdout, stripped.
    Skips the test when the notebook packages are not installed."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3").execute()
    return [
        "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout").strip()
        for cell in nb.cells
    ]
