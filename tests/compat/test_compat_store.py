"""Stores and files as memento-ml 1.2 left them: empty files, ``cache_path=""``, 1.2 stores
(recognised, never modified) and ``memento import-1.2``, end to end with real processes.

memento-ml 1.2 is not installed here, so a 1.2 store is written the way 1.2 writes it: its
SQLite tables, and one cloudpickle file per result under ``memento_cache/``, pickled from
stand-in classes that carry 1.2's module and class names (``memento.task_interface.Result``,
``memento.configurations.Config``) and attributes. This layout was checked by hand against
the files memento-ml 1.2.0 itself writes.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from processes import PYTHON

from memento import FileSystemCacheProvider, FileSystemCheckpointing, Memento, open_results
from memento.exceptions import LegacyStoreError, StoreError
from memento.store.sqlite import Store, default_store_path
from memento.view.cli import cli
from memento.view.import_legacy import function_name, import_legacy_store

# -- a memento-ml 1.2 store, written as 1.2 writes it -------------------------------------------
STUB_12 = {
    "memento/__init__.py": "",
    "memento/configurations.py": """
        class Config:
            # 1.2's Config keeps the parameters in _dict; Configurations sets .settings.
            def __init__(self, **kwargs):
                self._dict = kwargs
        """,
    "memento/task_interface.py": """
        from collections import namedtuple

        Metric = namedtuple("Metric", "x y")

        class Result:
            def __init__(self, config, inner, metrics, start_time, runtime, cpu_time, memory,
                         was_cached):
                self.config = config
                self.inner = inner
                self.metrics = metrics
                self.start_time = start_time
                self.runtime = runtime
                self.cpu_time = cpu_time
                self.memory = memory
                self.was_cached = was_cached
        """,
    "writer12.py": """
        # What memento-ml 1.2's Memento.run leaves, run in the working directory.
        import datetime, hashlib, os, sqlite3
        import cloudpickle
        import pandas as pd
        from memento.configurations import Config
        from memento.task_interface import Metric, Result

        TABLE = (
            "CREATE TABLE IF NOT EXISTS {} (key BINARY PRIMARY KEY, ts REAL NOT NULL DEFAULT "
            "((julianday('now') - 2440587.5)*86400.0), value BLOB NOT NULL) WITHOUT ROWID"
        )

        def open_store(path="memento.sqlite"):
            db = sqlite3.connect(path, isolation_level="DEFERRED", timeout=10)
            db.execute(TABLE.format("cache"))
            db.execute(TABLE.format("checkpoint_table"))
            db.commit()
            return db

        def config(settings, **params):
            c = Config(**params)
            c.settings = settings
            return c

        def result(cfg, inner, points):
            frames = {n: pd.DataFrame([Metric(x, y) for x, y in p]) for n, p in points.items()}
            return Result(cfg, inner, frames, datetime.datetime(2024, 5, 1, 12, 0, 0),
                          datetime.timedelta(seconds=2.5), None, None, True)

        def put(db, key, item):
            os.makedirs("memento_cache", exist_ok=True)
            name = hashlib.sha256(bytes(str(key), "utf-8")).hexdigest()
            path = f"memento_cache/{name}.pkl"
            with open(path, "wb") as file:
                cloudpickle.dump(item, file)
            db.execute("INSERT OR REPLACE INTO cache(key,value) VALUES(?,?)", (key, path))
            db.commit()
            return path

        def run_key(name, cfg):
            return cloudpickle.dumps({"function": name, "args": [cfg]})
        """,
}

EXPERIMENT = """
    import json, sys
    from pathlib import Path

    from memento import Memento


    def square(x):
        return x * x


    def exp(context, config):
        with open(Path(__file__).with_name("ran.txt"), "a") as ran:
            ran.write(f"{config}\\n")
        context.record({"loss": 1.0 / (config.a + 1)})
        return {"a": config.a, "b": config.b, "s": config.settings["scale"] * config.a}


    matrix = {
        "parameters": {"a": [1, 2, 3], "b": ["x", square]},
        "settings": {"scale": 10, "f": square},
        "exclude": [{"a": 3, "b": "x"}],
    }

    if __name__ == "__main__":
        memento = Memento(exp, progress=False)
        states = memento.plan(matrix, cache_path=sys.argv[1]).states  # "stale": other code
        results = memento.run(matrix, cache_path=sys.argv[1])
        print(json.dumps([
            [str(r.config), r.was_cached, r.inner["s"], getattr(r.inner["b"], "__name__", "-"),
             r.runtime.total_seconds(), r.metrics["loss"]["y"].tolist(), state]
            for r, state in zip(results, states)
        ]))
