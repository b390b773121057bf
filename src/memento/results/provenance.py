"""A run's provenance as the store keeps it and ``memento show`` prints it: which commit (and
uncommitted diff), interpreter, machine, command line, distributions and GPUs produced its
results (collected by :mod:`memento.run.provenance`)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Most characters of ``git diff HEAD`` kept; the hash always covers the whole diff.
DIFF_LIMIT = 100_000


@dataclass
class Provenance:
    """Where a run's results came from. Git fields are ``None`` when the source file is not in
    a repository, git is missing or fails, or (commit, dirty, diff) the repository has no
    commit yet."""

    #: Top level of the repository holding the experiment's source file.
    git_root: str | None
    #: ``HEAD`` sha.
    git_commit: str | None
    #: Tracked changes against ``HEAD`` (staged or not), or the source file itself untracked.
    #: Other untracked files do not count: a store file often lives in the repository.
    dirty: bool | None
    #: ``git diff HEAD`` as text, cut at :data:`DIFF_LIMIT` characters with a trailing
    #: ``"\n[... N more characters]"`` marker; ``None`` when there is no diff.
    diff: str | None
    #: sha256 hex of the whole, uncut diff bytes; ``None`` when there is no diff.
    diff_hash: str | None
    #: Version and implementation, e.g. ``"3.11.7 (CPython)"``.
    python: str
    #: ``platform.platform()``.
    platform: str
    #: ``socket.gethostname()``.
    host: str
    #: The command line: ``sys.orig_argv`` (interpreter, script, arguments).
    command: list[str]
    #: ``{distribution: version}`` of the modules imported by the driver and the workers.
    packages: dict[str, str] = field(default_factory=dict)
    #: GPU model names from ``nvidia-smi``; empty without it.
    gpus: list[str] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        """A JSON-able dict of all fields, for the store (lists and dicts stay lists and dicts,
        copied so that the row does not alias this object)."""
        return {
            "git_root": self.git_root,
            "git_commit": self.git_commit,
            "dirty": self.dirty,
            "diff": self.diff,
            "diff_hash": self.diff_hash,
            "python": self.python,
            "platform": self.platform,
            "host": self.host,
            "command": list(self.command),
            "packages": dict(self.packages),
            "gpus": list(self.gpus),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Provenance:
        """The provenance of a stored row: the inverse of :meth:`as_row`. Tolerant of what a
        store may hand back: ``command``/``packages``/``gpus`` as JSON text, ``dirty`` as 0/1,
        and missing keys (an older or newer row) as empty values."""
        dirty = row.get("dirty")
        return cls(
            git_root=row.get("git_root"),
            git_commit=row.get("git_commit"),
            dirty=None if dirty is None else bool(dirty),
            diff=row.get("diff"),
            diff_hash=row.get("diff_hash"),
            python=str(row.get("python") or ""),
            platform=str(row.get("platform") or ""),
            host=str(row.get("host") or ""),
            command=[str(a) for a in _decoded(row.get("command"), [])],
            packages={str(k): str(v) for k, v in _decoded(row.get("packages"), {}).items()},
            gpus=[str(g) for g in _decoded(row.get("gpus"), [])],
        )


def _decoded(value: Any, empty: Any) -> Any:
    """``value`` with JSON text decoded, ``empty`` for ``None``/empty text."""
    if value is None or value == "":
        return empty
    if isinstance(value, (str, bytes)):
        return json.loads(value)
    return value


def describe(p: Provenance | Mapping[str, Any]) -> list[str]:
    """Lines for ``memento show KEY``: commit (and whether and how dirty), python, platform,
    host, command, all packages sorted, and GPUs if any. No environment variables anywhere:
    there are none to show."""
    prov = p if isinstance(p, Provenance) else Provenance.from_row(p)
    lines = [_commit_line(prov)]
    lines.append(f"python  {prov.python}")
    lines.append(f"platform  {prov.platform}")
    lines.append(f"host  {prov.host}")
    lines.append(f"command  {shlex.join(prov.command)}")
    packages = sorted(prov.packages.items(), key=lambda item: item[0].lower())
    listed = ", ".join(f"{name} {version}" for name, version in packages)
    lines.append(f"packages  {listed or '(none recorded)'}")
    if prov.gpus:
        lines.append(f"gpus  {', '.join(prov.gpus)}")
    return lines


def _commit_line(prov: Provenance) -> str:
    """``commit  <sha> (clean)``, ``(dirty: diff sha256 <12 hex>, N lines)``, or why there is
    no commit."""
    if prov.git_root is None:
        return "not in a git repository"
    if prov.git_commit is None:
        return f"commit  none yet (repository {prov.git_root})"
    if prov.dirty is None:
        return f"commit  {prov.git_commit}"
    if not prov.dirty:
        return f"commit  {prov.git_commit} (clean)"
    if prov.diff is None or prov.diff_hash is None:
        return f"commit  {prov.git_commit} (dirty: the source file is not tracked)"
    return (
        f"commit  {prov.git_commit} (dirty: diff sha256 {prov.diff_hash[:12]}, {_lines(prov.diff)})"
    )


def _lines(diff: str) -> str:
    """``"N lines"`` of a stored diff; ``"N+ lines"`` when it was cut."""
    match = _CUT_MARKER.search(diff)
    text = diff[: match.start()] if match else diff
    count = text.count("\n") + (0 if text.endswith("\n") else 1)
    return f"{count}+ lines" if match else f"{count} lines"


_CUT_MARKER = re.compile(r"\n\[\.\.\. \d+ more characters\]\Z")


__all__ = ["DIFF_LIMIT", "Provenance", "describe"]
