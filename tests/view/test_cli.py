"""The ``memento`` command, through click's CliRunner and through real subprocesses."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from stores import XSS, load, make_store, write_module

from memento import Memento, open_results
from memento.store.sqlite import SCHEMA_VERSION
from memento.view.cli import cli

SCRIPT = shutil.which("memento") or str(Path(sys.executable).parent / "memento")


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "store" / "grid.sqlite")


def keys_of(store: Path, **filters: Any) -> list[str]:
    return [r["key"] for r in open_results(store, load_values=False, **filters)]


# -- status ---------------------------------------------------------------------------------------
def test_status_counts_by_state_and_lists_failures(store: Path) -> None:
    result = invoke("status", str(store))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Store          {store}" in out
    assert re.search(r"Last activity  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((just now|.* ago)\)", out)
    assert "Runs           1" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("experiment"))
    assert lines[header].split() == ["experiment", "done", "stale", "failed", "running", "total"]
    assert lines[header + 2].split() == ["stores:trainer", "8", "0", "4", "0", "12"]
    assert "Failed (4)" in out and "ValueError: diverged with" in out
    assert "Stale" not in out and "Running" not in out
    assert "\x1b[" not in out  # not a terminal: no colours


def test_status_of_an_empty_store(store: Path) -> None:
    assert invoke("forget", str(store), "--all", "--yes").exit_code == 0
    result = invoke("status", str(store))
    assert result.exit_code == 0 and "No results yet." in result.output


STALE_EXPERIMENT = """
def experiment(context, config):
    return config.a * {factor}
"""


def stale_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Results of ``experiment_v`` a=1,2 by old code and a=3 by new code."""
    code = tmp_path / "code"
    code.mkdir()
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    store = tmp_path / "stale.sqlite"
    for factor, values in ((2, [1, 2]), (3, [3])):
        write_module(code, "experiment_v", STALE_EXPERIMENT.format(factor=factor))
        module = load("experiment_v")
        Memento(module.experiment, progress=False, executor="inline").run(
            {"parameters": {"a": values}}, cache_path=store
        )
    sys.modules.pop("experiment_v", None)
    return store


def test_status_and_results_show_stale_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stale_store(tmp_path, monkeypatch)
    out = invoke("status", str(store)).output
    counts = next(line for line in out.splitlines() if line.startswith("experiment_v:"))
    assert counts.split() == ["experiment_v:experiment", "1", "2", "0", "0", "3"]
    assert "Stale (2)" in out and "memento forget --stale" in out
    stale = invoke("results", str(store), "--status", "stale", "--format", "json").output
    assert sorted(r["params"]["a"] for r in json.loads(stale)) == [1, 2]
    assert invoke("forget", str(store), "--stale", "--yes").exit_code == 0
    assert [r["params"]["a"] for r in open_results(store)] == [3]


