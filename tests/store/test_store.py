from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from memento import Memento
from memento.exceptions import StoreError
from memento.store.sqlite import INLINE_LIMIT, Store, StoredOutcome, default_store_path


def _outcome(key: str, value: bytes | None = b"x", status: str = "done") -> StoredOutcome:
    return StoredOutcome(key=key, experiment="m:f", status=status, params='{"a": 1}', value=value)


def test_default_path_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_store_path() == Path.cwd() / "memento.sqlite"
    assert default_store_path(tmp_path) == tmp_path / "memento.sqlite"  # a directory
    monkeypatch.setenv("MEMENTO_CACHE_PATH", str(tmp_path / "env.sqlite"))
    assert default_store_path() == tmp_path / "env.sqlite"
    assert default_store_path(tmp_path / "x.db") == tmp_path / "x.db"  # explicit wins


def test_write_and_read_back(store_path: Path) -> None:
    with Store(store_path) as store:
        store.write_outcomes([_outcome("k1"), _outcome("k2", status="failed", value=None)])
        found = store.lookup(["k1", "k2", "k3"], ["status", "value"])
    assert found == {"k1": ("done", b"x"), "k2": ("failed", None)}


def test_large_values_go_to_atomic_side_files(store_path: Path) -> None:
    big = b"y" * (INLINE_LIMIT + 1)
    with Store(store_path) as store:
        store.write_outcomes([_outcome("big", value=big)])
        ((value, value_file),) = store.lookup(["big"], ["value", "value_file"]).values()
        assert value is None and value_file == "values/big.pkl"
        assert (store.directory / value_file).read_bytes() == big
        assert store.directory == store_path.with_name("results.sqlite.d")


def test_readonly_never_creates(store_path: Path) -> None:
    with pytest.raises(StoreError, match="No memento store"):
        Store(store_path, readonly=True).conn  # noqa: B018
    assert not store_path.exists()


def test_corrupt_foreign_and_future_stores_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "text.sqlite"
    text.write_text("this is not a database " * 100)
    with pytest.raises(StoreError, match="not"):
        Store(text).conn  # noqa: B018
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(StoreError, match="not a memento store"):
        Store(foreign).conn  # noqa: B018
    future = tmp_path / "future.sqlite"
    Store(future).conn.close()
    with sqlite3.connect(future) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(StoreError, match="schema version '99'"):
        Store(future).conn  # noqa: B018
    with pytest.raises(StoreError, match="schema version '99'"):
        Store(future, readonly=True).conn  # noqa: B018


@pytest.mark.timeout(120)
def test_readable_while_a_run_writes(store_path: Path) -> None:
    """A read-only connection sees committed results while another process writes."""
    from experiments import slow_count

    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if store_path.exists():
                try:
                    with Store(store_path, readonly=True) as store:
                        seen.append(len(list(store.rows(status="done"))))
                except StoreError:
                    pass
            stop.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        Memento(slow_count, num_workers=2, progress=False).run(
            {"parameters": {"a": list(range(12))}, "settings": {"sleep": 0.1}},
            cache_path=store_path,
        )
    finally:
        stop.set()
        watcher.join()
    assert any(0 < n < 12 for n in seen), seen  # saw a partly written store


def test_delete_forgets_results_and_side_files(store_path: Path) -> None:
    with Store(store_path) as store:
        store.write_outcomes([_outcome("a"), _outcome("b", value=b"z" * (INLINE_LIMIT + 1))])
        assert store.delete(["a", "b", "missing"]) == 2
        assert store.lookup(["a", "b"], ["status"]) == {}
        assert not list((store.directory / "values").iterdir())


@pytest.mark.timeout(120)
def test_pandas_is_not_needed_to_import_or_run(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["pandas"] = None  # any import of pandas now fails
        from memento import Memento
        from experiments import record_and_return
        results = Memento(record_and_return, progress=False).run(
            {{"parameters": {{"a": [1, 2]}}}}, cache_path={str(tmp_path / "s.sqlite")!r})
        print(results[0].metrics["loss"]["y"][-1], results[1].inner["twice"])
        try:
            results.to_dataframe()
        except ImportError as error:
            print(error)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], env=subprocess_env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{1 / 3} 4"
    assert "pip install 'memento-grid[pandas]'" in lines[1]
