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
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from memento._util.optional import optional_import
from memento._util.text import tail
from memento.exceptions import ExperimentError, WorkerDied, WorkerLost
from memento.executors.base import exit_kind
from memento.executors.envelope import Envelope, seal
from memento.executors.timeouts import timed_out

logger = logging.getLogger("memento")

#: The failure kind of a Slurm job that ended without a result, by its terminal sacct state:
#: the one table :func:`slurm_failure` reads. ``FAILED`` is decided by the job's exit status
#: (:func:`memento.executors.base.exit_kind`); a job that sacct no longer knows and squeue
#: no longer lists (``LOST``) was lost with its node or the controller's state.
STATE_KINDS: dict[str, str] = {
    "OUT_OF_MEMORY": "oom",  # over --mem (Slurm's cgroup or its accounting killed it)
    "PREEMPTED": "interrupted",  # preempted and not requeued (or out of max_requeues)
    "CANCELLED": "interrupted",  # scancel, by a user or an administrator
    "DEADLINE": "interrupted",  # --deadline passed
    "TIMEOUT": "timeout",  # its --time ran out (and it could not be requeued again)
    "NODE_FAIL": "infrastructure",
    "BOOT_FAIL": "infrastructure",
    "REVOKED": "infrastructure",  # a federated sibling ran it
    "COMPLETED": "infrastructure",  # it ended well, but its result file never appeared
    "LOST": "infrastructure",
    "UNKNOWN": "infrastructure",
    "FAILED": "crash",
}
#: sacct states of a job that is over (anything else may still run, or run again).
OVER_STATES = frozenset(STATE_KINDS) - {"LOST", "UNKNOWN"}
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
                        f"max_requeues={self.max_requeues})",
                        kind=_stop_kind(),
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


#: A stop signal this close (s) to the job's end time is its time limit, not a preemption
#: (submitit's ``signal_delay_s`` is 90 s by default).
_NEAR_END = 180.0


def _stop_kind() -> str:
    """``timeout`` when the job's time limit is near (``SLURM_JOB_END_TIME``, Slurm >= 22),
    else ``interrupted`` (preempted)."""
    try:
        end = float(os.environ["SLURM_JOB_END_TIME"])
    except (KeyError, ValueError):
        return "interrupted"
    return "timeout" if end - time.time() <= _NEAR_END else "interrupted"


def _job_id() -> str:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID", "?")


def job_state(job: Any) -> str:
    """The first word of the job's last known sacct state (``CANCELLED by 0`` -> CANCELLED)."""
    words = str(job.watcher.get_state(job.job_id, "cache") or "UNKNOWN").split()
    return words[0].upper() if words else "UNKNOWN"


def exit_status(job_id: str, *, wait: float = 3.0) -> int | None:
    """The job's exit status as ``multiprocessing`` gives it (``-11`` for a SIGSEGV, ``3`` for
    ``exit(3)``), from sacct's ``ExitCode`` (``code:signal``) of the job and its steps: the
    srun step that ran Python shows the signal (``0:11``) where the batch script only shows
    srun's code (``11:0``). Step records reach accounting after the job's, so this waits up to
    ``wait`` s for one. ``None`` when sacct does not know the job."""
    deadline = time.monotonic() + wait
    while True:
        out = _run(["sacct", "-n", "-P", "-o", "JobID,ExitCode", "-j", job_id])
        rows = re.findall(r"^(\S+)\|(\d+):(\d+)\s*$", out, re.M)
        steps = [r for r in rows if re.search(r"\.\d+$", r[0])]
        if steps or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if not rows:
        return None
    signals = [int(sig) for _, _, sig in steps + rows if int(sig)]
    return -signals[0] if signals else int((steps or rows)[0][1])


def accounted_state(job_id: str, *, wait: float = 5.0) -> str:
    """The job's state as sacct has it, waiting up to ``wait`` s for the record of a job that
    just ended (accounting lags behind the controller); ``""`` when sacct does not know it
    (accounting off, or the job was lost)."""
    deadline = time.monotonic() + wait
    while True:
        out = _run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id]).split("\n")[0]
        if out.strip() or time.monotonic() >= deadline:
            return out.strip()
        time.sleep(0.5)


def slurm_failure(
    job_id: str,
    state: str,
    *,
    exitcode: int | None = None,
    oom_exit: int | None = None,
    time_limit: float | None = None,
    detail: str = "",
) -> ExperimentError:
    """The error of Slurm job ``job_id`` that ended in ``state`` without a result, of the kind
    :data:`STATE_KINDS` gives (``FAILED``: by ``exitcode``, see
    :func:`~memento.executors.base.exit_kind`). ``detail`` (the end of its stderr) is appended.

    Example::

        slurm_failure("42_0", "OUT_OF_MEMORY").kind      # 'oom'
        slurm_failure("42_0", "FAILED", exitcode=-11)    # WorkerDied, kind 'crash'
    """
    word = (state.split() or ["UNKNOWN"])[0].upper()
    kind = STATE_KINDS.get(word, "crash")
    if word == "FAILED":
        kind = exit_kind(exitcode, oom_exit=oom_exit)
    tail_text = f" {detail}" if detail else ""
    if kind == "timeout":
        limit = "" if time_limit is None else f" (--time, {time_limit / 60:g} min)"
        error: ExperimentError = timed_out(
            time_limit, f"Slurm job {job_id} reached its time limit{limit} and was not requeued"
        )
        error.args = (f"{error}.{tail_text}",)
        return error
    if kind == "infrastructure":
        why = "Slurm lost it" if word in ("LOST", "UNKNOWN") else f"state {state}"
        return WorkerLost(f"Slurm job {job_id} ended without a result ({why}).{tail_text}")
    how = f"state {state}" if exitcode is None else f"state {state}, exit status {exitcode}"
    died = WorkerDied(f"Slurm job {job_id} ended without a result ({how}).{tail_text}", kind=kind)
    died.exitcode = exitcode
    return died


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
