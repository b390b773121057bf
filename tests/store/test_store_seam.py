"""The store seam: one interface (``memento.store.base.BaseStore``), SQLite its first backend,
and no SQL anywhere but ``src/memento/store/``.

The driver, the plan, ``open_results`` and the ``memento`` command are run here on a store
that is a :class:`BaseStore` and nothing more (it forwards to an SQLite store but has no
``conn``), so anything that reached past the interface would fail.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import memento.store
import memento.store.backends
from memento import Memento, open_results
from memento.store.base import BaseStore
from memento.store.sqlite import SQLiteStore
from memento.view.cli import cli

SRC = Path(__file__).resolve().parents[2] / "src" / "memento"

#: What the interface asks of every backend.
INTERFACE = {
    "open",
    "close",
    "directory",
    "lookup",
    "write_outcomes",
    "mark_running",
    "start_run",
    "finish_run",
    "record_jobs",
    "find_jobs",
    "forget_jobs",
    "delete",
    "rows",
    "result_states",
    "latest_fingerprints",
    "experiment_names",
    "in_flight",
    "runs",
    "run_count",
    "last_activity",
    # leases, and checkpoints kept by the store (issue 11)
    "delete_checkpoints",
    "claim",
    "heartbeat",
    "release",
    "leases",
    # provenance of each run (issue 13); values are decoded by BaseStore.load_value itself
    "record_provenance",
    "provenance",
}
#: What a file store gives beyond the interface, forwarded too: where its side files are.
FILE_STORE = {"value_path"}


def test_the_interface_lists_every_method_a_backend_must_give() -> None:
    assert set(BaseStore.__abstractmethods__) == INTERFACE


def test_sqlite_implements_the_whole_interface() -> None:
    assert issubclass(SQLiteStore, BaseStore)
    assert not inspect.isabstract(SQLiteStore)
    missing = [name for name in INTERFACE if name not in SQLiteStore.__dict__]
    assert missing == []


def test_store_still_opens_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    assert memento.store.Store is SQLiteStore
    with memento.store.Store(path) as store:
        assert isinstance(store, BaseStore)
        assert store.open() is store and path.is_file()
    opened = memento.store.open_store(path, readonly=True)
    assert type(opened) is SQLiteStore and opened.readonly
    opened.close()


# -- the callers use nothing but the interface -----------------------------------------------
def _forward(name: str) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(name)
        result = getattr(self.inner, name)(*args, **kwargs)
        return self if result is self.inner else result

    method.__name__ = name
    return method


def _interface_only_class() -> type[BaseStore]:
    """A backend that is a :class:`BaseStore` and nothing else: each method of the interface
    forwards to an SQLite store; everything else (``conn``, ``side_file``) is missing."""

    def __init__(self: Any, location: Any, *, readonly: bool = False) -> None:
        self.inner = SQLiteStore(location, readonly=readonly)
        self.location = self.inner.location
        self.readonly = readonly
        self.calls = []
        opened.append(self)

    namespace: dict[str, Any] = {"__init__": __init__}
    for name in (INTERFACE | FILE_STORE) - {"directory"}:
        namespace[name] = _forward(name)
    namespace["directory"] = property(lambda self: self.inner.directory)
    return type("InterfaceOnlyStore", (BaseStore,), namespace)


opened: list[Any] = []
#: The modules that open stores.
CALLERS = (
    "memento.plan.planning",
    "memento.results.reading",
    "memento.run.driver",
    "memento.run.memento",
    "memento.run.run_all",
    "memento.view.cli",
    "memento.view.import_legacy",
    "memento.view.report",
)


@pytest.fixture
def interface_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every ``open_store`` of memento's modules gives an interface-only store."""
    for name in CALLERS:
        importlib.import_module(name)  # some are imported lazily: patch them all now
    backend = _interface_only_class()
    assert not inspect.isabstract(backend)
    real = memento.store.backends.open_store

    def open_store(location: Any, *, readonly: bool = False) -> BaseStore:
        return backend(location, readonly=readonly)

    patched = []
    for name, module in list(sys.modules.items()):
        if name.startswith("memento") and getattr(module, "open_store", None) is real:
            monkeypatch.setattr(module, "open_store", open_store)
            patched.append(name)
    assert set(CALLERS) <= set(patched)
    opened.clear()
    yield opened
    opened.clear()


def square(context: Any, config: Any) -> int:
    if config.x == 3:
        raise ValueError("three")
    return int(config.x) ** 2


def test_the_driver_runs_through_the_interface(tmp_path: Path, interface_only: list[Any]) -> None:
    path = tmp_path / "grid.sqlite"
    memento_ = Memento(square, progress=False, executor="thread", num_workers=2)
    results = memento_.run(
        {"parameters": {"x": [1, 2, 3]}}, cache_path=path, raise_on_failure=False
    )
    assert sorted(r.inner for r in results.successes) == [1, 4]
    calls = {c for store in interface_only for c in store.calls}
    # (mark_running too, for experiments still running when the driver looks: timing.)
    assert {"start_run", "write_outcomes", "finish_run"} <= calls
    interface_only.clear()
    again = memento_.run({"parameters": {"x": [1, 2]}}, cache_path=path)
    assert all(r.was_cached for r in again)
    assert "lookup" in {c for store in interface_only for c in store.calls}
    with SQLiteStore(path, readonly=True) as store:
        assert store.run_count() == 2


