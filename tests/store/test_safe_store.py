"""A store that is safe to open: reading it runs no code from it unless values are asked for."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from memento import open_results
from memento.exceptions import StoreError
from memento.store.safe_pickle import StoredValue, load_plain, pickled_type
from memento.store.sqlite import Store, StoredOutcome
from memento.view.cli import cli


class _Marker:
    """Unpickling this creates the file ``path``: stands for any code hidden in a store."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def crafted_store(tmp_path: Path) -> tuple[Path, Path]:
    """A store whose one success holds a pickle that creates a marker file when loaded, and
    whose failure's exception is such a pickle too; plus a plain success."""
    marker = tmp_path / "marker"
    path = tmp_path / "sent" / "grid.sqlite"
    evil = pickle.dumps(_Marker(marker))
    with Store(path) as store:
        store.write_outcomes(
            [
                StoredOutcome("a" * 64, "m:f", "done", json.dumps({"i": 0}), value=evil),
                StoredOutcome(
                    "b" * 64,
                    "m:f",
                    "failed",
                    json.dumps({"i": 1}),
                    error_type="ValueError",
                    error_message="boom",
                    error=evil,
                ),
                StoredOutcome(
                    "c" * 64, "m:f", "done", json.dumps({"i": 2}), value=pickle.dumps([1, "x"])
                ),
            ]
        )
    return path, marker


