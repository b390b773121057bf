"""What a run shares with its executor: a directory and a job registry, never the store.

The driver builds a :class:`Workspace` from its store and hands it to
:meth:`Executor.prepare <memento.executors.Executor.prepare>`. Cluster engines check that
every worker sees :attr:`Workspace.directory` (:func:`check_shared_directory`), and engines
whose jobs outlive the driver (Slurm) keep their job ids in :attr:`Workspace.jobs`, so that a
driver run again collects them instead of submitting them twice.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from memento.exceptions import StoreError


class JobRegistry(Protocol):
    """Engine job ids by experiment key, kept where a later driver finds them.

    Safe to call from any thread, one call at a time (an executor serialises its own calls).
    """

    def record_jobs(self, executor: str, jobs: Iterable[tuple[str, str]]) -> None:
        """Remember ``(key, job_id)`` pairs submitted by ``executor``."""

    def find_jobs(self, executor: str, keys: Sequence[str]) -> dict[str, str]:
        """The job ids ``executor`` recorded for ``keys``: key -> job id."""

    def forget_jobs(self, keys: Sequence[str]) -> None:
        """Forget the job ids of ``keys`` (collected, or cancelled)."""


class NoJobRegistry:
    """A registry that keeps nothing (a workspace made without a store)."""

    def record_jobs(self, executor: str, jobs: Iterable[tuple[str, str]]) -> None:
        pass

    def find_jobs(self, executor: str, keys: Sequence[str]) -> dict[str, str]:
        return {}

    def forget_jobs(self, keys: Sequence[str]) -> None:
        pass


@dataclass(frozen=True)
class Workspace:
    """Where a run's files live and where engine job ids are kept.

    Example::

        executor.prepare(Workspace(Path("runs/grid.sqlite.d")))
    """

    #: Checkpoints and large values: every worker must read and write it at this path.
    #: ``None`` for a server store, which keeps them in its database (nothing to share).
    directory: Path | None
    jobs: JobRegistry = field(default_factory=NoJobRegistry)

    @property
    def checkpoint_directory(self) -> Path | None:
        return None if self.directory is None else self.directory / "checkpoints"


# -- is the workspace's directory shared? (engine-neutral) ------------------------------------
def check_shared_directory(
    directory: Path, run_everywhere: Callable[..., Mapping[str, Any]], engine: str
) -> None:
    """Fail early unless every worker can read and write ``directory``.

    ``run_everywhere(fn, *args)`` runs ``fn(*args)`` on every worker and returns
    ``{worker: result}``. The driver writes a random token in ``directory``; each worker must
    read that very token back (the same filesystem, not just the same path name) and create
    a file beside it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    token = os.urandom(16).hex()  # as random as uuid4().hex; uuid loads platform
    path = directory / f".probe-{token}"
    path.write_text(token)
    try:
        answers = run_everywhere(answer_probe, str(path), token)
    finally:
        path.unlink(missing_ok=True)
    bad = {str(w): a if isinstance(a, str) else repr(a) for w, a in answers.items() if a != ""}
    if bad:
        shown = "\n".join(f"  {w}: {a}" for w, a in sorted(bad.items())[:10])
        raise StoreError(
            f"{len(bad)} of {len(answers)} {engine} worker(s) cannot use the store's directory "
            f"{directory}, where checkpoints and large values live:\n{shown}\n"
            "Put the store (cache_path) on a filesystem that every worker mounts at the same "
            "path."
        )


def answer_probe(path: str, token: str) -> str:
    """On a worker: ``""`` if ``path`` holds ``token`` and a file can be written beside it."""
    host = socket.gethostname()
    try:
        if Path(path).read_text() != token:
            return f"{path} on {host} is not the file the driver wrote (another filesystem?)"
        reply = Path(f"{path}.{os.urandom(16).hex()}")
        reply.write_text(host)
        reply.unlink()
    except FileNotFoundError:
        return f"the file the driver wrote, {path}, is not visible on {host} (another filesystem?)"
    except OSError as exc:
        return f"{type(exc).__name__} on {host}: {exc}"
    return ""
