"""Provenance of a run: which code (git commit and uncommitted diff), which interpreter,
machine, command line, installed distributions and GPUs produced its results, recorded once
per run so that a result can be traced back and reproduced.

Collection runs in a background daemon thread (:class:`Collector`): git and ``nvidia-smi`` are
subprocesses, and reading what is installed takes ~10 ms, so a run of many quick experiments
is not slowed down waiting for them. Nothing here ever
raises for a missing git, a broken repository or a missing GPU tool: those fields are ``None``
(or empty). Environment variables are never recorded.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memento._util.distributions import distributions, installed, top_level_names
from memento.results.provenance import DIFF_LIMIT, Provenance, describe

#: Seconds one git command may take before its fields are given up.
GIT_TIMEOUT = 10.0
#: Seconds ``nvidia-smi`` may take (it can hang on a wedged driver).
GPU_TIMEOUT = 5.0
#: ``git diff HEAD`` as git's default configuration shows it (renames found, binary files as
#: "Binary files ... differ"), but by the plumbing command: the porcelain ``git diff``
#: refreshes the index (it rewrites ``.git/index`` after a mere ``touch``, even with
#: ``GIT_OPTIONAL_LOCKS=0``), and reads the user's diff settings (prefixes, external tools,
#: colours), which would change the text and its hash for the same code.
DIFF_COMMAND = (
    "diff-index",
    "--patch",
    "-M",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "HEAD",
)


@dataclass
class _GitState:
    """The git fields of a :class:`Provenance`; all ``None`` outside a repository."""

    root: str | None = None
    commit: str | None = None
    dirty: bool | None = None
    diff: str | None = None
    diff_hash: str | None = None


@dataclass
class _Machine:
    """The interpreter and machine fields of a :class:`Provenance`."""

    python: str = ""
    platform: str = ""
    host: str = ""


def _machine() -> _Machine:
    """This interpreter and machine (a few milliseconds: ``platform.platform()`` reads the
    interpreter binary for the libc version)."""
    return _Machine(_python_version(), platform.platform(), socket.gethostname())


class Collector:
    """Collects a run's provenance in a background daemon thread started by ``__init__`` (git
    and nvidia-smi are subprocesses; the module -> distribution mapping is read once per
    process, in that thread too), so that a run of 2,000 trivial experiments is not slowed
    (target <= 5 %). The thread imports nothing: see :func:`memento._util.distributions.installed`.

    The driver creates one at the start of a run, feeds it the module names its workers report
    (:meth:`add_modules`) and takes :meth:`result` once, when it records the run.
    """

    def __init__(self, source_file: str | None, argv: Sequence[str] | None = None) -> None:
        self._source_file = source_file
        self._command = list(argv) if argv is not None else _command_line()
        self._modules: set[str] = set()
        self._lock = threading.Lock()
        self._git = _GitState()
        self._machine = _Machine()
        self._gpus: list[str] = []
        self._thread = threading.Thread(
            target=self._collect, name="memento-provenance", daemon=True
        )
        self._thread.start()

    def add_modules(self, names: Iterable[str]) -> None:
        """Top-level module names imported in the workers (thread-safe, cheap: a set union)."""
        with self._lock:
            self._modules.update(names)

    def result(self, timeout: float = 10.0) -> Provenance:
        """The provenance, waiting up to ``timeout`` seconds for the background thread (what
        it has not finished by then is left empty). ``packages`` are the distributions of the
        modules imported in this process now and of those added by :meth:`add_modules`."""
        self._thread.join(timeout)
        with self._lock:
            names = set(self._modules)
        names.update(top_level_names(list(sys.modules)))
        git, machine = self._git, self._machine
        if not machine.python:  # the thread is stuck (in git?): the cheap parts now
            machine = _machine()
        return Provenance(
            git_root=git.root,
            git_commit=git.commit,
            dirty=git.dirty,
            diff=git.diff,
            diff_hash=git.diff_hash,
            python=machine.python,
            platform=machine.platform,
            host=machine.host,
            command=list(self._command),
            packages=distributions(names),
            gpus=list(self._gpus),
        )

    def _collect(self) -> None:
        """The background thread: each part is published whole when done (one attribute
        assignment), so :meth:`result` after a timeout sees either all of it or nothing."""
        for step in (self._collect_machine, self._collect_git, installed, self._collect_gpus):
            try:
                step()
            except Exception:  # provenance is best effort: never break a run over it
                pass

    def _collect_machine(self) -> None:
        """Interpreter, platform and host."""
        self._machine = _machine()

    def _collect_gpus(self) -> None:
        """GPUs last: ``nvidia-smi`` can take seconds, and the rest need not wait for it."""
        self._gpus = gpu_names()

    def _collect_git(self) -> None:
        """The git state of the source file's repository."""
        self._git = _git_state(self._source_file)


