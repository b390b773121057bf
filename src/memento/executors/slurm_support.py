"""Slurm support for :mod:`memento.executors.slurm`: what each array task runs on its node,
and the Slurm commands the driver calls (``scancel``, ``squeue``, ``scontrol``)."""

from __future__ import annotations

import faulthandler
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from memento._util.optional import optional_import
from memento._util.text import tail
from memento.exceptions import ExperimentError
from memento.executors.envelope import Envelope, seal

logger = logging.getLogger("memento")

#: sacct states of a job that is over (anything else may still run, or run again).
OVER_STATES = frozenset(("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                   "OUT_OF_MEMORY", "REVOKED", "TIMEOUT"))  # fmt: skip
#: Paths that are private to each node on almost every cluster.
_NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm", "/run")
_TAIL_LINES = 25
_TAIL_CHARS = 3000


def import_submitit() -> Any:
    return optional_import("submitit", "slurm", "SlurmExecutor")


def slurm_reachable() -> bool:
    """Whether ``sbatch`` is installed and the Slurm controller answers ``scontrol ping``."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return False
    try:
        return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


# -- on the node ------------------------------------------------------------------------------
class SlurmCall:
    """What each array task runs: ``fn(*args)`` (``run_job(job)``), sealed in the envelope of
    :mod:`memento.executors.envelope`.

    submitit requeues a job whose callable has a ``checkpoint`` method when it receives the
    preemption signal (``USR2``, also sent ``signal_delay_s`` before the time limit). The
    experiment writes its own checkpoints, so :meth:`checkpoint` resubmits the same call
    unchanged and the rerun resumes from the latest one.
    """

    def __init__(self, fn: Callable[..., Any], max_requeues: int) -> None:
        self.fn = fn
        self.max_requeues = max_requeues

    def __call__(self, *args: Any) -> Envelope:
        faulthandler.enable()  # a segfault leaves its Python stack in the job's stderr
        requeued = threading.Event()
        sig = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))
        previous = signal.getsignal(sig)
        if callable(previous):

            def on_preempt(signum: int, frame: Any) -> None:
                # submitit's handler checkpoints and requeues, then exits with SystemExit; it
                # raises instead when the job may not be requeued again.
                try:
                    previous(signum, frame)
                except SystemExit:
                    requeued.set()
                    raise
                except Exception as exc:
                    raise ExperimentError(
                        f"Slurm job {_job_id()} was preempted or reached its time limit and was "
                        f"not requeued again ({exc}; restarts so far: {_restarts()}, "
                        f"max_requeues={self.max_requeues})"
                    ) from None

            signal.signal(sig, on_preempt)
        try:
            envelope = seal(self.fn, *args)
        finally:
            if callable(previous):
                signal.signal(sig, previous)
        if requeued.is_set():
            # The experiment caught the exit (memento records it as a failure), or the job
            # failed meanwhile: leave without a result so that only the requeued run reports.
            raise SystemExit(-1)
        return envelope

    def checkpoint(self, *args: Any) -> Any:
        if _restarts() >= self.max_requeues:
            return None  # submitit then fails the job instead of requeueing it
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args)


#: Jobs queued by an earlier memento name the class by its old name when they start.
_SlurmCall = SlurmCall


def _restarts() -> int:
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        return 0


def _job_id() -> str:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID", "?")


def job_state(job: Any) -> str:
    """The first word of the job's last known sacct state (``CANCELLED by 0`` -> CANCELLED)."""
    words = str(job.watcher.get_state(job.job_id, "cache") or "UNKNOWN").split()
    return words[0].upper() if words else "UNKNOWN"


def stderr_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4 * _TAIL_CHARS))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no stderr file)"
    return tail(text, _TAIL_LINES, chars=_TAIL_CHARS) or "(empty)"


def stderr_note(path: Path) -> str:
    return f"\n[end of its stderr]\n{stderr_tail(path)}"


def refresh_listing(folder: Path) -> None:
    # Touching the directory's mode makes NFS clients drop their cached listing (as submitit).
    try:
        folder.chmod(folder.stat().st_mode)
    except OSError:
        pass


def mem_parameter(mem_gb: float) -> str:
    return f"{int(mem_gb)}GB" if mem_gb == int(mem_gb) else f"{int(mem_gb * 1024)}MB"


def scancel(ids: Sequence[str]) -> None:
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        try:
            subprocess.run(["scancel", *chunk], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            logger.warning("scancel failed for %d Slurm job(s): %s", len(chunk), exc)


def queued_ids(ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` Slurm still has queued or running (``squeue``)."""
    if not ids:
        return set()
    out = _run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(ids)])
    return {line.strip() for line in out.splitlines() if line.strip()}


def max_array_size() -> int:
    """The cluster's ``MaxArraySize`` (array indices stay below it; Slurm's default 1001)."""
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", _run(["scontrol", "show", "config"]), re.M)
    return max(1, int(found.group(1))) if found else 1001


def _run(args: list[str]) -> str:
    """A Slurm command's stdout; empty when it cannot run."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def warn_if_node_local(paths: Iterable[Path], partition: str | None) -> None:
    local = [p for p in paths if any(str(p).startswith(prefix + "/") for prefix in _NODE_LOCAL)]
    if not local:
        return
    out = _run(["scontrol", "show", "partition", "-o", *([partition] if partition else [])])
    if max(map(int, re.findall(r"TotalNodes=(\d+)", out)), default=0) > 1:
        logger.warning(
            "%s is usually private to each node, but Slurm jobs on other nodes must read and "
            "write it: put the store and the SlurmExecutor folder on a shared filesystem",
            ", ".join(map(str, local)),
        )
