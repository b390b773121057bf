"""SlurmExecutor on a real single-node Slurm: arrays, preemption, re-attaching, Ctrl-C.

Needs a reachable Slurm (``.ci/clusters.sh`` starts one with ``../shared/tools/slurm-up.sh``);
every test that submits jobs is marked ``slurm`` and skips with the reason otherwise.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from clusters import (
    installed,
    product_logged,
    slow_steps,
    slurm_executor,
    slurm_folder,
    store_rows,
    wait_for,
)
from experiments import misbehave, multiply

from memento import AggregateException, Memento
from memento.exceptions import ExperimentError, MissingExtra, WorkerDied
from memento.store.sqlite import side_directory

__all__ = ["slurm_folder"]

pytestmark = pytest.mark.timeout(300)

needs_submitit = pytest.mark.skipif(not installed("submitit"), reason="submitit is not installed")


def _job_ids(store: Path) -> list[str]:
    return [row[0] for row in store_rows(store, "SELECT job_id FROM jobs ORDER BY job_id")]


def _in_background(run: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["results"] = run()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _checkpoint_step(store: Path) -> int:
    from memento.worker.context import FileCheckpoints

    for path in (side_directory(store) / "checkpoints").glob("*.ckpt"):
        try:
            return int(FileCheckpoints(path.parent).get(path.stem)["i"])
        except Exception:
            return -1
    return -1


@pytest.mark.slurm
def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(
    slurm_folder: Path, store_path: Path
) -> None:
    executor = slurm_executor(slurm_folder / "preempt")
    grid = {"parameters": {"a": [1]}, "settings": {"steps": 8, "step": 1.0}}
    memento = Memento(slow_steps, executor=executor, progress=False)
    thread, box = _in_background(lambda: memento.run(grid, cache_path=store_path))
    (job_id,) = wait_for(lambda: _job_ids(store_path), 120, "the job id in the store")
    wait_for(lambda: _checkpoint_step(store_path) >= 2, 120, "two checkpointed steps")
    # What Slurm does before preempting a job, and what submitit's own tests send.
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    thread.join(240)
    assert "error" not in box, box.get("error")
    (result,) = box["results"]
    assert result.inner["i"] == 8
    assert result.inner["restarts"] == "1"  # the same job id ran again
    first, resumed = result.inner["starts"]
    assert first == 0 and resumed >= 2  # the second start picked up from the checkpoint


@pytest.mark.slurm
def test_requeues_are_capped(slurm_folder: Path, store_path: Path) -> None:
    executor = slurm_executor(slurm_folder / "capped", max_requeues=0)
    grid = {"parameters": {"a": [1]}, "settings": {"steps": 60, "step": 1.0}}
    memento = Memento(slow_steps, executor=executor, progress=False)
    thread, box = _in_background(
        lambda: memento.run(grid, cache_path=store_path, raise_on_failure=False)
    )
    (job_id,) = wait_for(lambda: _job_ids(store_path), 120, "the job id in the store")
    wait_for(lambda: _checkpoint_step(store_path) >= 1, 120, "a checkpointed step")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    thread.join(240)
    (result,) = box["results"]
    assert isinstance(result.error, ExperimentError)
    assert "not requeued again" in str(result.error) and "max_requeues=0" in str(result.error)
    assert result.error.kind == "interrupted"  # preempted (its time limit was far off)


DRIVER = textwrap.dedent(
    """
    import sys
    from clusters import SLURM_TEST_OPTIONS, {func}
    from memento import Memento
    from memento.executors import SlurmExecutor
    grid = {grid}
    executor = SlurmExecutor(sys.argv[2], **SLURM_TEST_OPTIONS)
    Memento({func}, executor=executor, progress=False).run(grid, cache_path=sys.argv[1])
    """
)


@pytest.mark.slurm
def test_after_the_driver_dies_a_rerun_collects_its_jobs_instead_of_resubmitting(
    slurm_folder: Path, store_path: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    folder = slurm_folder / "reattach"
    log = tmp_path / "calls.log"
    grid = {"parameters": {"a": [1, 2, 3], "b": [10]}, "settings": {"log": str(log), "sleep": 4}}
    script = DRIVER.format(func="product_logged", grid=repr(grid))
    driver = subprocess.Popen(
        [sys.executable, "-c", script, str(store_path), str(folder)], env=subprocess_env
    )
    try:
        jobs = wait_for(
            lambda: len(_job_ids(store_path)) == 3 and _job_ids(store_path), 120, "3 jobs"
        )
    finally:
        driver.kill()  # kill -9: no cleanup of any kind
        driver.wait(30)
    executor = slurm_executor(folder)
    results = Memento(product_logged, executor=executor, progress=False).run(
        grid, cache_path=store_path
    )
    assert results is not None
    assert [r.inner for r in results] == [10, 20, 30]
    assert len(log.read_text().splitlines()) == 3  # each config ran once, in the first jobs
    arrays = {path.name.split("_")[0] for path in folder.iterdir() if path.is_dir()}
    assert arrays == {jobs[0].split("_")[0]}  # nothing was submitted again
    assert _job_ids(store_path) == []  # collected jobs are forgotten


@pytest.mark.slurm
def test_ctrl_c_in_the_driver_cancels_the_jobs(
    slurm_folder: Path, store_path: Path, subprocess_env: dict[str, str]
) -> None:
    folder = slurm_folder / "ctrl-c"
    script = DRIVER.format(func="nap", grid=repr({"parameters": {"seconds": [600, 601]}}))
    driver = subprocess.Popen(
        [sys.executable, "-c", script, str(store_path), str(folder)],
        env=subprocess_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    jobs = wait_for(lambda: len(_job_ids(store_path)) == 2 and _job_ids(store_path), 120, "2 jobs")
    # Once running, not merely queued.
    wait_for(lambda: all(_state(j) == "RUNNING" for j in jobs), 120, "running jobs")
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode != 0 and "stopped by Ctrl-C" in stderr
    wait_for(lambda: all(_state(j).startswith("CANCELLED") for j in jobs), 60, "cancelled jobs")
    assert _job_ids(store_path) == []


def _state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True
    ).stdout.split()
    return out[0] if out else ""


@pytest.mark.slurm
def test_a_big_grid_goes_out_as_chained_arrays_within_array_parallelism(
    slurm_folder: Path, store_path: Path
) -> None:
    folder = slurm_folder / "chunks"
    executor = slurm_executor(folder, chunk_size=3, array_parallelism=2)
    grid = {"parameters": {"a": list(range(1, 8)), "b": [1]}}
    results = Memento(multiply, executor=executor, progress=False).run(grid, cache_path=store_path)
    assert results is not None
    assert [r.inner for r in results] == list(range(1, 8))
    scripts = sorted(folder.glob("*/*_submission.sh"), key=lambda p: int(p.parent.name))
    headers = [_sbatch_options(p) for p in scripts]
    assert [h.get("array") for h in headers] == ["0-2%2", "0-2%2", None]  # 3 + 3 + 1 tasks
    ids = [p.parent.name for p in scripts]
    # Each array waits for the one before: at most 2 tasks of the grid run at any time.
    assert [h.get("dependency") for h in headers] == [
        None,
        f"afterany:{ids[0]}",
        f"afterany:{ids[1]}",
    ]


def _sbatch_options(script: Path) -> dict[str, str]:
    found = re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", script.read_text(), re.MULTILINE)
    return dict(found)


@pytest.mark.slurm
def test_a_failure_names_its_slurm_job_and_shows_the_end_of_its_stderr(
    slurm_folder: Path, store_path: Path
) -> None:
    executor = slurm_executor(slurm_folder / "errors")
    grid = {"parameters": {"how": ["segfault", "raise"]}}
    with pytest.raises(AggregateException) as info:
        Memento(misbehave, executor=executor, progress=False).run(grid, cache_path=store_path)
    by_how = {error.config.how: error for error in info.value.exceptions}  # type: ignore[attr-defined]
    crash, failure = by_how["segfault"], by_how["raise"]
    assert isinstance(crash, WorkerDied)
    assert crash.kind == "crash" and crash.exitcode == -11  # sacct: the step's SIGSEGV
    assert re.search(r"Slurm job \d+_0 ended without a result", str(crash))
    assert "Segmentation fault" in crash.stderr_tail  # type: ignore[attr-defined]
    assert crash.job_id.endswith("_0")  # type: ignore[attr-defined]
    assert isinstance(failure, RuntimeError) and str(failure) == "plain failure"
    assert re.search(r"\[Slurm job \d+_1; stderr: ", failure.traceback)  # type: ignore[attr-defined]


@needs_submitit
def test_without_slurm_the_run_fails_before_anything_is_submitted(
    tmp_path: Path, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    executor = slurm_executor(tmp_path / "slurm")
    with pytest.raises(ConnectionError, match="sbatch"):
        Memento(multiply, executor=executor, progress=False).run(
            {"parameters": {"a": [1], "b": [2]}}, cache_path=store_path
        )
    assert not (tmp_path / "slurm").exists()


def test_a_missing_submitit_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)
    from memento.executors import SlurmExecutor

    with pytest.raises(MissingExtra, match=r"pip install 'memento-grid\[slurm\]'"):
        SlurmExecutor("runs/slurm")


def test_bad_arguments_are_rejected() -> None:
    pytest.importorskip("submitit")
    from memento.executors import SlurmExecutor

    for bad in ({"array_parallelism": 0}, {"timeout_min": 1.5}, {"max_requeues": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SlurmExecutor("runs/slurm", **bad)  # type: ignore[arg-type]
