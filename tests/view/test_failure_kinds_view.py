"""Failure kinds as the ``memento`` command and the HTML report show them.

The rows are written through a real :class:`~memento.store.sqlite.SQLiteStore`, as the
driver writes them: a success, errors, a timeout with its threads' stacks, and an old-style
row (no ``kind``: stored before kinds existed) whose kind comes from its error type.
"""

from __future__ import annotations

import csv
import html
import io
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from memento.run.memento import Memento
from memento.store.backends import open_store
from memento.store.base import StoredOutcome
from memento.store.values import encode
from memento.view.cli import cli
from memento.view.report import write_report

EXPERIMENT = "tests_kinds:train"
XSS = "<script>alert(1)</script>"
STACKS = (
    "Thread 0x00007f5e2a1fc740 (most recent call first):\n"
    '  File "/work/x.py", line 3 in hang\n'
    '  File "/work/x.py", line 9 in train\n'
    "\n"
    "Current thread 0x00007f5e2b3fd700 (most recent call first):\n"
    '  File "/work/loader.py", line 17 in <lambda:' + XSS + ">\n"
)
#: Key -> (lr, kind written to the row, error type); kind None is an old-style failure.
FAILURES = {
    "a" * 32: (0.1, "error", "ValueError"),
    "b" * 32: (0.2, "error", "KeyError"),
    "c" * 32: (0.3, "timeout", "ExperimentTimeout"),
    "d" * 32: (0.4, None, "WorkerDied"),
}
DONE = "e" * 32


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def failure(key: str, lr: float, kind: str | None, etype: str) -> StoredOutcome:
    message = f"it went wrong at lr={lr} {XSS}"
    return StoredOutcome(
        key=key,
        experiment=EXPERIMENT,
        status="failed",
        params=json.dumps({"lr": lr}),
        error_type=etype,
        error_message=message,
        traceback=(
            "Traceback (most recent call last):\n"
            '  File "/work/train.py", line 42, in train\n'
            f"{etype}: {message}\n"
        ),
        runtime=1.5,
        start_time=1_700_000_000.0,
        kind=kind,
        stacks=STACKS if kind == "timeout" else None,
    )


def outcomes() -> list[StoredOutcome]:
    value = encode({"score": 1.0})
    rows = [failure(key, *spec) for key, spec in FAILURES.items()]
    rows.append(
        StoredOutcome(
            key=DONE,
            experiment=EXPERIMENT,
            status="done",
            params=json.dumps({"lr": 0.5}),
            value=value.data(),
            value_format=value.format,
            value_info=value.info,
            runtime=0.5,
        )
    )
    return rows


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store" / "kinds.sqlite"
    path.parent.mkdir()
    with open_store(path) as opened:
        opened.write_outcomes(outcomes())
    return path


def test_the_rows_are_stored_as_written(store: Path) -> None:
    # The old-style row really has no kind: what the views show for it is derived.
    with closing(sqlite3.connect(store)) as conn:
        kinds = dict(conn.execute("SELECT key, kind FROM results"))
        (stacks,) = conn.execute("SELECT stacks FROM results WHERE key = ?", ("c" * 32,)).fetchone()
    assert kinds == {**{k: spec[1] for k, spec in FAILURES.items()}, DONE: None}
    assert stacks == STACKS


def test_status_breaks_the_failures_down_by_kind(store: Path) -> None:
    result = invoke("status", str(store))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # In FAILURE_KINDS order; the old WorkerDied row counts as a crash.
    assert "failed: 4 (2 error, 1 timeout, 1 crash)" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("experiment"))
    assert lines[header + 2].split() == ["tests_kinds:train", "1", "0", "4", "0", "5"]
    listing = lines[lines.index("Failed (4)") + 1 :]
    assert listing[0].split() == ["key", "config", "kind", "error"]
    by_key = {line.split()[0]: line.split() for line in listing[2:6]}
    assert by_key["a" * 12][2] == "error"
    assert by_key["c" * 12][2] == "timeout"
    assert by_key["d" * 12][2] == "crash"


def test_status_without_failures_has_no_kinds_line(store: Path) -> None:
    assert invoke("forget", str(store), "--failed", "--yes").exit_code == 0
    out = invoke("status", str(store)).output
    assert "failed:" not in out and "Failed (" not in out


def test_show_a_timeout_prints_its_kind_and_its_stacks_whole(store: Path) -> None:
    out = invoke("show", str(store), "c" * 8).output
    lines = out.splitlines()
    assert lines[2] == "Status      failed"
    assert lines[3] == "Kind        timeout"
    title = "Stacks when it timed out (each thread of the experiment's process)"
    assert title in lines
    shown = "\n".join(lines[lines.index(title) + 1 :])
    assert shown.startswith(STACKS.rstrip())  # every line, in order, nothing cut
    assert out.index("Traceback (from the worker)") < out.index(title)


def test_show_an_error_has_its_kind_and_no_stacks(store: Path) -> None:
    out = invoke("show", str(store), "a" * 8).output
    assert "Kind        error" in out.splitlines()
    assert "Stacks when it timed out" not in out


def test_show_an_old_row_derives_its_kind_from_its_error_type(store: Path) -> None:
    out = invoke("show", str(store), "d" * 8).output
    assert "Kind        crash" in out.splitlines()