def test_plain_values_decode_and_others_are_named_without_running() -> None:
    plain = {"a": [1, 2.5, (None, True)], "s": {1}, "f": frozenset({2}), "b": b"x", "c": 1j}
    assert load_plain(pickle.dumps(plain)) == plain
    import collections

    value = load_plain(pickle.dumps(collections.OrderedDict(a=1)))
    assert isinstance(value, StoredValue)
    assert repr(value).startswith("<pickled collections.OrderedDict, ")
    assert pickled_type(b"not a pickle") == "object"


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["results"],
        ["results", "--format", "csv"],
        ["results", "--format", "json"],
        ["show", "aaaa"],
        ["show", "bbbb"],
        ["report", "-o", "REPORT"],
    ],
)
def test_reading_commands_run_no_pickle(tmp_path: Path, args: list[str]) -> None:
    path, marker = crafted_store(tmp_path)
    args = [str(tmp_path / "r.html") if a == "REPORT" else a for a in args]
    result = CliRunner().invoke(cli, [args[0], str(path), *args[1:]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    if args[0] == "results":
        assert "<pickled io.open, " in result.output


def test_show_names_the_type_and_the_flag_loads(tmp_path: Path) -> None:
    path, marker = crafted_store(tmp_path)
    shown = CliRunner().invoke(cli, ["show", str(path), "aaaa"], catch_exceptions=False)
    assert "<pickled io.open, " in shown.output and "--load-values" in shown.output
    plain = CliRunner().invoke(cli, ["show", str(path), "cccc"], catch_exceptions=False)
    assert "Result      [1, 'x']" in plain.output
    assert not marker.exists()
    CliRunner().invoke(cli, ["show", str(path), "aaaa", "--load-values"], catch_exceptions=False)
    assert marker.exists()


def test_the_flag_loads_for_results_and_report(tmp_path: Path) -> None:
    path, marker = crafted_store(tmp_path)
    CliRunner().invoke(cli, ["results", str(path), "--load-values"], catch_exceptions=False)
    assert marker.exists()
    marker.unlink()
    out = str(tmp_path / "r.html")
    CliRunner().invoke(
        cli, ["report", str(path), "-o", out, "--load-values"], catch_exceptions=False
    )
    assert marker.exists()


def test_open_results_loads_only_when_asked(tmp_path: Path) -> None:
    path, marker = crafted_store(tmp_path)
    records = {r["key"][0]: r for r in open_results(path)}
    records_flat = open_results(path).to_records()
    assert not marker.exists()
    assert records["c"]["inner"] == [1, "x"] and records["c"]["note"] is None
    held = records["a"]["inner"]
    assert isinstance(held, StoredValue) and "not loaded" in records["a"]["note"]
    assert records_flat[0]["inner"].startswith("<pickled io.open")
    held.load()
    assert marker.exists()
    marker.unlink()
    open_results(path, load_values=True)
    assert marker.exists()


def test_a_separate_process_reading_the_store_runs_nothing(tmp_path: Path) -> None:
    """The command as a user runs it, in its own process."""
    path, marker = crafted_store(tmp_path)
    for args in (["status"], ["results", "--format", "json"], ["show", "a"]):
        done = subprocess.run(
            [sys.executable, "-m", "memento", args[0], str(path), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert not marker.exists()


# -- deletions and reads stay inside <file>.d/ ----------------------------------------------------
def _point_value_file(path: Path, key: str, name: str) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE results SET value = NULL, value_file = ? WHERE key = ?", (name, key))
    conn.close()


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_forget_never_deletes_outside_the_store(tmp_path: Path, how: str) -> None:
    path, _ = crafted_store(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    if how == "symlink":
        values = path.with_name(path.name + ".d") / "values"
        values.mkdir(parents=True)
        (values / "link.pkl").symlink_to(victim)
        name = "values/link.pkl"
    else:
        name = "../../victim" if how == "dotdot" else str(victim)
    _point_value_file(path, "c" * 64, name)
    result = CliRunner().invoke(cli, ["forget", str(path), "--all", "--yes"])
    assert result.exit_code == 1
    assert "outside the store's directory" in result.output and repr(name) in result.output
    assert victim.read_text() == "precious"
    # Nothing was forgotten either: the refusal comes before any change.
    assert len(open_results(path)) == 3
    # Reading the row does not read the outside file: it gets a note instead.
    record = next(r for r in open_results(path, load_values=True) if r["key"][0] == "c")
    assert record["inner"] is None and "outside the store's directory" in record["note"]


def test_forget_still_deletes_its_own_side_files(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    big = pickle.dumps(b"x" * (600 * 1024))
    with Store(path) as store:
        store.write_outcomes([StoredOutcome("d" * 64, "m:f", "done", "{}", value=big)])
    files = list((tmp_path / "s.sqlite.d" / "values").iterdir())
    assert len(files) == 1
    result = CliRunner().invoke(cli, ["forget", str(path), "--all", "--yes"])
    assert result.exit_code == 0, result.output
    assert not files[0].exists()


# -- a store in a read-only place -----------------------------------------------------------------
@pytest.fixture
def read_only_copy(tmp_path: Path) -> Any:
    """A directory holding a WAL store (closed, so no -wal/-shm), bind-mounted read-only.

    Tests run as root, for whom file modes do not stop writes; a read-only mount does.
    Skipped where mounting is not allowed."""
    source, view = tmp_path / "source", tmp_path / "view"
    source.mkdir()
    view.mkdir()
    path, _ = crafted_store(tmp_path)
    (source / "grid.sqlite").write_bytes(path.read_bytes())
    assert (source / "grid.sqlite").read_bytes()[18:20] == b"\x02\x02"  # WAL mode
    (source / "grid.sqlite").chmod(0o444)
    mounted = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(source), str(view)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot make a read-only mount here: {mounted.stderr!r}")
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_a_read_only_wal_store_can_be_read(read_only_copy: Path) -> None:
    path = read_only_copy / "grid.sqlite"
    with pytest.raises(OSError):
        (read_only_copy / "probe").write_text("")
    for args in (["status"], ["results"], ["show", "cccc"]):
        result = CliRunner().invoke(cli, [args[0], str(path), *args[1:]], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    assert "m:f" in CliRunner().invoke(cli, ["status", str(path)]).output
    records = open_results(path)
    assert sorted(r["params"]["i"] for r in records) == [0, 1, 2]
    assert sorted(p.name for p in read_only_copy.iterdir()) == ["grid.sqlite"]


def test_a_new_store_in_a_read_only_directory_fails_first(read_only_copy: Path) -> None:
    from memento import Memento

    ran: list[int] = []

    def experiment(context: Any, config: Any) -> int:
        ran.append(1)
        return 1

    target = read_only_copy / "new.sqlite"
    with pytest.raises(StoreError, match="new store") as caught:
        Memento(experiment, progress=False, executor="inline").run(
            {"parameters": {"a": [1]}}, cache_path=target
        )
    assert str(read_only_copy) in str(caught.value) and "read-only" in str(caught.value)
    assert not ran


# -- permissions of side files ------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_value_files_get_the_store_files_permissions(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = tmp_path / "s.sqlite"
        big = pickle.dumps(b"x" * (600 * 1024))
        with Store(path) as store:
            store.write_outcomes([StoredOutcome("e" * 64, "m:f", "done", "{}", value=big)])
    finally:
        os.umask(old)
    (value,) = (tmp_path / "s.sqlite.d" / "values").iterdir()
    # SQLite creates its file 0644 minus the umask.
    assert path.stat().st_mode & 0o777 == 0o644 & ~umask
    assert value.stat().st_mode & 0o777 == path.stat().st_mode & 0o777


# -- directory names that are URI syntax ----------------------------------------------------------
def _double(context: Any, config: Any) -> int:
    return int(config.a) * 2


def test_uri_characters_in_the_directory(tmp_path: Path) -> None:
    from memento import Memento

    path = tmp_path / "odd #1 %20 ?x=y" / "grid.sqlite"
    matrix = {"parameters": {"a": [1, 2]}}
    first = Memento(_double, progress=False, executor="inline").run(matrix, cache_path=path)
    again = Memento(_double, progress=False, executor="inline").run(matrix, cache_path=path)
    assert [r.inner for r in first] == [r.inner for r in again] == [2, 4]
    assert all(r.was_cached for r in again)
    Memento(_double, progress=False, executor="inline").run(matrix, cache_path=path, dry_run=True)
    result = CliRunner().invoke(cli, ["status", str(path)], catch_exceptions=False)
    assert result.exit_code == 0 and "Store          " + str(path) in result.output
    # No stray files from a mis-parsed URI, beside the store or in the working directory.
    assert all(p.name.startswith("grid.sqlite") for p in path.parent.iterdir())
    assert [p.name for p in tmp_path.iterdir() if p.name != "cwd"] == ["odd #1 %20 ?x=y"]
    assert not list(Path.cwd().iterdir())


def test_a_force_cache_run_reads_a_store_in_a_read_only_place(tmp_path: Path) -> None:
    """A store made by a real run, then served from a read-only mount by ``force_cache=True``."""
    from experiments import multiply

    from memento import Memento

    source, view = tmp_path / "source", tmp_path / "view"
    source.mkdir()
    view.mkdir()
    matrix = {"parameters": {"a": [1, 2], "b": [3]}}
    Memento(multiply, progress=False, executor="inline").run(
        matrix, cache_path=source / "grid.sqlite"
    )
    before = sorted(p.name for p in source.iterdir())
    mounted = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(source), str(view)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot make a read-only mount here: {mounted.stderr!r}")
    try:
        results = Memento(multiply, progress=False).run(
            matrix, cache_path=view / "grid.sqlite", force_cache=True
        )
        assert [r.inner for r in results] == [3, 6]
        assert all(r.was_cached for r in results)
    finally:
        subprocess.run(["umount", str(view)], check=True)
    assert sorted(p.name for p in source.iterdir()) == before


def test_cache_deletions_and_reads_stay_inside_the_side_directory(tmp_path: Path) -> None:
    """A crafted ``Cache`` row naming a file outside ``<file>.d/`` is neither read nor deleted."""
    from memento.compat.caching import FileSystemCacheProvider

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    path = tmp_path / "cache.sqlite"
    provider = FileSystemCacheProvider(filepath=str(path))
    provider.set("k", 1)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE cache SET value = NULL, value_file = ? WHERE key = 'k'",
            (os.path.relpath(victim, path.parent / "cache.sqlite.d"),),
        )
    conn.close()
    with pytest.raises(KeyError):
        provider.get("k")  # refused, so a miss (logged), never the victim's bytes
    with pytest.raises(StoreError, match="outside the store's directory"):
        provider.remove("k")
    assert victim.read_text() == "keep me"