SLOW_DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from memento import Memento

    def experiment(context, config):
        go = Path(sys.argv[2])
        while not go.exists():
            time.sleep(0.05)
        return config.a

    Memento(experiment, executor="process", num_workers=2, progress=False).run(
        {"parameters": {"a": [1, 2, 3, 4]}}, cache_path=sys.argv[1])
    print("finished")
    """
)


@pytest.mark.timeout(240)
def test_status_while_a_run_is_writing(tmp_path: Path) -> None:
    store, go = tmp_path / "live.sqlite", tmp_path / "go"
    driver = tmp_path / "driver.py"
    driver.write_text(SLOW_DRIVER)
    proc = subprocess.Popen(
        [sys.executable, str(driver), str(store), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        out = ""
        while time.monotonic() < deadline:
            if store.exists():
                result = invoke("status", str(store))
                out = result.output
                if result.exit_code == 0 and "Running (2)" in out:
                    break
            time.sleep(0.1)
        # Two workers: two experiments run, the other two wait (they are not "running").
        assert "Running (2)" in out, out
        assert "1 in progress: pid" in out
        counts = next(line for line in out.splitlines() if line.startswith("driver:"))
        assert counts.split() == ["driver:experiment", "0", "0", "0", "2", "0"]
        assert invoke("show", str(store), out.split("Running (2)")[1].split()[6]).exit_code == 0
        go.write_text("go")
        assert proc.wait(timeout=180) == 0
    finally:
        go.write_text("go")
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    out = invoke("status", str(store)).output
    assert "Running" not in out and "Runs           1\n" in out
    counts = next(line for line in out.splitlines() if line.startswith("driver:"))
    assert counts.split() == ["driver:experiment", "4", "0", "0", "0", "4"]


def test_a_run_whose_driver_died_is_reported(store: Path) -> None:
    conn = sqlite3.connect(store)
    with conn:
        conn.execute(
            "INSERT INTO runs (run_id, experiment, host, pid, started, state) "
            "VALUES ('dead', 'x', ?, 999999999, ?, 'running')",
            (__import__("socket").gethostname(), time.time()),
        )
        conn.execute(
            "INSERT INTO running VALUES ('feedbeef', 'dead', 'stores:trainer', '{\"a\": 1}', ?)",
            (time.time(),),
        )
    conn.close()
    out = invoke("status", str(store)).output
    assert "pid 999999999" in out and "its process is gone: interrupted" in out
    assert "Running (1)" in out and "feedbeef" in out
    assert "is running" in invoke("show", str(store), "feedbeef").output


# -- results --------------------------------------------------------------------------------------
def test_results_table(store: Path) -> None:
    out = invoke("results", str(store)).output
    lines = out.splitlines()
    assert lines[0].split() == [
        "key",
        "model",
        "lr",
        "tag",
        "score",
        "model_name",
        "status",
        "runtime",
        "error",
        "kind",  # each failure's kind (error, timeout, crash, ...)
        "metric.loss",
        "metric.accuracy",
        # each result's run provenance (issue 13); python/platform/command: memento show
        "git_commit",
        "dirty",
    ]
    assert len(lines) == 2 + 12 + 1 and lines[-1] == "12 result(s)"
    assert XSS in out


def test_results_csv_and_json(store: Path) -> None:
    rows = list(
        csv.DictReader(io.StringIO(invoke("results", str(store), "--format", "csv").output))
    )
    assert len(rows) == 12
    assert rows[0]["model"] == "Linear" and len(rows[0]["key"]) == 32
    assert {r["status"] for r in rows} == {"done", "failed"}
    records = json.loads(invoke("results", str(store), "--format", "json").output)
    assert len(records) == 12
    first = records[0]
    assert set(first) >= {"key", "params", "status", "runtime", "metrics", "inner", "error"}
    assert first["params"]["model"] in ("Linear", "Forest")


@pytest.mark.parametrize(
    ("args", "count"),
    [
        (["--where", "model=Linear"], 6),
        (["--where", "lr=0.1"], 4),
        (["--where", "lr=0.1", "--where", "model=Forest"], 2),
        (["--where", f"tag={XSS}", "--status", "failed"], 2),
        (["--status", "failed"], 4),
        (["--status", "done"], 8),
        (["--experiment", "trainer"], 12),
    ],
)
def test_results_filters(store: Path, args: list[str], count: int) -> None:
    out = invoke("results", str(store), "--format", "json", *args).output
    assert len(json.loads(out)) == count


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "nope=1"], "No parameter named 'nope'"),
        (["--where", "oops"], "--where takes name=value"),
        (["--experiment", "other"], "No experiment 'other'"),
        (["--format", "xml"], "Invalid value for '--format'"),
        (["--status", "weird"], "Invalid value for '--status'"),
    ],
)
def test_results_bad_options(store: Path, args: list[str], message: str) -> None:
    result = invoke("results", str(store), *args)
    assert result.exit_code != 0
    assert message in result.output


# -- show -----------------------------------------------------------------------------------------
def test_show_a_result_by_prefix(store: Path) -> None:
    record = open_results(store, where={"model": "Linear", "lr": 0.2, "tag": "plain"})[0]
    out = invoke("show", str(store), record["key"][:8]).output
    assert f"Key         {record['key']}" in out
    assert "Status      done" in out
    assert "  model        Linear" in out and "  lr           0.2" in out
    assert "Result      score=2.0, model_name='Linear'" in out
    metrics = out.split("Metrics")[1].splitlines()
    assert metrics[1].split() == ["metric", "points", "last", "min", "max"]
    assert metrics[3].split() == ["loss", "4", "0.2", "0.2", "0.8"]


def test_show_a_failure_with_its_traceback(store: Path) -> None:
    key = keys_of(store, status="failed")[0]
    out = invoke("show", str(store), key).output
    assert "Status      failed" in out
    assert "Error       ValueError: diverged with" in out
    assert "Traceback (most recent call last)" in out and "in trainer" in out


def test_show_ambiguous_and_unknown_prefixes(store: Path) -> None:
    keys = keys_of(store)
    prefix = next(k[:n] for n in (1, 2) for k in keys if sum(o.startswith(k[:n]) for o in keys) > 1)
    result = invoke("show", str(store), prefix)
    assert result.exit_code == 1
    assert f"Key prefix {prefix!r} is ambiguous" in result.output
    candidates = [k for k in keys if k.startswith(prefix)]
    assert all(k in result.output for k in candidates)
    missing = invoke("show", str(store), "zzzz")
    assert missing.exit_code == 1 and "No result has a key starting with 'zzzz'" in missing.output


def test_show_with_the_default_store(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMENTO_CACHE_PATH", str(store))
    key = keys_of(store)[0]
    assert f"Key         {key}" in invoke("show", key[:10]).output


# -- forget ---------------------------------------------------------------------------------------
def test_forget_failed_asks_first(store: Path) -> None:
    declined = invoke("forget", str(store), "--failed", input="n\n")
    assert declined.exit_code == 1 and "Forget 4 result(s) (failed)" in declined.output
    assert len(keys_of(store)) == 12
    accepted = invoke("forget", str(store), "--failed", input="y\n")
    assert accepted.exit_code == 0 and "Forgot 4 result(s)" in accepted.output
    assert len(keys_of(store)) == 8 and not keys_of(store, status="failed")


def test_forget_then_run_computes_only_what_was_forgotten(store: Path) -> None:
    key = keys_of(store, where={"lr": 0.1, "model": "Linear", "tag": "plain"})[0]
    assert invoke("forget", str(store), "--key", key[:12], "--yes").exit_code == 0
    assert len(keys_of(store)) == 11
    from stores import GRID, trainer

    results = Memento(trainer, progress=False, executor="thread").run(
        GRID, cache_path=store, raise_on_failure=False
    )
    assert results is not None
    assert [r.key for r in results if not r.was_cached and r.ok] == [key]


def test_forget_all_and_bad_selections(store: Path) -> None:
    none = invoke("forget", str(store))
    assert none.exit_code == 2 and "Choose exactly one of" in none.output
    two = invoke("forget", str(store), "--failed", "--all")
    assert two.exit_code == 2 and "Choose exactly one of" in two.output
    unknown = invoke("forget", str(store), "--key", "zzzz", "--yes")
    assert unknown.exit_code == 1 and "No result has a key starting with 'zzzz'" in unknown.output
    assert invoke("forget", str(store), "--stale", "--yes").output == "Nothing to forget.\n"
    assert "Forgot 12 result(s)" in invoke("forget", str(store), "--all", "--yes").output
    assert keys_of(store) == []


# -- report ---------------------------------------------------------------------------------------
def test_report_writes_a_page(store: Path, tmp_path: Path) -> None:
    output = tmp_path / "out" / "report.html"
    output.parent.mkdir()
    result = invoke("report", str(store), "-o", str(output))
    assert result.exit_code == 0
    assert result.output == f"Wrote {output} (12 results, 5 figures).\n"
    page = output.read_text()
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# -- errors ---------------------------------------------------------------------------------------
def bad_stores(tmp_path: Path, good: Path) -> dict[str, Path]:
    text = tmp_path / "text.sqlite"
    text.write_text("this is not a database\n" * 100)
    other = tmp_path / "other.sqlite"
    with closing(sqlite3.connect(other)) as conn, conn:
        conn.execute("CREATE TABLE things (x)")
    future = tmp_path / "future.sqlite"
    shutil.copy(good, future)
    with closing(sqlite3.connect(future)) as conn, conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    alien = tmp_path / "alien.sqlite"
    shutil.copy(good, alien)
    with closing(sqlite3.connect(alien)) as conn, conn:
        conn.execute("UPDATE meta SET value = 'something-else' WHERE name = 'format'")
    return {
        "missing": tmp_path / "missing.sqlite",
        "text": text,
        "other": other,
        "future": future,
        "alien": alien,
    }


MESSAGES = {
    "missing": "No memento store at",
    "text": "is not a readable memento store (file is not a database)",
    "other": "is not a memento store (no meta table)",
    "future": f"has store schema version '99'; this memento reads versions 1 to {SCHEMA_VERSION}",
    "alien": "is not a memento store (format 'something-else')",
}
COMMANDS = [
    ["status"],
    ["results"],
    ["show", "abc"],
    ["forget", "--all", "--yes"],
    ["report", "-o", "REPORT"],
]


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_bad_stores_give_one_line_errors(kind: str, store: Path, tmp_path: Path) -> None:
    path = bad_stores(tmp_path, store)[kind]
    before = path.read_bytes() if path.exists() else None
    for command in COMMANDS:
        args = [a.replace("REPORT", str(tmp_path / "r.html")) for a in command]
        args.insert(1, str(path))
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.count("\n") == 1, result.output
        assert result.output.startswith("Error: ") and MESSAGES[kind] in result.output
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        )
    assert (path.read_bytes() if path.exists() else None) == before  # never modified
    assert not (tmp_path / "r.html").exists()


def test_default_store_is_memento_sqlite_in_the_working_directory(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke("status")
    assert result.exit_code == 1
    assert "No memento store at " + str(Path.cwd() / "memento.sqlite") in result.output
    assert "set MEMENTO_CACHE_PATH" in result.output
    shutil.copy(store, Path.cwd() / "memento.sqlite")
    assert invoke("status").exit_code == 0
    monkeypatch.setenv("MEMENTO_CACHE_PATH", str(tmp_path / "nowhere.sqlite"))
    assert "nowhere.sqlite" in invoke("status").output


# -- real processes -------------------------------------------------------------------------------
def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.mark.timeout(180)
def test_python_dash_m_memento_and_the_script(store: Path, tmp_path: Path) -> None:
    if not Path(SCRIPT).exists():
        pytest.skip("the memento script is not installed (pip install -e .)")
    for prefix in ([sys.executable, "-m", "memento"], [SCRIPT]):
        status = run(*prefix, "status", str(store))
        assert status.returncode == 0 and "stores:trainer" in status.stdout
        assert status.stderr == ""
        results = run(*prefix, "results", str(store), "--format", "json", "--status", "failed")
        assert len(json.loads(results.stdout)) == 4
        broken = run(*prefix, "status", str(tmp_path / "nothing.sqlite"))
        assert broken.returncode == 1 and broken.stdout == ""
        assert broken.stderr.startswith("Error: No memento store at")
        assert broken.stderr.count("\n") == 1 and "Traceback" not in broken.stderr
    version = run(SCRIPT, "--version")
    assert version.returncode == 0 and "memento" in version.stdout


@pytest.mark.timeout(180)
def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    store = make_store(
        tmp_path / "big.sqlite",
        executor="inline",
        grid={
            "parameters": {"model": [object], "lr": [i / 1000 for i in range(400)], "tag": ["x"]}
        },
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "memento", "results", str(store), "--format", "csv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    proc.wait(timeout=120)
    assert "Traceback" not in proc.stderr.read().decode()
    proc.stderr.close()


def test_environment_is_isolated() -> None:
    assert "MEMENTO_CACHE_PATH" not in os.environ
