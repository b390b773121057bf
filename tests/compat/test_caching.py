"""Cache, the cache providers and default_key_provider: real SQLite files, real processes."""

from __future__ import annotations

import functools
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import run_at_once

from memento import (
    Cache,
    CacheMiss,
    CacheProvider,
    FileSystemCacheProvider,
    Memento,
    MemoryCacheProvider,
    TaskManager,
    default_key_provider,
)
from memento.exceptions import StoreError, UnencodableValue
from memento.store.sqlite import INLINE_LIMIT, Store, side_directory

PYTHON = sys.executable


def add(a: int, b: int = 2) -> int:
    return a + b


def other(a: int, b: int = 2) -> int:
    return a + b


CALLS: list[Any] = []  # module state: not part of any key, unlike a closure's


@pytest.fixture
def calls() -> Iterator[list[Any]]:
    CALLS.clear()
    yield CALLS
    CALLS.clear()


def double(x: int, scale: int = 2) -> int:
    """Double x."""
    CALLS.append(x)
    return x * scale


FALSY: dict[str, Any] = {"False": False, "None": None, "0": 0, "empty": "", "list": []}


def falsy(kind: str) -> Any:
    CALLS.append(kind)
    return FALSY[kind]


def count_calls() -> int:
    CALLS.append(1)
    return len(CALLS)


def flaky() -> str:
    CALLS.append(1)
    if len(CALLS) == 1:
        raise RuntimeError("first time")
    return "fine"


