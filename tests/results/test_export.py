"""Parquet export: ``write_parquet``, ``ResultList.to_parquet``, ``StoredResults.to_parquet`` and
``memento results --format parquet``, read back with pyarrow; and the error without pyarrow."""

from __future__ import annotations

import datetime
import json
import math
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stores import make_store

from memento import Memento, open_results
from memento.matrix.configs import Config
from memento.results import MemoryUsage, Result, ResultList, StoredResults
from memento.results.export import PROVENANCE_COLUMNS, write_parquet

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

PROVENANCE = {
    "git_commit": "0123abcd",
    "dirty": True,
    "python": "3.12.1",
    "platform": "Linux-6.1-x86_64",
    "command": "python grid.py --fast",
}


def read(path: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The file's column types (as text) and rows."""
    table = pq.read_table(path)
    return {f.name: str(f.type) for f in table.schema}, table.to_pylist()


def split_provenance(rows: list[dict[str, Any]], provenances: list[Any]) -> list[dict[str, Any]]:
    """``rows`` without their provenance columns, once those are checked against the
    results' provenance (a list, the command line, as its JSON text); absent when none has one.
    """
    if all(p is None for p in provenances):
        assert not any(c in row for row in rows for c in PROVENANCE_COLUMNS)
        return rows
    for row, provenance in zip(rows, provenances):
        wanted = {c: (provenance or {}).get(c) for c in PROVENANCE_COLUMNS}
        wanted = {c: json.dumps(v) if isinstance(v, list) else v for c, v in wanted.items()}
        assert {c: row[c] for c in PROVENANCE_COLUMNS} == wanted
    return [{c: v for c, v in row.items() if c not in PROVENANCE_COLUMNS} for row in rows]


def strip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` without the provenance columns ``to_records`` gives (checked above)."""
    return [{c: v for c, v in r.items() if c not in PROVENANCE_COLUMNS} for r in records]


# -- write_parquet: one type per column -----------------------------------------------------------
def test_scalar_columns_keep_their_type(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [
        {"n": 1, "x": 0.5, "mix": 1, "s": "a", "b": True, "raw": b"\x00", "none": None},
        {"n": None, "x": math.nan, "mix": 2.5, "s": None, "b": False, "raw": None, "none": None},
        {"n": np.int64(3), "x": np.float32(1.5), "mix": None, "s": "c", "b": np.bool_(True)},
    ]
    path = tmp_path / "t.parquet"
    assert write_parquet(records, path) == 3
    types, rows = read(path)
    assert types == {
        "n": "int64",
        "x": "double",
        "mix": "double",
        "s": "string",
        "b": "bool",
        "raw": "binary",
        "none": "null",
    }
    assert [r["n"] for r in rows] == [1, None, 3]
    assert rows[0]["x"] == 0.5 and math.isnan(rows[1]["x"]) and rows[2]["x"] == 1.5
    assert [r["mix"] for r in rows] == [1.0, 2.5, None]
    assert [r["s"] for r in rows] == ["a", None, "c"]
    assert [r["b"] for r in rows] == [True, False, True]
    assert [r["raw"] for r in rows] == [b"\x00", None, None]
    assert [r["none"] for r in rows] == [None, None, None]  # the third record lacks it: null


def test_other_values_become_json_text(tmp_path: Path) -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    records: list[dict[str, Any]] = [
        {"list": [1, 2], "mixed": 1, "boolint": True, "huge": 2**70, "odd": {(1, 2): "x"}},
        {"list": {"a": (1, None)}, "mixed": "one", "boolint": 2, "huge": 1, "odd": cyclic},
        {"list": None, "mixed": [object], "boolint": None, "huge": None, "odd": Path("/p")},
    ]
    path = tmp_path / "t.parquet"
    write_parquet(records, path)
    types, rows = read(path)
    assert set(types.values()) == {"string"}
    assert [r["list"] for r in rows] == ["[1, 2]", '{"a": [1, null]}', None]
    assert [r["mixed"] for r in rows][:2] == ["1", '"one"']
    assert rows[2]["mixed"].startswith('["<class ')  # default=str for what JSON cannot hold
    assert [r["boolint"] for r in rows] == ["true", "2", None]  # bool and int: not one type
    assert [r["huge"] for r in rows] == [str(2**70), "1", None]  # beyond int64
    assert rows[0]["odd"] == "{(1, 2): 'x'}" and rows[1]["odd"] == "[1, [...]]"
    assert rows[2]["odd"] == '"/p"'


def test_datetimes_and_timedeltas(tmp_path: Path) -> None:
    naive = datetime.datetime(2024, 5, 1, 12, 30, 15, 250)
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    aware = datetime.datetime(2024, 5, 1, 14, 0, tzinfo=plus2)
    records: list[dict[str, Any]] = [
        {"naive": naive, "aware": aware, "both": naive, "span": datetime.timedelta(minutes=2)},
        {"naive": None, "aware": None, "both": aware, "span": datetime.timedelta(microseconds=5)},
    ]
    path = tmp_path / "t.parquet"
    write_parquet(records, path)
    types, rows = read(path)
    assert types == {
        "naive": "timestamp[us]",
        "aware": "timestamp[us, tz=UTC]",
        "both": "string",
        "span": "double",
    }
    assert rows[0]["naive"] == naive and rows[1]["naive"] is None
    assert rows[0]["aware"] == aware and rows[0]["aware"].utcoffset() == datetime.timedelta(0)
    assert rows[0]["both"] == f'"{naive}"'
    assert [r["span"] for r in rows] == [120.0, 5e-06]


def test_no_records_give_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    assert write_parquet([], path) == 0
    assert pq.read_table(path).num_rows == 0


def test_the_write_replaces_the_file_whole_and_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "out" / "t.parquet"
    write_parquet([{"a": 1}], path)  # makes the directory
    os.chmod(path, 0o640)
    assert write_parquet([{"a": 2}, {"a": 3}], path) == 2
    assert read(path)[1] == [{"a": 2}, {"a": 3}]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in path.parent.iterdir()] == ["t.parquet"]  # no temp file left
    fresh = tmp_path / "fresh.parquet"
    write_parquet([{"a": 1}], fresh)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out"
    (target / "t.parquet").mkdir(parents=True)  # a directory where the file should go
    with pytest.raises(IsADirectoryError):
        write_parquet([{"a": 1}], target / "t.parquet")
    assert [p.name for p in target.iterdir()] == ["t.parquet"]
    assert (target / "t.parquet").is_dir() and not any((target / "t.parquet").iterdir())


def test_invalid_unicode_is_escaped_not_fatal(tmp_path: Path) -> None:
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")  # a Latin-1 file name
    write_parquet([{"file": name}, {"file": "ok"}], tmp_path / "t.parquet")
    types, rows = read(tmp_path / "t.parquet")
    assert types == {"file": "string"}
    assert rows == [{"file": "caf\\udce9.txt"}, {"file": "ok"}]


# -- ResultList.to_parquet ------------------------------------------------------------------------
def made_result(config: Config, inner: Any, error: BaseException | None = None) -> Result:
    return Result(
        config,
        inner,
        metrics={"loss": [(0, 0.9), (1, 0.4)]},
        runtime=datetime.timedelta(seconds=1.5),
        cpu_time=datetime.timedelta(seconds=1.25),
        memory=MemoryUsage(virtual_peak=2000, hardware_peak=1000),
        key=f"key-{config.asdict()['lr']}",
        error=error,
    )


def test_a_dict_of_scalars_becomes_columns_and_failures_keep_their_error(tmp_path: Path) -> None:
    results = ResultList(
        [
            made_result(Config(model=Path, lr=0.1), {"accuracy": 0.9, "n": 3}),
            made_result(Config(model=Path, lr=0.2), None, error=ValueError("diverged")),
        ]
    )
    path = results.to_parquet(tmp_path / "r.parquet")
    assert path == tmp_path / "r.parquet"
    types, rows = read(path)
    assert list(types) == list(results.to_records()[0])
    assert types["accuracy"] == "double" and types["n"] == "int64"
    assert types["model"] == "string" and types["lr"] == "double"
    assert types["runtime"] == types["cpu_time"] == types["metric.loss"] == "double"
    assert types["peak_memory"] == "int64" and types["was_cached"] == "bool"
    assert not set(PROVENANCE_COLUMNS) & set(types)  # no result carries provenance
    assert rows[0] == {
        "model": "Path",
        "lr": 0.1,
        "accuracy": 0.9,
        "n": 3,
        "status": "done",
        "was_cached": False,
        "runtime": 1.5,
        "cpu_time": 1.25,
        "peak_memory": 1000,
        "error": None,
        "kind": None,  # a failure's kind (issue: failure kinds); None for a success
        "metric.loss": 0.4,
        "key": "key-0.1",
    }
    assert rows[1]["status"] == "failed" and rows[1]["error"] == "ValueError: diverged"
    assert types["kind"] == "string" and rows[1]["kind"] == "error"
    assert rows[1]["accuracy"] is None and rows[1]["n"] is None


def test_provenance_becomes_columns(tmp_path: Path) -> None:
    first = made_result(Config(python="pypy", lr=0.1), [1, 2])
    second = made_result(Config(python="cpython", lr=0.2), [3])
    first.provenance = PROVENANCE  # type: ignore[attr-defined]
    second.provenance = None  # type: ignore[attr-defined]
    types, rows = read(ResultList([first, second]).to_parquet(tmp_path / "r.parquet"))
    assert list(types)[-5:] == [
        "git_commit",
        "dirty",
        "provenance.python",  # the parameter "python" keeps its name
        "platform",
        "command",
    ]
    assert types["dirty"] == "bool" and types["inner"] == "string"
    assert rows[0]["python"] == "pypy" and rows[0]["provenance.python"] == "3.12.1"
    assert rows[0]["git_commit"] == "0123abcd" and rows[0]["command"] == PROVENANCE["command"]
    assert rows[0]["inner"] == "[1, 2]"
    assert all(rows[1][c] is None for c in ("git_commit", "dirty", "provenance.python"))


def accuracy(context: Any, config: Any) -> dict[str, Any]:
    """Records a loss curve; fails for lr=0.3."""
    for step in range(3):
        context.record({"loss": (step, config.lr / (step + 1))})
    if config.lr == 0.3:
        raise RuntimeError("lr too high")
    return {"accuracy": 1 - config.lr, "steps": 3, "note": f"lr={config.lr}"}


def test_a_real_run_to_parquet(tmp_path: Path) -> None:
    memento = Memento(accuracy, progress=False, executor="inline")
    grid = {"parameters": {"lr": [0.1, 0.2, 0.3], "seed": [0, 1]}}
    results = memento.run(grid, cache_path=tmp_path / "s.sqlite", raise_on_failure=False)
    assert results is not None
    types, rows = read(results.to_parquet(tmp_path / "r.parquet"))
    assert len(rows) == 6
    assert types["accuracy"] == "double" and types["steps"] == "int64"
    assert types["note"] == types["status"] == types["key"] == "string"
    assert types["peak_memory"] == "int64" and types["runtime"] == "double"
    assert [(r["lr"], r["seed"], r["status"]) for r in rows] == [
        (lr, seed, "failed" if lr == 0.3 else "done") for lr in (0.1, 0.2, 0.3) for seed in (0, 1)
    ]
    done = [r for r in rows if r["status"] == "done"]
    assert [r["accuracy"] for r in done] == pytest.approx([0.9, 0.9, 0.8, 0.8])
    assert all(r["metric.loss"] == pytest.approx(r["lr"] / 3) for r in rows)
    failed = [r for r in rows if r["status"] == "failed"]
    assert all(r["error"] == "RuntimeError: lr too high" and r["steps"] is None for r in failed)
    provenances = [getattr(r, "provenance", None) for r in results]
    assert split_provenance(rows, provenances) == strip(results.to_records())  # typed


# -- StoredResults.to_parquet ---------------------------------------------------------------------
def test_open_results_to_parquet(tmp_path: Path) -> None:
    store = make_store(tmp_path / "grid.sqlite", executor="inline")
    stored = open_results(store)
    types, rows = read(stored.to_parquet(tmp_path / "r.parquet"))
    flat = stored.to_records()
    assert list(types)[: len(flat[0])] == list(flat[0]) and len(rows) == 12
    assert types["score"] == "double" and types["model_name"] == "string"
    assert types["stale"] == "bool" and types["attempts"] == "int64"
    assert sorted(r["status"] for r in rows) == ["done"] * 8 + ["failed"] * 4
    assert split_provenance(rows, [r.get("provenance") for r in stored]) == strip(flat)
    with_provenance = StoredResults(
        [{**r, "provenance": PROVENANCE if i == 0 else None} for i, r in enumerate(stored)]
    )
    types, rows = read(with_provenance.to_parquet(tmp_path / "p.parquet"))
    assert list(types)[-5:] == list(PROVENANCE_COLUMNS)
    assert {c: rows[0][c] for c in PROVENANCE_COLUMNS} == PROVENANCE
    assert all(r[c] is None for r in rows[1:] for c in PROVENANCE_COLUMNS)


# -- the command ----------------------------------------------------------------------------------
def memento_command(
    env: dict[str, str], cwd: Path, *args: str, block_pyarrow: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python -m memento ARGS`` in a real process; ``block_pyarrow``: as if not installed."""
    prefix = ["-m", "memento"]
    if block_pyarrow:
        code = "import sys; sys.modules['pyarrow'] = None; import memento.view.cli as c; c.main()"
        prefix = ["-c", code]
    return subprocess.run(
        [sys.executable, *prefix, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


@pytest.mark.timeout(180)
def test_memento_results_format_parquet(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    store = make_store(tmp_path / "grid.sqlite", executor="inline")
    out = tmp_path / "failed.parquet"
    done = memento_command(
        subprocess_env, tmp_path, "results", str(store), "--format", "parquet", "-o", str(out),
        "--status", "failed",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Wrote {out} (4 results)\n"
    types, rows = read(out)
    failed = open_results(store, status="failed")
    assert split_provenance(rows, [r.get("provenance") for r in failed]) == strip(
        failed.to_records()
    )
    assert types["error"] == "string" and {r["status"] for r in rows} == {"failed"}
    default = memento_command(
        subprocess_env, tmp_path, "results", str(store), "--format", "parquet"
    )
    assert default.returncode == 0 and default.stdout == "Wrote results.parquet (12 results)\n"
    assert pq.read_table(tmp_path / "results.parquet").num_rows == 12
    misuse = memento_command(subprocess_env, tmp_path, "results", str(store), "-o", "x.csv")
    assert misuse.returncode == 2 and "--output is for --format parquet" in misuse.stderr
    assert not (tmp_path / "x.csv").exists()


# -- without pyarrow ------------------------------------------------------------------------------
MISSING = "needs the 'pyarrow' package, which is not installed. Install it with: pip install "


@pytest.mark.timeout(180)
def test_without_pyarrow_a_clear_error(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    store = make_store(tmp_path / "grid.sqlite", executor="inline")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["pyarrow"] = None
        from memento import open_results
        from memento.exceptions import MissingExtra
        from memento.results import ResultList
        for what in (ResultList(), open_results({str(store)!r})):
            try:
                what.to_parquet("never.parquet")
            except MissingExtra as exc:
                print(exc)
        """
    )
    api = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env,
        cwd=tmp_path,
    )
    assert api.returncode == 0, api.stderr
    assert api.stdout.splitlines() == [
        f"ResultList.to_parquet() {MISSING}'memento-grid[parquet]'",
        f"StoredResults.to_parquet() {MISSING}'memento-grid[parquet]'",
    ]
    cli = memento_command(
        subprocess_env, tmp_path, "results", str(store), "--format", "parquet", block_pyarrow=True
    )
    assert cli.returncode == 1 and cli.stdout == ""
    assert cli.stderr == (
        f"Error: memento results --format parquet {MISSING}'memento-grid[parquet]'\n"
    )
    assert not (tmp_path / "never.parquet").exists() and not (tmp_path / "results.parquet").exists()
