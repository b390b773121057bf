"""Helpers for tests that start Python processes and notebooks."""

from __future__ import annotations

import sys

import pytest

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
