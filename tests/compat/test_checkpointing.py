"""FileSystemCheckpointing and a Context built by hand: real SQLite files, real processes."""

from __future__ import annotations

import multiprocessing
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from processes import run_at_once

from memento import Context, FileSystemCheckpointing, Memento, default_key_provider
from memento.store.sqlite import Store


def test_set_get_contains_remove(tmp_path: Path) -> None:
    checkpoints = FileSystemCheckpointing(tmp_path / "store.sqlite")
    assert not checkpoints.contains("k")
    with pytest.raises(KeyError, match="'k'"):
        checkpoints.get("k")
    checkpoints.set("k", {"epoch": 1})
    checkpoints.set("k", {"epoch": 2})
    checkpoints.set(b"\x01\x02", [1])
    assert checkpoints.get("k") == {"epoch": 2}
    assert checkpoints.get(b"\x01\x02") == [1] and checkpoints.contains(b"\x01\x02")
    checkpoints.remove("k")
    checkpoints.remove("k")  # nothing to remove: no error
    assert not checkpoints.contains("k")


def test_checkpoints_persist_in_a_memento_store(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    FileSystemCheckpointing(str(path)).set("k", "state")
    assert FileSystemCheckpointing(path).get("k") == "state"
    with Store(path, readonly=True) as store:
        assert list(store.rows()) == []  # a valid store, readable by the rest of memento


def test_the_store_file_of_a_run_can_hold_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "memento.sqlite"

    def experiment(context: Any, config: Any) -> int:
        return int(config.x)

    Memento(experiment, executor="inline", progress=False).run(
        {"parameters": {"x": [1]}}, cache_path=path
    )
    checkpoints = FileSystemCheckpointing(path)
    checkpoints.set("k", 1)
    again = Memento(experiment, executor="inline", progress=False).run(
        {"parameters": {"x": [1]}}, cache_path=path
    )
    assert again is not None and again[0].was_cached and checkpoints.get("k") == 1


def test_default_is_a_temporary_file_outside_the_cwd(subprocess_env: dict[str, str]) -> None:
    checkpoints = FileSystemCheckpointing()
    checkpoints.set("k", 1)
    assert checkpoints.filepath is not None
    assert Path(checkpoints.filepath).parent != Path.cwd()
    assert list(Path.cwd().iterdir()) == []
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from memento import FileSystemCheckpointing as F\n"
            "c = F(); c.set('k', 1); print(c.filepath)",
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not Path(done.stdout.strip()).exists()  # removed at exit


@pytest.mark.parametrize("memory", [True, False])
def test_with_a_sqlite_connection(tmp_path: Path, memory: bool) -> None:
    conn = sqlite3.connect(":memory:" if memory else str(tmp_path / "own.sqlite"))
    checkpoints = FileSystemCheckpointing(connection=conn)
    assert checkpoints.filepath is None
    checkpoints.set("k", (1, 2))
    assert checkpoints.get("k") == (1, 2) and checkpoints.contains("k")
    assert conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 1
    assert not conn.in_transaction
    checkpoints.remove("k")
    assert not checkpoints.contains("k")
    with pytest.raises(TypeError, match="filepath"):
        pickle.dumps(checkpoints)
    if not memory:
        other = sqlite3.connect(str(tmp_path / "own.sqlite"))
        FileSystemCheckpointing(connection=other).set("seen", 1)
        assert checkpoints.contains("seen")


def test_given_both_the_connection_is_used_with_a_warning(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:")
    with pytest.warns(UserWarning, match="connection is used"):
        checkpoints = FileSystemCheckpointing(tmp_path / "ignored.sqlite", connection=conn)
    checkpoints.set("k", 1)
    assert not (tmp_path / "ignored.sqlite").exists()


def test_make_key_uses_the_key_provider() -> None:
    checkpoints = FileSystemCheckpointing()
    assert checkpoints.make_key("run", 1) == default_key_provider("run", 1)
    custom = FileSystemCheckpointing(key=lambda *args: "-".join(map(str, args)))
    assert custom.make_key("run", 1) == "run-1"


# --- Context built by hand ---------------------------------------------------------------------


def test_context_with_file_system_checkpointing(tmp_path: Path) -> None:
    checkpoints = FileSystemCheckpointing(tmp_path / "store.sqlite")
    context = Context("experiment-1", checkpoints)
    assert not context.checkpoint_exist()
    with pytest.raises(KeyError):
        context.restore()
    context.checkpoint({"epoch": 3})
    assert context.checkpoint_exist() and context.restore() == {"epoch": 3}
    assert checkpoints.get("experiment-1") == {"epoch": 3}
    assert not Context("experiment-2", checkpoints).checkpoint_exist()
    context.record({"loss": (1, 0.5)})
    assert context.metric_rows() == {"loss": [(1, 0.5)]}
    # collect_metrics() gives 1.2's tables: a DataFrame per metric when pandas is installed.
    table = context.collect_metrics()["loss"]
    assert list(table.columns) == ["x", "y"] and table["y"].tolist() == [0.5]


def test_context_without_provider_says_so() -> None:
    with pytest.raises(RuntimeError, match="checkpoint provider"):
        Context("k").checkpoint(1)


# --- across processes --------------------------------------------------------------------------


def resume_and_advance(checkpoints: FileSystemCheckpointing, key: str, steps: int) -> None:
    context = Context(key, checkpoints)
    for _ in range(steps):
        state = context.restore() if context.checkpoint_exist() else {"step": 0}
        context.checkpoint({"step": state["step"] + 1})


@pytest.mark.timeout(120)
def test_a_copy_in_another_process_writes_to_the_same_file(tmp_path: Path) -> None:
    checkpoints = FileSystemCheckpointing(tmp_path / "store.sqlite")
    checkpoints.set("shared", "from the parent")  # the parent's connection is open
    for method in ("fork", "spawn"):
        process = multiprocessing.get_context(method).Process(
            target=resume_and_advance, args=(checkpoints, method, 5)
        )
        process.start()
        process.join(60)
        assert process.exitcode == 0
        assert checkpoints.get(method) == {"step": 5}
    resume_and_advance(checkpoints, "fork", 2)  # the parent resumes where the child stopped
    assert checkpoints.get("fork") == {"step": 7}
    assert checkpoints.get("shared") == "from the parent"


WRITER = """
import sys
from memento import Context, FileSystemCheckpointing
path, name = sys.argv[1], sys.argv[2]
checkpoints = FileSystemCheckpointing(path)
for step in range(100):
    context = Context(f"{name}-{step % 5}", checkpoints)
    context.checkpoint({"writer": name, "step": step})
    assert context.restore()["writer"] == name
    checkpoints.set("everyone", name)
"""


@pytest.mark.timeout(180)
def test_processes_checkpointing_into_one_file_at_once(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    path = tmp_path / "fresh" / "store.sqlite"
    run_at_once(WRITER, [[str(path), f"w{n}"] for n in range(6)], subprocess_env)
    checkpoints = FileSystemCheckpointing(path)
    for n in range(6):
        for slot in range(5):
            assert checkpoints.get(f"w{n}-{slot}") == {"writer": f"w{n}", "step": 95 + slot}
    assert checkpoints.get("everyone") in {f"w{n}" for n in range(6)}
