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
import time
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
    """This interpreter and machine (well under a millisecond: no subprocess)."""
    return _Machine(_python_version(), platform_name(), socket.gethostname())


def platform_name() -> str:
    """``platform.platform()``'s text, e.g. ``Linux-6.1.0-x86_64-with-glibc2.36``, without
    its cost on Linux: there it runs ``uname -p`` in a subprocess (to fill the processor field
    of ``platform.uname()``, which the text then leaves out: ``unknown`` or the machine
    again), a fork of the driver at the moment its worker pool starts. The kernel's
    ``os.uname()`` and libc's ``confstr`` give the same parts at once. Elsewhere it is
    ``platform.platform()`` itself.

    >>> platform_name() == platform.platform()  # on Linux and elsewhere alike
    True
    """
    if not sys.platform.startswith("linux"):
        return platform.platform()
    uname = os.uname()
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    name, _, version = libc.partition(" ")
    if not (name and version):  # not glibc (musl...): platform's own reading of the binary
        return platform.platform()
    return _platform_text(uname.sysname, uname.release, uname.machine, "with", name + version)


def _platform_text(*parts: str) -> str:
    """The parts joined as ``platform.platform()`` joins them: by ``-``, with spaces made
    ``_``, characters unsafe in a file name made ``-``, ``unknown`` dropped, no ``--``."""
    text = "-".join(part.strip() for part in parts if part)
    text = text.replace(" ", "_")
    for unsafe in '/\\:;"()':
        text = text.replace(unsafe, "-")
    text = text.replace("unknown", "")
    while "--" in text:
        text = text.replace("--", "-")
    return text.rstrip("-")


class Collector:
    """Collects a run's provenance in background daemon threads started by ``__init__``, so
    that a run of 2,000 trivial experiments is not slowed (target <= 5 %): one runs git (its
    subprocesses wait, holding no GIL), the other reads the machine, the module ->
    distribution mapping (once per process; CPU) and then asks ``nvidia-smi``. Side by side,
    a short run waits at its end (:meth:`result`) for the longer of the two, not their sum.
    The threads import nothing: see :func:`memento._util.distributions.installed`.

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
        self._threads = [
            threading.Thread(target=target, name=f"memento-provenance-{part}", daemon=True)
            for part, target in (("git", self._collect_git), ("machine", self._collect))
        ]
        for thread in self._threads:
            thread.start()

    def add_modules(self, names: Iterable[str]) -> None:
        """Top-level module names imported in the workers (thread-safe, cheap: a set union)."""
        with self._lock:
            self._modules.update(names)

    def result(self, timeout: float = 10.0) -> Provenance:
        """The provenance, waiting up to ``timeout`` seconds for the background thread (what
        it has not finished by then is left empty). ``packages`` are the distributions of the
        modules imported in this process now and of those added by :meth:`add_modules`."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
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
        """The machine thread: each part is published whole when done (one attribute
        assignment), so :meth:`result` after a timeout sees either all of it or nothing."""
        for step in (self._collect_machine, installed, self._collect_gpus):
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
        """The git thread: the git state of the source file's repository."""
        try:
            self._git = _git_state(self._source_file)
        except Exception:  # best effort, as in _collect
            pass


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
    if not _may_be_in_a_repository(directory):
        return _GitState()
    # Root and commit in one git process (each costs a fork of this big process); it fails
    # outside a repository and in one with no commit yet, told apart by asking for the root.
    both = _git(directory, "rev-parse", "--show-toplevel", "--verify", "--quiet", "HEAD^{commit}")
    if both is None:
        root = _git(directory, "rev-parse", "--show-toplevel")
        if root is None:
            return _GitState()
        return _GitState(root=root.decode(errors="replace").strip() or None)
    root_text, _, head = both.decode(errors="replace").rstrip("\n").rpartition("\n")
    state = _GitState(root=root_text.strip() or None, commit=head.strip())
    diff = _git(directory, *DIFF_COMMAND)
    if diff is None:
        return state
    untracked = source is not None and not _is_tracked(directory, os.path.basename(source))
    state.dirty = bool(diff) or untracked
    if diff:
        state.diff, state.diff_hash = capped_diff(diff), hashlib.sha256(diff).hexdigest()
    return state


def _may_be_in_a_repository(directory: str) -> bool:
    """Whether git could find a repository for ``directory``: a ``.git`` in it or above it,
    or ``GIT_DIR`` set. Outside one (a script in /tmp, an installed package), this saves the
    git process that would only say so (a fork of the driver while its pool starts)."""
    if os.environ.get("GIT_DIR"):
        return True
    here = os.path.abspath(directory)
    while True:
        if os.path.lexists(os.path.join(here, ".git")):
            return True
        parent = os.path.dirname(here)
        if parent == here:
            return False
        here = parent


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