"""

# The 1.2 program above, as 1.2 ran it (five results), plus what else a 1.2 store can hold.
MAKE_12 = """
    import cloudpickle, os, sys
    from writer12 import config, open_store, put, result, run_key

    def square(x):
        return x * x

    settings = {"scale": 10, "f": square}
    db = open_store()
    for a, b in [(1, "x"), (1, square), (2, "x"), (2, square), (3, square)]:
        cfg = config(settings, a=a, b=b)
        put(db, run_key("exp", cfg), result(cfg, {"a": a, "b": b, "s": 10 * a},
                                            {"loss": [(1.0, 1.0 / (a + 1))]}))
    cfg = config(settings, a=1, b="x")
    put(db, run_key("other", cfg), result(cfg, "other", {}))       # another experiment
    put(db, cloudpickle.dumps({"function": square, "args": (3,), "kwargs": {}}), 9)  # a Cache
    gone = put(db, run_key("exp", config(settings, a=9, b="x")), result(None, 0, {}))
    os.remove(gone)                                                  # a result file lost
    sys.path.insert(0, "lib")
    import vanishing
    cfg = config(settings, a=8, b="x")
    put(db, run_key("exp", cfg), result(cfg, vanishing.Thing(), {}))  # a class now gone
    db.execute("INSERT INTO checkpoint_table(key, value) VALUES(?, ?)",
               (run_key("exp", config(settings, a=7, b="x")), cloudpickle.dumps(({"epoch": 3},))))
    db.commit()