def test_the_cli_and_open_results_read_through_the_interface(
    tmp_path: Path, interface_only: list[Any]
) -> None:
    path = tmp_path / "grid.sqlite"
    Memento(square, progress=False, executor="thread").run(
        {"parameters": {"x": [1, 2, 3]}}, cache_path=path, raise_on_failure=False
    )
    runner = CliRunner()
    status = runner.invoke(cli, ["status", str(path)], catch_exceptions=False)
    assert status.exit_code == 0, status.output
    assert "Failed (1)" in status.output and "ValueError: three" in status.output
    records = open_results(path)
    key = next(r["key"] for r in records if r["params"] == {"x": 2})
    shown = runner.invoke(cli, ["show", str(path), key[:10]], catch_exceptions=False)
    assert shown.exit_code == 0 and "Result      4" in shown.output, shown.output
    forgot = runner.invoke(cli, ["forget", str(path), "--failed", "--yes"], catch_exceptions=False)
    assert forgot.exit_code == 0 and "Forgot 1 result(s)" in forgot.output, forgot.output
    calls = {c for store in interface_only for c in store.calls}
    assert {"result_states", "in_flight", "runs", "rows", "delete"} <= calls
    assert len(open_results(path)) == 2


# -- no SQL outside store/ -------------------------------------------------------------------
SQL = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|VIEW|TEMP)|DROP|ALTER|"
    r"PRAGMA|BEGIN|COMMIT|ROLLBACK|REPLACE\s+INTO|WITH\s+\w+\s+AS)\b"
)
DB_CALLS = {"execute", "executemany", "executescript", "cursor"}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def sql_outside_the_store(root: Path) -> list[str]:
    """Where code under ``root`` (outside ``store/``) speaks SQL or touches ``sqlite3``."""
    found = []
    for file in sorted(root.rglob("*.py")):
        if (root / "store") in file.parents:
            continue
        where = file.relative_to(root.parent)
        tree = ast.parse(file.read_text(), str(file))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            line = getattr(node, "lineno", 0)
            if isinstance(node, ast.Import) and any(
                a.name.split(".")[0] == "sqlite3" for a in node.names
            ):
                found.append(f"{where}:{line} imports sqlite3")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlite3"):
                found.append(f"{where}:{line} imports from sqlite3")
            elif isinstance(node, ast.Name) and node.id == "sqlite3":
                found.append(f"{where}:{line} uses sqlite3")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and SQL.match(node.value)
            ):
                found.append(f"{where}:{line} has SQL: {node.value[:40]!r}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in DB_CALLS
                and node.args
                and isinstance(node.args[0], (ast.Constant, ast.JoinedStr))
            ):
                found.append(f"{where}:{line} runs SQL with .{node.func.attr}()")
    return found


def test_only_the_store_speaks_sql() -> None:
    assert sql_outside_the_store(SRC) == []


def test_the_sql_check_would_catch_sql(tmp_path: Path) -> None:
    package = tmp_path / "memento"
    (package / "store").mkdir(parents=True)
    (package / "store" / "ok.py").write_text('import sqlite3\nQ = "SELECT 1"\n')
    (package / "bad.py").write_text(
        '"""SELECT in a docstring is prose."""\n'
        "import sqlite3\n"
        "def f(conn, t):\n"
        '    conn.execute(f"DELETE FROM {t}")\n'
        '    return "SELECT key FROM results"\n'
    )
    found = sql_outside_the_store(package)
    assert all(f.startswith("memento/bad.py:") for f in found)
    kinds = {f.split(" ", 1)[1] for f in found}
    assert kinds == {
        "imports sqlite3",
        "runs SQL with .execute()",
        "has SQL: 'DELETE FROM '",
        "has SQL: 'SELECT key FROM results'",
    }


# -- the one retry: by SQLite's result code ----------------------------------------------------
def test_a_lock_is_told_by_its_result_code(tmp_path: Path) -> None:
    import sqlite3

    from memento.store.connection import is_busy, retry_when_busy

    path = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("SELECT * FROM t")
    assert is_busy(locked.value)
    with pytest.raises(sqlite3.OperationalError) as missing:
        sqlite3.connect(":memory:").execute("SELECT * FROM nowhere")
    assert not is_busy(missing.value)
    assert not is_busy(ValueError("database is locked"))
    # Python 3.10's exceptions carry no code: the text SQLite gives the code is used.
    assert is_busy(sqlite3.OperationalError("database is locked"))
    assert not is_busy(sqlite3.OperationalError("no such table: locked"))

    attempts = []

    def read() -> list[Any]:
        attempts.append(1)
        try:
            return other.execute("SELECT * FROM t").fetchall()
        except sqlite3.OperationalError:
            holder.execute("ROLLBACK")  # the lock goes away after the first try
            raise

    assert retry_when_busy(read) == [] and len(attempts) == 2
    with pytest.raises(sqlite3.OperationalError):
        retry_when_busy(lambda: other.execute("SELECT * FROM nowhere"))
    holder.close()
    other.close()
