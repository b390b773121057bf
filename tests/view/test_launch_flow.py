"""A researcher's whole loop, as the issue describes it: launch a sampled, repeated grid from a
YAML file with ``memento run``, aggregate it over repeats, find it cached from Python, and
write the grouped report. Real subprocesses on a real script and store."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from memento import open_results
from memento.view.cli import cli

pytestmark = pytest.mark.timeout(300)

SCRIPT = """\
    import math
    import sys

    from memento import Memento, loguniform


    def train(context, config):
        loss = 1.0
        for epoch in range(5):
            loss *= 1 - config.lr * (2 if config.model == "cnn" else 1)
            context.record({"loss": (epoch, loss)})
        return {"loss": loss, "seed": context.seed % 1000}


    MATRIX = {
        "parameters": {"model": ["mlp", "cnn"]},
        "sample": {"lr": loguniform(0.01, 0.1)},
        "samples": 4,
        "seed": 7,
        "repeats": 3,
    }

    if __name__ == "__main__":
        results = Memento(train, progress=False).run(MATRIX, cache_path=sys.argv[1])
        print(sum(r.was_cached for r in results), len(results))
    """

GRID = """\
    parameters:
      model: [mlp, cnn]
    sample:
      lr: !loguniform [0.01, 0.1]
    samples: 4
    seed: 7
    repeats: 3
    """


def test_launch_sample_repeat_aggregate_report(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    (tmp_path / "train.py").write_text(textwrap.dedent(SCRIPT))
    (tmp_path / "grid.yaml").write_text(textwrap.dedent(GRID))
    store = tmp_path / "grid.sqlite"

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=tmp_path,
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr
        return done

    python("-m", "memento", "run", "train.py:train", "--matrix", "grid.yaml",
           "--store", str(store), "--workers", "2", "--no-progress")  # fmt: skip

    # 2 models x 4 sampled lr x 3 repeats, each stored once.
    results = open_results(store)
    assert len(results) == 24
    table = results.aggregate(by=["model", "lr"])
    assert len(table) == 8
    assert set(table[("loss", "count")]) == {3}
    for (model, lr), row in table.iterrows():
        factor = 2 if model == "cnn" else 1
        assert math.isclose(row[("loss", "mean")], (1 - lr * factor) ** 5)
        assert row[("loss", "std")] == 0.0  # the loss does not depend on the repeat
    seeds = results.aggregate(by="model")[("seed", "std")]
    assert all(s > 0 for s in seeds)  # each repeat has a seed of its own
    by_model = results.aggregate(by="model")
    mlp = [r["loss"] for r in results.to_records() if r["model"] == "mlp"]
    assert math.isclose(by_model.loc["mlp", ("loss", "mean")], statistics.mean(mlp))

    # The same grid from Python: every result is the CLI's.
    assert python("train.py", str(store)).stdout.split() == ["24", "24"]

    # A dry run and the status see the sampled, repeated configs like any others.
    dry = python("-m", "memento", "run", "train.py:train", "--matrix", "grid.yaml",
                 "--store", str(store), "--dry-run")  # fmt: skip
    assert "24 cached" in dry.stdout and "repeat=2" in dry.stdout and "lr=" in dry.stdout
    status = CliRunner().invoke(cli, ["status", str(store)])
    assert ["train:train", "24", "0", "0", "0", "24"] in [
        line.split() for line in status.output.splitlines()
    ]

    report = tmp_path / "report.html"
    made = CliRunner().invoke(cli, ["report", str(store), "--by", "model", "-o", str(report)])
    assert made.exit_code == 0, made.output
    page = report.read_text()
    assert "mlp" in page and "cnn" in page and "loss" in page