"""


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def make_12_store(directory: Path, script: str) -> Path:
    """Run ``script`` (with 1.2's class names importable) in ``directory``; the 1.2 store."""
    stub = directory.parent / f"{directory.name}-stub12"
    write(stub, STUB_12)
    write(directory / "lib", {"vanishing.py": "class Thing:\n    pass\n"})
    write(directory, {"make12.py": script})
    env = {**os.environ, "PYTHONPATH": str(stub)}
    proc = subprocess.run(
        [PYTHON, "make12.py"], cwd=directory, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    shutil.rmtree(directory / "lib")
    (directory / "make12.py").unlink()
    return directory / "memento.sqlite"


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: content and modification time."""
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def old12(tmp_path: Path) -> Path:
    """A 1.2 project directory: exp.py, memento.sqlite and memento_cache/ as 1.2 left them."""
    project = tmp_path / "project"
    project.mkdir()
    store = make_12_store(project, MAKE_12)
    write(project, {"exp.py": EXPERIMENT})
    return store


def python_in(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python *args`` in ``project`` with this checkout's memento; it must succeed."""
    proc = subprocess.run(
        [PYTHON, *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def run_experiment(project: Path, store: Path) -> list[list[Any]]:
    proc = python_in(project, "exp.py", str(store))
    rows: list[list[Any]] = json.loads(proc.stdout.splitlines()[-1])
    return rows


# -- empty files and cache_path="" ----------------------------------------------------------------
def experiment(context: Any, config: Any) -> int:
    return int(config.x) * 2


MATRIX = {"parameters": {"x": [1, 2]}}


def test_an_empty_file_is_a_new_store(capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.NamedTemporaryFile(suffix=".sqlite", delete=False, dir=".") as handle:
        path = Path(handle.name)
    memento = Memento(experiment, executor="inline", progress=False)
    assert memento.run(MATRIX, dry_run=True, cache_path=path) is None
    out = capsys.readouterr().out
    assert "2 configs: 0 cached, 0 failed before, 0 stale, 2 new" in out
    assert path.stat().st_size == 0  # a dry run creates nothing
    assert open_results(path) == []
    assert "No results yet." in CliRunner().invoke(cli, ["status", str(path)]).output
    results = memento.run(MATRIX, cache_path=path)
    assert results is not None and [r.inner for r in results] == [2, 4]
    again = memento.run(MATRIX, cache_path=path)
    assert again is not None and all(r.was_cached for r in again)


def test_an_empty_file_for_the_1_2_providers(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    path.touch()
    FileSystemCacheProvider(filepath=path)["k"] = "v"
    FileSystemCheckpointing(path).set("c", 1)
    assert FileSystemCacheProvider(filepath=path)["k"] == "v"


def test_an_empty_cache_path_falls_through_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_store = tmp_path / "from-env.sqlite"
    monkeypatch.setenv("MEMENTO_CACHE_PATH", str(env_store))
    assert default_store_path("") == env_store
    Memento(experiment, executor="inline", progress=False).run(MATRIX, cache_path="")
    assert len(open_results(env_store)) == 2
    assert not (Path.cwd() / "memento.sqlite").exists()
    monkeypatch.delenv("MEMENTO_CACHE_PATH")
    assert default_store_path("") == Path.cwd() / "memento.sqlite"


def test_store_paths_with_uri_characters(tmp_path: Path) -> None:
    path = tmp_path / "odd ?#%41 dir" / "a?b#c%20.sqlite"
    memento = Memento(experiment, executor="inline", progress=False)
    memento.run(MATRIX, cache_path=path)
    plan = memento.plan(MATRIX, cache_path=path)  # read-only: a file: URI
    assert plan.states == ["cached", "cached"]
    assert len(open_results(path)) == 2
    assert not list(tmp_path.glob("a*"))  # no file made at a mangled name


# -- a 1.2 store: recognised, never modified ------------------------------------------------------
def test_a_1_2_store_is_refused_untouched_everywhere(old12: Path) -> None:
    project = old12.parent
    before = snapshot(project)
    memento = Memento(experiment, executor="inline", progress=False)
    attempts: list[Any] = [
        lambda: memento.run(MATRIX, cache_path=old12),
        lambda: memento.run(MATRIX, cache_path=old12, dry_run=True),
        lambda: open_results(old12),
        lambda: Store(old12).conn,
        lambda: Store(old12, readonly=True).conn,
        lambda: FileSystemCacheProvider(filepath=old12),
        lambda: FileSystemCheckpointing(old12).get("k"),
    ]
    for attempt in attempts:
        with pytest.raises(LegacyStoreError) as caught:
            attempt()
        message = str(caught.value)
        assert "written by memento-ml 1.2" in message and "memento import-1.2" in message
        assert str(old12) in message and "new cache_path" in message
    report = ["report", "-o", str(project.parent / "report.html")]
    for command in (["status"], ["results"], ["show", "ab"], ["forget", "--all", "-y"], report):
        result = CliRunner().invoke(cli, [command[0], str(old12), *command[1:]])
        assert result.exit_code == 1
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1
        assert "written by memento-ml 1.2" in result.output
    assert snapshot(project) == before
    assert not (project.parent / "report.html").exists()
    with closing(sqlite3.connect(f"file:{old12}?mode=ro", uri=True)) as conn, conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_the_default_memento_sqlite_of_1_2(old12: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(old12.parent)
    with pytest.raises(LegacyStoreError, match=r"memento-ml 1\.2"):
        Memento(experiment, executor="inline", progress=False).run(MATRIX)


def test_a_1_2_checkpoint_file_alone_is_recognised(tmp_path: Path) -> None:
    # 1.2 wrote checkpoints to ./memento.sqlite even when $MEMENTO_CACHE_PATH moved the cache.
    path = tmp_path / "memento.sqlite"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE checkpoint_table (key BINARY PRIMARY KEY, ts REAL, value BLOB)")
    with pytest.raises(LegacyStoreError):
        Store(path).conn  # noqa: B018


def test_legacy_store_error_pickles_and_is_a_store_error(tmp_path: Path) -> None:
    error = LegacyStoreError(tmp_path / "my store.sqlite")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, StoreError) and str(copy) == str(error)
    assert "'" in str(error).split("import-1.2", 1)[1]  # the path is quoted for a shell


def test_a_foreign_database_is_not_switched_to_wal(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE things (x)")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a memento store"):
        Store(path).conn  # noqa: B018
    assert path.read_bytes() == before


def test_function_name_reads_1_2_keys_without_unpickling() -> None:
    import cloudpickle

    assert function_name(cloudpickle.dumps({"function": "train", "args": [1]})) == "train"
    assert function_name(cloudpickle.dumps({"function": len, "args": (1,), "kwargs": {}})) is None
    assert function_name(cloudpickle.dumps({"function": "f"})) is None
    assert function_name(b"not a pickle") is None


# -- memento import-1.2 ---------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_import_then_run_finds_every_result(old12: Path, tmp_path: Path) -> None:
    project = old12.parent
    before = snapshot(project)
    new = tmp_path / "new" / "results.sqlite"
    args = ["-m", "memento", "import-1.2", "memento.sqlite", str(new), "-e", "exp.py:exp"]
    out = python_in(project, *args).stdout
    assert f"Imported 5 result(s) of exp:exp from {old12} into {new}." in out
    assert "Skipped 4:" in out
    assert "1: computed by experiment 'other', not 'exp'" in out
    assert "1: not a result of Memento.run" in out
    assert "1: result file missing" in out and "--cache-dir" in out
    assert (
        "1: result file cannot be loaded (ModuleNotFoundError: No module named 'vanishing'" in out
    )
    assert "put the modules it needs on PYTHONPATH" in out
    assert "1 checkpoint(s)" in out
    assert snapshot(project) == before  # OLD and memento_cache/ only read

    rows = run_experiment(project, new)
    assert [r[:4] for r in rows] == [
        ["a=1, b='x'", True, 10, "-"],
        ["a=1, b=square", True, 10, "square"],
        ["a=2, b='x'", True, 20, "-"],
        ["a=2, b=square", True, 20, "square"],
        ["a=3, b=square", True, 30, "square"],
    ]
    assert {r[4] for r in rows} == {2.5}  # 1.2's runtime, carried over
    assert [r[5] for r in rows] == [[0.5], [0.5], [1 / 3], [1 / 3], [0.25]]
    assert {r[6] for r in rows} == {"cached"}  # not stale: the script's code fingerprint
    assert not (project / "ran.txt").exists()  # nothing ran again
    status = CliRunner().invoke(cli, ["status", str(new)]).output.splitlines()
    assert ["exp:exp", "5", "0", "0", "0", "5"] in [line.split() for line in status]

    main, mp_main, path = sys.modules["__main__"], sys.modules.get("__mp_main__"), list(sys.path)
    script = str(project / "exp.py")
    again = CliRunner().invoke(cli, ["import-1.2", str(old12), str(new), "-e", f"{script}:exp"])
    assert again.exit_code == 0, again.output
    assert "Imported 0 result(s)" in again.output
    assert "5: already in NEW (left as it is)" in again.output
    assert sys.modules["__main__"] is main and sys.path == path  # restored after loading
    assert sys.modules.get("__mp_main__") is mp_main
    assert snapshot(project) == before


def test_import_with_a_module_experiment_and_a_version(tmp_path: Path) -> None:
    project = tmp_path / "ran12"
    project.mkdir()
    old = make_12_store(
        project,
        """
        from writer12 import config, open_store, put, result, run_key
        db = open_store()
        for a in (1, 2):
            cfg = config({}, a=a)
            put(db, run_key("train", cfg), result(cfg, a * 100, {}))
        """,
    )
    code = tmp_path / "code"
    write(
        code,
        {"pkg12/__init__.py": "", "pkg12/exps.py": EXPERIMENT.replace("def exp(", "def train(")},
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = elsewhere / "old.sqlite"
    shutil.copy(old, moved)  # the store moved away from memento_cache/: --cache-dir finds it
    sys.path.insert(0, str(code))
    try:
        from pkg12.exps import train

        lost = import_legacy_store(moved, tmp_path / "lost.sqlite", train)  # a callable too
        assert lost.imported == 0 and list(lost.skipped) == [
            f"result file missing under {elsewhere} (give --cache-dir, the directory 1.2 ran in)"
        ]
        assert not (tmp_path / "lost.sqlite").exists()  # nothing to write: nothing made
        report = import_legacy_store(  # --cache-dir may name memento_cache/ itself
            moved,
            tmp_path / "new.sqlite",
            "pkg12.exps:train",
            cache_dir=project / "memento_cache",
            version="v2",
        )
        assert report.imported == 2 and not report.skipped, report.lines()

        results = Memento(train, version="v2", executor="inline", progress=False).run(
            {"parameters": {"a": [1, 2]}}, cache_path=tmp_path / "new.sqlite"
        )
        assert results is not None and [(r.was_cached, r.inner) for r in results] == [
            (True, 100),
            (True, 200),
        ]
        unversioned = Memento(train, executor="inline", progress=False).plan(
            {"parameters": {"a": [1, 2]}}, cache_path=tmp_path / "new.sqlite"
        )
        assert unversioned.states == ["new", "new"]  # the version is part of the key
    finally:
        sys.path.remove(str(code))
        for name in ("pkg12", "pkg12.exps"):
            sys.modules.pop(name, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("{old} {new} -e nocolon", "must be SCRIPT.py:FUNCTION"),
        ("{old} {new} -e missing.py:f", "does not exist"),
        ("{old} {new} -e {script}:nothere", "has no 'nothere'; it defines: exp, square"),
        ("{old} {old} -e {script}:exp", "NEW must be another file than OLD"),
        ("{new} {other} -e {script}:exp", "is not a memento-ml 1.2 store"),
        ("{old} {old_copy} -e {script}:exp", "written by memento-ml 1.2"),
        ("{old} {new}", "Missing option '--experiment'"),
    ],
)
def test_import_errors_are_one_clear_line(
    old12: Path, tmp_path: Path, args: str, message: str
) -> None:
    new = tmp_path / "new.sqlite"
    with Store(new) as store:
        store.conn  # noqa: B018 - a memento store
    old_copy = tmp_path / "copy12.sqlite"
    shutil.copy(old12, old_copy)
    names = {"old": old12, "new": new, "other": tmp_path / "other.sqlite", "old_copy": old_copy}
    argv = ["import-1.2", *args.format(script=old12.parent / "exp.py", **names).split()]
    before = snapshot(old12.parent), old_copy.read_bytes()
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code in (1, 2), result.output
    assert message in result.output
    assert (snapshot(old12.parent), old_copy.read_bytes()) == before
    assert not (tmp_path / "other.sqlite").exists()


@pytest.mark.timeout(300)
def test_import_into_a_postgres_store(old12: Path, postgres_database: str) -> None:
    project = old12.parent
    args = ["-m", "memento", "import-1.2", "memento.sqlite", postgres_database, "-e", "exp.py:exp"]
    out = python_in(project, *args).stdout
    assert "Imported 5 result(s) of exp:exp" in out
    status = CliRunner().invoke(cli, ["status", postgres_database]).output.splitlines()
    assert ["exp:exp", "5", "0", "0", "0", "5"] in [line.split() for line in status]
