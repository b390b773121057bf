"""A memento-ml 1.2 program, written as a 1.2 user would, runs unchanged end to end.

The program below uses only 1.2's public API and 1.2's import paths: a matrix with numpy values
and an ``exclude`` matched by value, settings holding a scikit-learn pipeline and a lambda,
``run``, ``dry_run``, ``add_matrix``/``run_all``, ``Cache``, ``TaskManager``, a two-value
checkpoint that survives a failed first run, metrics read through pandas, and
``EmailNotificationProvider`` sending to a real SMTP server (aiosmtpd on 127.0.0.1). It runs as
its own ``python`` process, in a fresh working directory, the way a user runs a script.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from servers import Inbox, free_port

pytest.importorskip("sklearn")
pytest.importorskip("pandas")

PROGRAM = r"""
import json
import os
import sys

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from memento import AggregateException, Cache, Memento, TaskManager, delayed
from memento.compat.caching import FileSystemCacheProvider
from memento.configurations import Config, generate_configurations
from memento.notifications import EmailNotificationProvider, SmtpConfiguration
from memento.task_interface import Context, Metric

port, store, marker = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def experiment(context: Context, config: Config):
    if context.checkpoint_exist():
        start, total = context.restore()
    else:
        start, total = 0, 0.0
    for step in range(start, 4):
        total += float(config.settings["transform"](config.x) * config.scale)
        context.record({"loss": float(10 - step)})
        context.record(value_dict={"acc": (float(step), total)})
        context.checkpoint(step + 1, total)
        if step == 1 and config.x == 1 and config.scale == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("flaky first attempt")
    return {"total": total, "model": type(config.settings["model"][-1]).__name__}


matrix = {
    "parameters": {"x": np.arange(3), "scale": [1, 2]},
    "settings": {
        "model": make_pipeline(StandardScaler(), LogisticRegression()),
        "transform": lambda v: v * 10,
    },
    "exclude": [{"x": 2, "scale": 2}],
}
report = {"configs": len(generate_configurations(matrix))}

provider = EmailNotificationProvider(
    SmtpConfiguration("127.0.0.1", port, require_tls=False), "lab@example.org", ["me@example.org"]
)
memento = Memento(experiment, notification_provider=provider)
report["dry_run"] = memento.run(matrix, dry_run=True, cache_path=store)

try:
    memento.run(matrix, cache_path=store)
except AggregateException as error:
    report["first_failures"] = [str(e) for e in error.exceptions]

results = memento.run(matrix, cache_path=store)
report["values"] = [r.inner for r in results]
report["configs_seen"] = [[int(r.config.x), r.config.scale] for r in results]
acc = results[0].metrics["acc"]
loss = results[0].metrics["loss"]
report["metric_type"] = isinstance(acc, pd.DataFrame)
report["acc_mean"] = float(acc["y"].mean())
report["loss_max"] = float(loss["y"].max())
report["acc_masked"] = acc[acc["x"] >= 2.0]["y"].to_numpy().tolist()
report["both_columns"] = list(acc[["x", "y"]].columns)
report["concat_rows"] = len(pd.concat([r.metrics["acc"] for r in results]))
resumed = [r for r in results if r.config.x == 1 and r.config.scale == 2][0]
report["resumed_total"] = resumed.inner["total"]
report["cached_again"] = [r.was_cached for r in memento.run(matrix, cache_path=store)]

def chained(context, config):
    return config.n * 2 if hasattr(config, "n") else config.base + 100


chain = Memento(chained)
chain.add_matrix({"id": "base", "parameters": {"n": [1, 2]}, "dependencies": []})
chain.add_matrix(
    {"id": "next", "parameters": {"m": [0]}, "dependencies": ["base"]}
)
all_results = chain.run_all(cache_path=store)
report["run_all"] = {k: [r.inner for r in v] for k, v in all_results.items()}
report["run_all_next_sees"] = [int(r.config.base) for r in all_results["next"]]

calls = []


@Cache
def apply(f, x):
    calls.append(x)
    return float(f(x))


report["cache"] = [apply(np.sqrt, 9.0), apply(np.sqrt, 9.0), apply(np.log, 1.0)]
report["cache_calls"] = len(calls)

manager = TaskManager(workers=2)
manager.add_task(delayed(sum)([1, 2]))
manager.add_tasks([delayed(max)([4, 9]), delayed(lambda a, b: a - b)(10, 3)])
report["task_manager"] = manager.run()
report["metric"] = list(Metric(1.0, 2.0)._asdict().items())

print("REPORT " + json.dumps(report, default=repr))
"""


def test_a_12_program_runs_unchanged(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        script = tmp_path / "program.py"
        script.write_text(PROGRAM)
        work = tmp_path / "work"
        work.mkdir()
        store = tmp_path / "results.sqlite"
        proc = subprocess.run(
            [sys.executable, str(script), str(port), str(store), str(tmp_path / "marker")],
            cwd=work,
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        controller.stop()
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("REPORT "))
    report = json.loads(line[len("REPORT ") :])

    # The matrix: np.arange values, exclude {"x": 2, "scale": 2} matched by value.
    assert report["configs"] == 5
    assert report["dry_run"] is None
    assert report["configs_seen"] == [[0, 1], [0, 2], [1, 1], [1, 2], [2, 1]]
    # One failure on the first run; the second resumed from the two-value checkpoint.
    assert report["first_failures"] and "flaky first attempt" in report["first_failures"][0]
    assert report["resumed_total"] == 4 * 10 * 1 * 2
    assert [v["total"] for v in report["values"]] == [0.0, 0.0, 40.0, 80.0, 80.0]
    assert {v["model"] for v in report["values"]} == {"LogisticRegression"}
    # Metrics are pandas DataFrames with columns x and y, as in 1.2.
    assert report["metric_type"] is True
    assert report["acc_mean"] == 0.0 and report["loss_max"] == 10.0
    assert report["acc_masked"] == [0.0, 0.0]
    assert report["both_columns"] == ["x", "y"]
    # 4 rows each: the resumed experiment's checkpoint kept its rows of steps 0 and 1, and it
    # recorded steps 2 and 3 after the resume
    assert report["concat_rows"] == 20
    assert report["cached_again"] == [True] * 5
    # run_all: the dependent matrix sees the results of the one it depends on.
    assert report["run_all"] == {"base": [2, 4], "next": [102, 104]}
    assert report["run_all_next_sees"] == [2, 4]
    # Cache: one call for the repeated argument; a numpy ufunc is a valid argument.
    assert report["cache"] == [3.0, 3.0, 0.0] and report["cache_calls"] == 2
    assert report["task_manager"] == [3, 9, 7]
    assert report["metric"] == [["x", 1.0], ["y", 2.0]]

    # E-mail: one mail per finished task and one at the end of each run, with 1.2's subjects.
    subjects = [m["Subject"] for m in inbox.messages]
    assert all(s.startswith("[Memento] ") for s in subjects), subjects
    assert sum(s.startswith("[Memento] Task failed") for s in subjects) == 1
    assert sum(s.startswith("[Memento] Task completed") for s in subjects) >= 5
    assert sum(s.startswith("[Memento] All tasks completed") for s in subjects) >= 2
    assert all(m["From"] == "Memento <lab@example.org>" for m in inbox.messages)