def _command_line() -> list[str]:
    """The command as given: ``sys.orig_argv`` (interpreter and its options, script,
    arguments) where Python has it, else ``sys.argv``."""
    return list(getattr(sys, "orig_argv", None) or sys.argv)


def _python_version() -> str:
    """E.g. ``"3.11.7 (CPython)"``."""
    return f"{platform.python_version()} ({platform.python_implementation()})"


# -- git ------------------------------------------------------------------------------------


def _git_state(source_file: str | None) -> _GitState:
    """The git fields for ``source_file``'s repository (the current directory's when there is
    no such file). Never raises: whatever git cannot tell stays ``None``."""
    source = source_file if source_file and os.path.isfile(source_file) else None
    directory = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()
    root = _git(directory, "rev-parse", "--show-toplevel")
    if root is None:
        return _GitState()
    state = _GitState(root=root.decode(errors="replace").strip() or None)
    head = _git(directory, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if head is None:  # no commit yet: nothing to diff against
        return state
    state.commit = head.decode(errors="replace").strip()
    diff = _git(directory, *DIFF_COMMAND)
    if diff is None:
        return state
    untracked = source is not None and not _is_tracked(directory, os.path.basename(source))
    state.dirty = bool(diff) or untracked
    if diff:
        state.diff, state.diff_hash = capped_diff(diff), hashlib.sha256(diff).hexdigest()
    return state


def capped_diff(diff: bytes, limit: int = DIFF_LIMIT) -> str:
    """The diff as text, cut at ``limit`` characters with a marker saying how many more there
    were, so that a huge generated-file change cannot bloat the store."""
    text = diff.decode("utf-8", errors="replace")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit} more characters]"


def _is_tracked(directory: str, name: str) -> bool:
    """Whether file ``name`` in ``directory`` is in git's index (committed or staged)."""
    return _git(directory, "ls-files", "--error-unmatch", "--", name) is not None


def _git(directory: str, *args: str) -> bytes | None:
    """The stdout of ``git -C directory args``, ``None`` when git is missing, fails or times
    out. ``GIT_OPTIONAL_LOCKS=0``: reading the state must not rewrite the index (which would
    race with the user's own git commands)."""
    env = dict(os.environ)  # git needs HOME, PATH...; nothing of it is recorded
    env["GIT_OPTIONAL_LOCKS"] = "0"
    return _output(["git", "-C", directory, *args], GIT_TIMEOUT, env)


def _output(command: list[str], timeout: float, env: dict[str, str] | None = None) -> bytes | None:
    """``command``'s stdout when it exits 0 within ``timeout`` seconds, else ``None``."""
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout if done.returncode == 0 else None


# -- GPUs -----------------------------------------------------------------------------------


def gpu_names() -> list[str]:
    """GPU model names, one per GPU, from ``nvidia-smi``; empty without it (or when it fails)."""
    if shutil.which("nvidia-smi") is None:
        return []
    out = _output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], GPU_TIMEOUT)
    if out is None:
        return []
    lines = out.decode(errors="replace").splitlines()
    return [line.strip() for line in lines if line.strip()]


__all__ = [
    "DIFF_LIMIT",
    "Collector",
    "Provenance",
    "capped_diff",
    "describe",
    "distributions",
    "gpu_names",
]
