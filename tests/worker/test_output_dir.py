"""``context.output_dir``, through the worker: real jobs run in this process and in a worker
process, writing real files. A folder is made on first use, with memento's marker; a failed
attempt's files stay until the next attempt, which starts afresh unless it resumes from a
checkpoint; with no output root, asking for the folder fails the experiment clearly."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from memento import Context
from memento.executors.local import ProcessExecutor
from memento.matrix.configs import Config
from memento.store.outputs import MARKER, folder_files, remove_folder
from memento.worker.context import FileCheckpoints
from memento.worker.task import run_job
from memento.worker.wire import FunctionRef, Job, Outcome, Task

pytestmark = pytest.mark.timeout(120)

KEY = "00112233445566778899aabbccddeeff"


def writes_a_model(context: Any, config: Any) -> dict[str, Any]:
    """Writes into its folder; fails when told to, after writing."""
    folder = context.output_dir
    found = sorted(p.name for p in folder.iterdir() if p.name != MARKER)
    if config.settings.get("checkpoint"):
        context.checkpoint({"step": 1})
    (folder / f"model-{config.a}.bin").write_bytes(b"w" * config.a)
    if config.settings.get("pid"):
        (folder / "pid.txt").write_text(str(os.getpid()))
    if config.settings.get("fail"):
        raise RuntimeError("fails after writing its model")
    return {"folder": str(folder), "found_at_start": found, "pid": os.getpid()}


def never_asks(context: Any, config: Any) -> int:
    return config.a


def _job(
    root: Path | str,
    checkpoints: Path,
    a: int = 3,
    *,
    key: str = KEY,
    mode: int | None = None,
    **settings: Any,
) -> Job:
    task = Task(key, Config._make({"a": a}, settings))
    return Job(
        FunctionRef(writes_a_model, "digest-output-dir"),
        [task],
        str(checkpoints),
        checkpoint_mode=mode,
        output_root=str(root),
        pickle_values=False,
        redirect_output=False,
    )


def _run(job: Job) -> Outcome:
    [outcome] = run_job(job)
    return outcome


def test_a_worker_process_writes_into_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "store.sqlite.d" / "outputs"
    job = _job(root, tmp_path / "checkpoints", 5, pid=True)
    job.pickle_values = True
    with ProcessExecutor(1) as executor:
        [outcome] = executor.result(executor.submit(job))
    folder = root / KEY
    pid = int((folder / "pid.txt").read_text())
    assert pid == outcome.pid != os.getpid()  # written by the worker process
    assert (folder / "model-5.bin").read_bytes() == b"wwwww"
    assert (folder / MARKER).read_text() == f"{KEY}\n"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert folder_files(root, KEY) == [("model-5.bin", 5), ("pid.txt", len(str(pid)))]
    assert outcome.output_dir == str(folder)
    assert outcome.ok, outcome.traceback


def test_the_folder_mirrors_the_store_files_mode(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    assert _run(_job(root, tmp_path / "checkpoints", mode=0o640)).ok
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(root / KEY).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(root / KEY / MARKER).st_mode) == 0o640


def test_a_failed_attempt_keeps_its_files_until_a_fresh_attempt(tmp_path: Path) -> None:
    root, checkpoints = tmp_path / "outputs", tmp_path / "checkpoints"
    failed = _run(_job(root, checkpoints, 2, fail=True))
    assert not failed.ok and "fails after writing" in (failed.error_message or "")
    assert folder_files(root, KEY) == [("model-2.bin", 2)]  # kept for inspection
    assert failed.output_dir == str(root / KEY)
    again = _run(_job(root, checkpoints, 4))  # no checkpoint: starts afresh
    assert again.ok, again.traceback
    assert again.local_value["found_at_start"] == []
    assert folder_files(root, KEY) == [("model-4.bin", 4)]
    assert (root / KEY / MARKER).read_text() == f"{KEY}\n"  # made again on use


def test_a_resumed_attempt_keeps_its_folder_with_the_checkpoint(tmp_path: Path) -> None:
    root, checkpoints = tmp_path / "outputs", tmp_path / "checkpoints"
    failed = _run(_job(root, checkpoints, 2, fail=True, checkpoint=True))
    assert not failed.ok
    assert FileCheckpoints(checkpoints).contains(KEY)
    resumed = _run(_job(root, checkpoints, 4))
    assert resumed.ok, resumed.traceback
    assert resumed.local_value["found_at_start"] == ["model-2.bin"]
    assert folder_files(root, KEY) == [("model-2.bin", 2), ("model-4.bin", 4)]


def test_an_experiment_that_never_asks_makes_no_folder(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    job = _job(root, tmp_path / "checkpoints")
    job.function = FunctionRef(never_asks, "digest-never-asks")
    outcome = _run(job)
    assert outcome.ok and outcome.local_value == 3
    assert not root.exists() and outcome.output_dir is None


def test_without_a_root_the_folder_is_a_clear_error(tmp_path: Path) -> None:
    outcome = _run(_job("", tmp_path / "checkpoints"))
    assert not outcome.ok and outcome.error_type == "RuntimeError"
    message = outcome.error_message or ""
    assert "keeps no output folders" in message and "output_dir=" in message
    with pytest.raises(RuntimeError, match=r"Memento\(\.\.\., output_dir=DIR\)"):
        _ = Context("k").output_dir  # a Context made by hand, as memento-ml 1.2 code does


def test_a_context_made_by_hand_takes_a_root(tmp_path: Path) -> None:
    context = Context(KEY, FileCheckpoints(tmp_path / "ck"), output_root=tmp_path / "out")
    folder = context.output_dir
    assert folder == tmp_path / "out" / KEY and (folder / MARKER).is_file()
    (folder / "plot.svg").write_text("<svg/>")
    assert remove_folder(tmp_path / "out", KEY) and not folder.exists()


def test_a_job_with_a_key_that_is_not_hex_fails_its_task_only(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    (root / "..").mkdir(parents=True, exist_ok=True)
    outcome = _run(_job(root, tmp_path / "checkpoints", key="../escape"))
    assert not outcome.ok and "not an experiment key" in (outcome.error_message or "")
    assert not (tmp_path / "escape").exists()


def test_a_job_pickled_before_output_root_existed_has_none(tmp_path: Path) -> None:
    job = _job(tmp_path / "outputs", tmp_path / "checkpoints")
    del job.__dict__["output_root"]  # what an earlier memento's pickle restores
    assert job.output_root == ""