def test_show_a_success_has_no_kind_line(store: Path) -> None:
    out = invoke("show", str(store), DONE[:8]).output
    assert "Status      done" in out and "Kind" not in out


def test_results_have_a_kind_column_in_every_format(store: Path, tmp_path: Path) -> None:
    expected: dict[str, str | None] = {"a" * 32: "error", "b" * 32: "error"}
    expected.update({"c" * 32: "timeout", "d" * 32: "crash"})
    expected[DONE] = None

    rows = list(
        csv.DictReader(io.StringIO(invoke("results", str(store), "--format", "csv").output))
    )
    header = list(rows[0])
    assert header.index("kind") == header.index("error") + 1  # next to the error columns
    assert {r["key"]: r["kind"] or None for r in rows} == expected

    records = json.loads(invoke("results", str(store), "--format", "json").output)
    assert {r["key"]: r["kind"] for r in records} == expected
    assert list(records[0]).index("kind") == list(records[0]).index("error") + 1

    table = invoke("results", str(store)).output.splitlines()
    columns = table[0].split()
    assert columns[columns.index("error") + 1] == "kind"
    cells = {line.split()[0]: line for line in table[2:-1]}
    assert cells["c" * 12].rstrip().endswith("timeout")

    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "out.parquet"
    assert invoke("results", str(store), "--format", "parquet", "-o", str(target)).exit_code == 0
    frame = pq.read_table(target).to_pydict()
    assert dict(zip(frame["key"], frame["kind"], strict=True)) == expected


def test_results_filtered_to_failures_keep_their_kinds(store: Path) -> None:
    out = invoke("results", str(store), "--format", "json", "--status", "failed").output
    assert sorted(r["kind"] for r in json.loads(out)) == ["crash", "error", "error", "timeout"]


def test_the_report_shows_each_failures_kind_and_a_summary_of_kinds(
    store: Path, tmp_path: Path
) -> None:
    page_path = tmp_path / "report.html"
    write_report(store, page_path)
    page = page_path.read_text(encoding="utf-8")
    assert "4 failed: 2 error, 1 timeout, 1 crash" in page
    failures = page[page.index('<section id="failures">') :]
    for key, kind in (("a", "error"), ("c", "timeout"), ("d", "crash")):
        item = failures[failures.index(f"<code>{key * 10}</code>") :]
        item = item[: item.index("</details>")]
        assert f'<span class="kind">{kind}</span>' in item
        assert ("Stacks when it timed out" in item) == (kind == "timeout")
    # The stacks whole, escaped like everything else from the store.
    assert f'<pre class="stacks">{html.escape(STACKS)}</pre>' in failures
    assert XSS not in page
    # The results table has the kind column too.
    head = page[page.index('<table id="results-table"') :]
    head = head[: head.index("</thead>")]
    assert ">kind</th>" in head


def test_the_report_of_successes_only_has_no_kinds(store: Path, tmp_path: Path) -> None:
    assert invoke("forget", str(store), "--failed", "--yes").exit_code == 0
    page_path = tmp_path / "report.html"
    write_report(store, page_path)
    page = page_path.read_text(encoding="utf-8")
    assert 'class="sub kinds"' not in page and 'id="failures"' not in page


def test_a_postgres_store_shows_the_same_kinds(postgres_database: str) -> None:
    # The second backend: kinds read through the same BaseStore calls (a real server).
    with open_store(postgres_database) as opened:
        opened.write_outcomes(outcomes())
    status = invoke("status", postgres_database).output
    assert "failed: 4 (2 error, 1 timeout, 1 crash)" in status.splitlines()
    shown = invoke("show", postgres_database, "c" * 8).output
    assert "Kind        timeout" in shown and STACKS.rstrip() in shown
    assert "Kind        crash" in invoke("show", postgres_database, "d" * 8).output
    records = json.loads(invoke("results", postgres_database, "--format", "json").output)
    kinds = {r["key"][0]: r["kind"] for r in records}
    assert kinds == {"a": "error", "b": "error", "c": "timeout", "d": "crash", "e": None}


def hang(context: object, config: object) -> None:
    """An experiment that never ends: a timeout, whatever the machine's load."""
    while True:
        time.sleep(0.05)


HANG_LINE = hang.__code__.co_firstlineno + 3  # the ``time.sleep`` line


def test_a_real_timeout_is_shown_with_the_stacks_of_where_it_hung(tmp_path: Path) -> None:
    # End to end: a worker process stopped by the timeout, its stacks taken by faulthandler,
    # stored by the driver, printed by memento show.
    path = tmp_path / "timeout.sqlite"
    memento = Memento(hang, progress=False, executor="process", num_workers=1, timeout=2)
    results = memento.run({"parameters": {"a": [1]}}, cache_path=path, raise_on_failure=False)
    assert results is not None
    assert results[0].kind == "timeout"
    key = results[0].key
    out = invoke("show", str(path), key).output
    assert "Kind        timeout" in out.splitlines()
    stacks = out[out.index("Stacks when it timed out") :]
    assert f'test_failure_kinds_view.py", line {HANG_LINE} in hang' in stacks
    assert "failed: 1 (1 timeout)" in invoke("status", str(path)).output.splitlines()