def run_python(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- default_key_provider ----------------------------------------------------------------------


def test_key_is_a_hex_string_equal_for_equal_calls() -> None:
    key = default_key_provider(add, 1, b=3)
    assert isinstance(key, str) and len(key) == 32
    int(key, 16)
    assert key == default_key_provider(add, 1, b=3)


def test_key_tells_types_apart() -> None:
    keys = {default_key_provider(add, v) for v in (1, 1.0, True, "1", (1,))}
    assert len(keys) == 5


def test_key_binds_arguments_to_the_signature() -> None:
    # Positional, keyword and default spellings of one call share a key ...
    assert default_key_provider(add, 1) == default_key_provider(add, a=1)
    assert default_key_provider(add, 1) == default_key_provider(add, 1, 2)
    assert default_key_provider(add, 1, b=2) == default_key_provider(add, b=2, a=1)
    # ... and different calls do not.
    assert default_key_provider(add, 1) != default_key_provider(add, 1, 3)
    assert default_key_provider(add, 1, 3) != default_key_provider(add, 3, 1)


def test_key_tells_functions_apart() -> None:
    assert default_key_provider(add, 1) != default_key_provider(other, 1)
    assert default_key_provider(lambda x: x + 1, 1) != default_key_provider(lambda x: x + 2, 1)


def test_key_of_a_function_without_signature_or_with_arguments_that_do_not_fit() -> None:
    assert default_key_provider(max, 1, 2) == default_key_provider(max, 1, 2)
    assert default_key_provider(max, 1, 2) != default_key_provider(max, 2, 1)
    # Arguments that do not bind still give a key (the call itself will fail).
    assert default_key_provider(add, 1, 2, 3) != default_key_provider(add, 1, 2)


def test_key_accepts_a_non_callable_first_value_as_12_did() -> None:
    assert default_key_provider("run-1") == default_key_provider("run-1")
    assert default_key_provider("run-1") != default_key_provider("run-2")


def test_key_names_an_argument_that_cannot_be_encoded() -> None:
    with pytest.raises(UnencodableValue, match=r"arguments\['b'\]"):
        default_key_provider(add, 1, b=threading.Lock())


@pytest.mark.timeout(120)
def test_key_is_stable_across_processes_and_hash_seeds(
    tmp_path: Path, subprocess_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "keyfuncs.py").write_text("def f(a, b=None, *rest, **options):\n    return a\n")
    code = """
        import keyfuncs
        from memento import default_key_provider
        print(default_key_provider(
            keyfuncs.f, {"x", "y", "z", "w"}, {"k": frozenset({"p", "q", "r"}), "j": [1.5, None]},
            "extra", flag=True, names={"m", "n"},
        ))
    """
    env = {**subprocess_env, "PYTHONPATH": f"{tmp_path}{os.pathsep}{subprocess_env['PYTHONPATH']}"}
    keys = set()
    for seed in ("0", "1", "12345", "random"):
        done = run_python(code, {**env, "PYTHONHASHSEED": seed})
        assert done.returncode == 0, done.stderr
        keys.add(done.stdout.strip())
    assert len(keys) == 1
    monkeypatch.syspath_prepend(str(tmp_path))
    import keyfuncs

    here = default_key_provider(
        keyfuncs.f,
        {"w", "z", "y", "x"},
        {"j": [1.5, None], "k": frozenset({"r", "q", "p"})},
        "extra",
        names={"n", "m"},
        flag=True,
    )
    assert keys == {here}


# --- the provider seam -------------------------------------------------------------------------


class DictProvider(CacheProvider):
    """The smallest provider: only get and set."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        return self.data[key]

    def set(self, key: Any, item: Any) -> None:
        self.data[key] = item


def test_cache_provider_is_abstract() -> None:
    with pytest.raises(TypeError):
        CacheProvider()  # type: ignore[abstract]


def test_a_provider_with_get_and_set_gets_the_rest() -> None:
    provider = DictProvider()
    provider["k"] = 1
    assert provider["k"] == 1
    assert "k" in provider and provider.contains("k")
    assert "missing" not in provider
    with pytest.raises(KeyError):
        provider["missing"]
    assert provider.make_key(add, 1) == default_key_provider(add, 1)
    cached = Cache(add, provider)
    assert cached(1) == 3
    assert provider.data[default_key_provider(add, 1)] == 3


# --- MemoryCacheProvider -----------------------------------------------------------------------


def test_memory_provider_get_set_contains() -> None:
    provider = MemoryCacheProvider()
    with pytest.raises(KeyError):
        provider.get("k")
    assert not provider.contains("k")
    provider.set("k", [1, 2])
    assert provider.get("k") == [1, 2]
    assert provider.contains("k") and "k" in provider and provider["k"] == [1, 2]


@pytest.mark.parametrize("kind", sorted(FALSY))
def test_memory_provider_holds_falsy_values(kind: str, calls: list[Any]) -> None:
    # 1.2 reported a stored False as missing and recomputed it every time.
    provider = MemoryCacheProvider()
    provider["k"] = FALSY[kind]
    assert provider.contains("k")
    cached = Cache(falsy, provider)
    assert cached(kind) == FALSY[kind] and cached(kind) == FALSY[kind]
    assert calls == [kind]


def test_memory_provider_uses_the_initial_dict_as_is() -> None:
    shared: dict[Any, Any] = {}
    provider = MemoryCacheProvider(shared)
    provider.set("a", 1)
    assert shared == {"a": 1}
    assert MemoryCacheProvider({"b": 2}).get("b") == 2
    with pytest.raises(TypeError, match="initial_cache"):
        MemoryCacheProvider([("a", 1)])  # type: ignore[arg-type]


def test_memory_provider_key_provider() -> None:
    provider = MemoryCacheProvider(key_provider=lambda func, *args, **kwargs: ("k", args))
    assert provider.make_key(add, 1, 2) == ("k", (1, 2))
    cached = Cache(add, provider)
    cached(1, 2)
    assert provider.get(("k", (1, 2))) == 3


# --- FileSystemCacheProvider -------------------------------------------------------------------


def test_file_provider_get_set_contains_remove(tmp_path: Path) -> None:
    provider = FileSystemCacheProvider(filepath=tmp_path / "cache.sqlite")
    with pytest.raises(KeyError):
        provider.get("k")
    assert not provider.contains("k")
    provider.set("k", {"a": [1, 2]})
    provider[b"\x00bytes"] = "b"
    provider[7] = "int"
    assert provider.get("k") == {"a": [1, 2]}
    assert provider[b"\x00bytes"] == "b" and provider[7] == "int"
    assert "k" in provider and len(provider) == 3
    assert set(provider.keys()) == {"k", b"\x00bytes", 7}
    provider.set("k", "replaced")
    assert provider["k"] == "replaced" and len(provider) == 3
    provider.remove("k")
    del provider[7]
    assert "k" not in provider and 7 not in provider and len(provider) == 1
    provider.remove("never there")


def test_file_provider_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    FileSystemCacheProvider(filepath=path).set("k", 42)
    assert FileSystemCacheProvider(filepath=str(path)).get("k") == 42


def test_file_provider_rejects_keys_it_cannot_store(tmp_path: Path) -> None:
    provider = FileSystemCacheProvider(filepath=tmp_path / "cache.sqlite")
    with pytest.raises(TypeError, match="str, bytes or int"):
        provider.set(("a", 1), 1)


def test_file_provider_tables_are_separate(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    first = FileSystemCacheProvider(filepath=path)
    second = FileSystemCacheProvider(filepath=path, table_name="features")
    first["k"] = "first"
    second["k"] = "second"
    assert first["k"] == "first" and second["k"] == "second"
    assert second.table_name == "features"
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"cache", "features", "results", "meta"} <= tables


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("cache; DROP TABLE results", ValueError),
        ('x" (a)', ValueError),
        ("1abc", ValueError),
        ("", ValueError),
        ("a" * 65, ValueError),
        ("sqlite_master", ValueError),
        ("results", ValueError),
        ("Checkpoints", ValueError),
        (3, TypeError),
    ],
)
def test_file_provider_validates_table_name(tmp_path: Path, name: Any, error: type) -> None:
    with pytest.raises(error, match="table_name"):
        FileSystemCacheProvider(filepath=tmp_path / "cache.sqlite", table_name=name)
    assert not (tmp_path / "cache.sqlite").exists()


def test_file_provider_shares_the_file_with_a_memento_store(tmp_path: Path) -> None:
    path = tmp_path / "memento.sqlite"

    def experiment(context: Any, config: Any) -> int:
        return int(config.a * 2)

    results = Memento(experiment, executor="inline", progress=False).run(
        {"parameters": {"a": [1, 2]}}, cache_path=path
    )
    assert results is not None
    provider = FileSystemCacheProvider(filepath=path)
    provider["k"] = "v"
    again = Memento(experiment, executor="inline", progress=False).run(
        {"parameters": {"a": [1, 2]}}, cache_path=path
    )
    assert again is not None and all(r.was_cached for r in again)
    with Store(path, readonly=True) as store:
        assert len(list(store.rows())) == 2
    assert FileSystemCacheProvider(filepath=path)["k"] == "v"


def test_file_provider_refuses_a_foreign_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "old-1.2-cache"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE cache (key BINARY PRIMARY KEY, ts REAL, value BLOB)")
    with pytest.raises(StoreError, match=r"1\.2"):
        FileSystemCacheProvider(filepath=path)


def test_file_provider_default_is_a_private_temporary_file(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    cwd = Path.cwd()
    provider = FileSystemCacheProvider()
    provider["k"] = 1
    assert provider.filepath is not None
    assert provider.filepath.parent != cwd and provider.filepath.exists()
    assert FileSystemCacheProvider().filepath != provider.filepath
    assert list(cwd.iterdir()) == []
    # Removed (with its WAL files) when the process that made it exits.
    done = run_python(
        """
        from memento import FileSystemCacheProvider
        p = FileSystemCacheProvider()
        p["k"] = "x" * 10
        print(p.filepath)
        """,
        subprocess_env,
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.name.endswith("_memento.cache.sqlite")
    assert not path.exists() and not Path(f"{path}-wal").exists()


def test_file_provider_keeps_large_values_in_side_files(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    provider = FileSystemCacheProvider(filepath=path)
    big = b"x" * (INLINE_LIMIT + 10)
    provider["big"] = big
    provider["small"] = b"y"
    files = list((side_directory(path) / "cache").rglob("*.pkl"))
    assert len(files) == 1
    assert FileSystemCacheProvider(filepath=path)["big"] == big
    provider["big"] = "now small"  # the side file goes
    assert provider["big"] == "now small"
    assert not files[0].exists()


def test_file_provider_treats_an_unreadable_value_as_a_miss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, calls: list[Any]
) -> None:
    path = tmp_path / "cache.sqlite"
    provider = FileSystemCacheProvider(filepath=path)
    provider["k"] = 1
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE cache SET value = ? WHERE key = 'k'", (b"not a pickle",))
    with pytest.raises(KeyError, match="cannot be loaded"):
        provider.get("k")
    assert "cannot be loaded" in caplog.text
    cached = Cache(count_calls, provider)
    provider[provider.make_key(count_calls)] = 1
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE cache SET value = ?", (b"garbage",))
    assert cached() == 1 and calls == [1]  # recomputed, stored again
    assert cached() == 1 and calls == [1]


@pytest.mark.parametrize("memory", [True, False])
def test_file_provider_on_a_connection(tmp_path: Path, memory: bool) -> None:
    conn = sqlite3.connect(":memory:" if memory else tmp_path / "own.sqlite")
    provider = FileSystemCacheProvider(connection=conn, table_name="mine")
    provider["k"] = [1]
    assert provider["k"] == [1]
    assert conn.execute("SELECT count(*) FROM mine").fetchone()[0] == 1
    assert not conn.in_transaction  # committed
    assert provider.filepath is None
    with pytest.raises(TypeError, match="filepath"):
        pickle.dumps(provider)


def test_file_provider_on_a_connection_with_an_open_transaction_joins_it(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "own.sqlite")
    provider = FileSystemCacheProvider(connection=conn)
    conn.execute("CREATE TABLE other (x)")
    conn.execute("INSERT INTO other VALUES (1)")
    assert conn.in_transaction
    provider["k"] = 1
    conn.rollback()  # the caller's transaction, ours inside it
    assert "k" not in provider


def test_file_provider_given_both_uses_the_connection_and_warns(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:")
    with pytest.warns(UserWarning, match="connection is used"):
        provider = FileSystemCacheProvider(connection=conn, filepath=tmp_path / "ignored")
    provider["k"] = 1
    assert not (tmp_path / "ignored").exists()
    assert conn.execute("SELECT count(*) FROM cache").fetchone()[0] == 1


def test_file_provider_from_many_threads(tmp_path: Path) -> None:
    provider = FileSystemCacheProvider(filepath=tmp_path / "cache.sqlite")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                provider[f"{n}-{i}"] = i
                assert provider[f"{n}-{i}"] == i
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(provider) == 400


WRITER = """
import sys
from memento import FileSystemCacheProvider
path, n = sys.argv[1], int(sys.argv[2])
provider = FileSystemCacheProvider(filepath=path, table_name="shared")
for i in range(60):
    provider[f"{n}-{i}"] = {"writer": n, "i": i, "blob": bytes(1000)}
    provider["last"] = n
    assert provider[f"{n}-{i}"]["i"] == i
print("ok")
"""


@pytest.mark.timeout(180)
def test_file_provider_with_processes_writing_at_once(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    # A fresh file: the processes also race to create the store and the table.
    path = tmp_path / "fresh" / "shared.sqlite"
    outputs = run_at_once(WRITER, [[str(path), str(n)] for n in range(6)], subprocess_env)
    assert [out.strip() for out in outputs] == ["ok"] * 6
    provider = FileSystemCacheProvider(filepath=path, table_name="shared")
    assert len(provider) == 6 * 60 + 1
    for n in range(6):
        for i in range(60):
            assert provider[f"{n}-{i}"] == {"writer": n, "i": i, "blob": bytes(1000)}
    assert provider["last"] in range(6)


# --- Cache -------------------------------------------------------------------------------------


def test_cache_as_a_wrapper_and_as_a_decorator(calls: list[Any]) -> None:
    cached = Cache(double, MemoryCacheProvider())
    assert cached(3) == 6 and cached(3) == 6 and cached(x=3) == 6 and cached(3, 2) == 6
    assert calls == [3]
    assert cached(4) == 8 and calls == [3, 4]

    @Cache
    def triple(x: int) -> int:
        CALLS.append(("triple", x))
        return x * 3

    assert triple(2) == 6 and triple(2) == 6
    assert calls.count(("triple", 2)) == 1
    assert isinstance(triple.cache_provider, FileSystemCacheProvider)


def test_cache_looks_like_the_function() -> None:
    cached = Cache(double, MemoryCacheProvider())
    assert cached.__name__ == "double" and cached.__doc__ == "Double x."
    assert cached.__wrapped__ is double and cached.func is double
    assert "double" in str(cached)
    nested = Cache(cached, MemoryCacheProvider())
    assert nested.func is cached and nested(2) == 4


def test_force_run_and_force_cache(calls: list[Any]) -> None:
    cached = Cache(double, MemoryCacheProvider())
    with pytest.raises(CacheMiss, match=r"double\(5\)") as miss:
        cached(5, force_cache=True)
    assert isinstance(miss.value, KeyError)  # what 1.2 raised
    assert calls == []
    assert cached(5) == 10
    assert cached(5, force_cache=True) == 10 and calls == [5]
    assert cached(5, force_run=True) == 10 and calls == [5, 5]
    with pytest.raises(ValueError, match="contradict"):
        cached(5, force_run=True, force_cache=True)
    restored = pickle.loads(pickle.dumps(miss.value))
    assert isinstance(restored, CacheMiss) and str(restored) == str(miss.value)


def test_force_run_stores_the_new_value(calls: list[Any]) -> None:
    cached = Cache(count_calls, MemoryCacheProvider())
    assert cached() == 1
    assert cached(force_run=True) == 2
    assert cached() == 2


def test_exceptions_are_not_cached(calls: list[Any]) -> None:
    cached = Cache(flaky, MemoryCacheProvider())
    with pytest.raises(RuntimeError):
        cached()
    assert cached() == "fine" and cached() == "fine" and len(calls) == 2


def test_a_closure_is_part_of_the_key() -> None:
    # As for experiments (and as 1.2's pickled keys did): a lambda's captured values are part
    # of what it is, so changing them gives a new key.
    provider = MemoryCacheProvider()
    factor = 2
    scaled = Cache(lambda x: x * factor, provider)
    assert scaled(3) == 6
    factor = 10
    assert scaled(3) == 30
    assert len(provider) == 2


def test_cache_on_a_method_keys_on_the_instance() -> None:
    provider = MemoryCacheProvider()

    class Model:
        def __init__(self, scale: int) -> None:
            self.scale = scale
            self.calls = 0

        def __memento_key__(self) -> int:
            return self.scale

        def predict(self, x: int) -> int:
            self.calls += 1
            return x * self.scale

        predict = Cache(predict, provider)  # type: ignore[assignment]

    small, big = Model(2), Model(10)
    assert small.predict(3) == 6 and small.predict(3) == 6 and big.predict(3) == 30
    assert small.calls == 1 and big.calls == 1
    assert len(provider) == 2


def test_cache_validates_its_arguments() -> None:
    with pytest.raises(TypeError, match="callable"):
        Cache(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="CacheProvider"):
        Cache(add, cache_provider={})  # type: ignore[arg-type]


def test_cache_with_functools_partial_and_lambda() -> None:
    provider = MemoryCacheProvider()
    plus_ten = Cache(functools.partial(add, b=10), provider)
    assert plus_ten(1) == 11 and plus_ten(1) == 11
    square = Cache(lambda x: x * x, provider)
    assert square(3) == 9 and len(provider) == 2


def record_call(path: str, x: int) -> int:
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x * x


@pytest.mark.timeout(120)
def test_a_file_cache_is_shared_with_worker_processes(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    cached = Cache(record_call, FileSystemCacheProvider(filepath=tmp_path / "cache.sqlite"))
    manager = TaskManager(workers=2)
    manager.add_tasks(functools.partial(cached, str(log), x) for x in (1, 2, 3))
    assert manager.run() == [1, 4, 9]
    # Computed in the workers, stored in the shared file: the driver finds every value.
    assert cached(str(log), 2, force_cache=True) == 4
    manager.add_tasks(functools.partial(cached, str(log), x) for x in (1, 2, 3, 4))
    assert manager.run() == [1, 4, 9, 16]
    assert sorted(log.read_text().split()) == ["1", "2", "3", "4"]


@pytest.mark.timeout(120)
def test_the_default_cache_travels_to_workers(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"

    @Cache
    def slow_square(x: int) -> int:
        return record_call(str(log), x)

    manager = TaskManager(workers=2)
    manager.add_tasks(functools.partial(slow_square, x) for x in (1, 2, 1, 2))
    assert manager.run() == [1, 4, 1, 4]
    assert slow_square(1, force_cache=True) == 1
    assert sorted(set(log.read_text().split())) == ["1", "2"]
