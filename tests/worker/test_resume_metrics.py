"""A resumed experiment keeps the metrics and progress it had at its checkpoint.

An experiment records steps 0..9 and checkpoints after step 4; its first attempt kills its own
worker process at step 7. Whether it is retried in the same run or resumed by the next run, its
result has every step once, in order: the rows up to the checkpoint come from the checkpoint,
the rows of steps 5 and 6 of the dead attempt are lost and recorded again. Checkpoint files in
a store's side directory get the store file's permissions.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from memento import Context, FileSystemCheckpointing, Memento
from memento.store.sqlite import side_directory
from memento.worker.context import FileCheckpoints, pack_checkpoint

STEPS = 10
CHECKPOINT_AFTER = 4
DIE_AT = 7


def dies_once_after_a_checkpoint(context: Any, config: Any) -> dict[str, Any]:
    """Steps 0..9, a checkpoint after step 4; the first attempt kills its process at step 7."""
    start, resumed_at = 0, None
    if context.checkpoint_exist():
        start = context.restore()
        resumed_at = list(context.progress_state)
    marker = Path(config.settings["dir"]) / f"died-{config.a}"
    for step in range(start, STEPS):
        if step == DIE_AT and not marker.exists():
            marker.write_text("1")
            if config.settings["how"] == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(1)
        context.record({"step": (step, float(step * config.a))})
        context.record({"loss": float(STEPS - step)})  # x: the time it was recorded
        context.progress(1, total=STEPS)
        if step == CHECKPOINT_AFTER:
            context.checkpoint(step + 1)
    return {"resumed_at": resumed_at}


def checkpoints_then_fails(context: Any, config: Any) -> None:
    context.record({"step": (0, 1.0)})
    context.checkpoint({"step": 1})
    raise RuntimeError("fails after its checkpoint")


def _assert_every_step_once(result: Any) -> None:
    a = result.config.a
    table = result.metrics["step"]
    assert list(table["x"]) == list(range(STEPS))
    assert list(table["y"]) == [float(step * a) for step in range(STEPS)]
    loss = result.metrics["loss"]
    assert list(loss["y"]) == [float(STEPS - step) for step in range(STEPS)]
    # Right after restore() the progress was the checkpoint's: steps 0..4 done, of 10.
    assert result.inner == {"resumed_at": [CHECKPOINT_AFTER + 1.0, float(STEPS)]}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_a_retried_experiment_keeps_the_metrics_of_its_checkpoint(
    how: str, store_path: Path, tmp_path: Path
) -> None:
    grid = {"parameters": {"a": [1, 2]}, "settings": {"dir": str(tmp_path), "how": how}}
    memento = Memento(dies_once_after_a_checkpoint, num_workers=2, retries=1, progress=False)
    results = memento.run(grid, cache_path=store_path)
    assert results is not None
    assert [r.attempts for r in results] == [2, 2]
    for result in results:
        _assert_every_step_once(result)
    again = memento.run(grid, cache_path=store_path)  # the store kept the same rows
    assert again is not None and all(r.was_cached for r in again)
    for result in again:
        _assert_every_step_once(result)


@pytest.mark.timeout(180)
def test_the_next_run_resumes_with_the_metrics_of_the_failed_one(
    store_path: Path, tmp_path: Path
) -> None:
    grid = {"parameters": {"a": [3]}, "settings": {"dir": str(tmp_path), "how": "exit"}}
    memento = Memento(dies_once_after_a_checkpoint, progress=False)
    first = memento.run(grid, cache_path=store_path, raise_on_failure=False)
    assert first is not None and not first[0].ok
    (checkpoint,) = (side_directory(store_path) / "checkpoints").glob("*.ckpt")
    results = memento.run(grid, cache_path=store_path)
    assert results is not None and results[0].ok
    _assert_every_step_once(results[0])
    assert not checkpoint.exists()  # removed once the result was stored


# --- Context and its providers, in one process ----------------------------------------------


def _steps(context: Context) -> list[Any]:
    return [x for x, _ in context.metric_rows().get("step", [])]


@pytest.mark.parametrize("provider", ["files", "sqlite"])
def test_restore_reinstates_metrics_and_progress(provider: str, tmp_path: Path) -> None:
    def checkpoints() -> Any:
        if provider == "files":
            return FileCheckpoints(tmp_path / "checkpoints")
        return FileSystemCheckpointing(tmp_path / "store.sqlite")

    first = Context("k", checkpoints())
    for step in range(5):
        first.record({"step": (step, 0.5)})
        first.progress(1, total=10)
    first.checkpoint({"next": 5})
    first.record({"step": (5, 0.5)})  # after the checkpoint: lost with the attempt
    assert checkpoints().get("k") == {"next": 5}  # the provider's own get gives the state

    sent: list[tuple[str, float, float | None]] = []
    second = Context("k", checkpoints(), progress_sink=lambda *update: sent.append(update))
    assert second.restore() == {"next": 5}
    assert _steps(second) == [0, 1, 2, 3, 4]
    assert second.progress_state == (5.0, 10.0)
    assert sent == [("k", 5.0, 10.0)]  # at once, not held back by the throttle
    for step in range(5, 10):
        second.record({"step": (step, 0.5)})
    assert _steps(second) == list(range(10))


def test_restore_twice_or_after_recording_counts_each_row_once(tmp_path: Path) -> None:
    first = Context("k", FileCheckpoints(tmp_path))
    first.record({"step": (0, 1.0)})
    first.checkpoint(1)

    second = Context("k", FileCheckpoints(tmp_path))
    second.record({"setup": (0, 9.0)})  # before the restore: no checkpoint holds it, kept
    second.restore()
    second.restore()
    assert second.metric_rows() == {"step": [(0, 1.0)], "setup": [(0, 9.0)]}
    second.record({"step": (1, 1.0)})
    second.checkpoint(2)
    second.record({"step": (2, 1.0)})  # after its own checkpoint: going back drops it
    assert second.restore() == 2
    assert second.metric_rows() == {"step": [(0, 1.0), (1, 1.0)], "setup": [(0, 9.0)]}

    third = Context("k", FileCheckpoints(tmp_path))
    third.restore()
    assert third.metric_rows() == {"step": [(0, 1.0), (1, 1.0)], "setup": [(0, 9.0)]}


@pytest.mark.parametrize("provider", ["files", "sqlite"])
def test_a_checkpoint_of_an_earlier_version_restores_its_state(
    provider: str, tmp_path: Path
) -> None:
    state = {"epoch": 3}
    if provider == "files":
        # What memento wrote before: the state alone, cloudpickled into <key>.ckpt.
        (tmp_path / "k.ckpt").write_bytes(cloudpickle.dumps(state))
        checkpoints: Any = FileCheckpoints(tmp_path)
    else:
        checkpoints = FileSystemCheckpointing(tmp_path / "store.sqlite")
        checkpoints.set("k", state)
    context = Context("k", checkpoints)
    context.record({"loss": (0, 1.0)})
    context.progress(2, total=4)
    assert context.restore() == state
    # Such a checkpoint carries no metrics nor progress: those of this attempt stay.
    assert context.metric_rows() == {"loss": [(0, 1.0)]}
    assert context.progress_state == (2.0, 4.0)


def test_a_provider_with_only_the_protocols_methods_keeps_metrics() -> None:
    class InMemory:
        def __init__(self) -> None:
            self.items: dict[str, Any] = {}

        def get(self, key: str) -> Any:
            return self.items[key]

        def set(self, key: str, item: Any) -> None:
            self.items[key] = item

        def remove(self, key: str) -> None:
            self.items.pop(key, None)

        def contains(self, key: str) -> bool:
            return key in self.items

    provider = InMemory()
    first = Context("k", provider)
    first.record({"step": (0, 1.0)})
    first.checkpoint("a", "b")
    assert provider.items["k"] == pack_checkpoint(("a", "b"), {"step": [(0, 1.0)]}, (0.0, None))
    second = Context("k", provider)
    assert second.restore() == ("a", "b")
    assert second.metric_rows() == {"step": [(0, 1.0)]}


# --- permissions ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.timeout(120)
def test_checkpoint_files_get_the_store_files_mode(store_path: Path) -> None:
    memento = Memento(checkpoints_then_fails, progress=False)
    grid = {"parameters": {"a": [1]}}
    memento.run(grid, cache_path=store_path, raise_on_failure=False)
    (first,) = (side_directory(store_path) / "checkpoints").glob("*.ckpt")
    assert _mode(first) == _mode(store_path)
    store_path.chmod(0o640)
    memento.run(grid, cache_path=store_path, raise_on_failure=False)  # writes it again
    assert _mode(first) == 0o640
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp file left


UMASK_SCRIPT = """
import os, stat, sys
from pathlib import Path
os.umask(0o022)
from memento import Memento

def experiment(context, config):
    context.checkpoint({"step": 1})
    raise RuntimeError("keeps its checkpoint")

store = Path(sys.argv[1])
Memento(experiment, progress=False).run(
    {"parameters": {"a": [1]}}, cache_path=store, raise_on_failure=False
)
(checkpoint,) = (store.parent / (store.name + ".d") / "checkpoints").glob("*.ckpt")
print(oct(stat.S_IMODE(store.stat().st_mode)), oct(stat.S_IMODE(checkpoint.stat().st_mode)))
"""


@pytest.mark.timeout(120)
def test_checkpoint_files_follow_the_umask_as_the_store_does(
    store_path: Path, subprocess_env: dict[str, str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", UMASK_SCRIPT, str(store_path)],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0o644", "0o644"]


def test_checkpoints_outside_a_store_stay_private(tmp_path: Path) -> None:
    FileCheckpoints(tmp_path / "mine").set("k", 1)
    assert _mode(tmp_path / "mine" / "k.ckpt") == 0o600
