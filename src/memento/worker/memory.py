"""Memory per experiment: the watch that stops an experiment over ``memory_limit``, and the
evidence that the kernel's OOM killer ended a worker.

In a worker, :class:`MemoryWatch` samples the resident memory of the experiment's process
tree (the worker and every process it started, :func:`tree_rss`) from a daemon thread. Over
the limit, it leaves a report for the driver (``<report_dir>/<key>.memory``), kills the
tree's other processes and ends the worker with :data:`OOM_EXIT_CODE`; the driver sees a dead
worker with that status, reads the report (:func:`read_report`) and records an ``oom``
failure that names the limit and the memory used.

A worker the kernel killed instead (no report; SIGKILL) is told apart, as far as it can be,
by :func:`looks_like_kernel_oom`: the OOM kill counter of the cgroup went up
(:func:`oom_kill_count`, read before and after), or the memory it reached was near what the
machine or the cgroup allows (:func:`memory_ceiling`). Linux only; elsewhere the watch
measures nothing (``tree_rss`` is 0) and the counters are unknown (``None``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memento._util.files import atomic_write

#: The exit status of a worker whose memory watch stopped its experiment. Chosen to collide
#: with no status that means something else: not 0-2 (success, errors, usage), not the
#: ``sysexits.h`` range 64-78, not 126-165 (the shell's "cannot run", "not found" and
#: 128+signal, e.g. 137 for SIGKILL, 143 for SIGTERM), not 255.
OOM_EXIT_CODE = 117

#: Where the processes are (a parameter of each function, so tests may point it elsewhere).
PROC = "/proc"
#: Where the cgroup filesystems are mounted.
CGROUP_ROOT = "/sys/fs/cgroup"

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

#: The shortest and longest wait between two samples, in seconds.
_SHORTEST = 0.005
_LONGEST = 0.1


# -- the process tree --------------------------------------------------------------------------
def _read(path: str) -> bytes:
    """A small /proc file's content, with one open and one read (no buffered file object)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _children(pid: int, proc: str) -> list[int]:
    """The direct children of ``pid`` (of all its threads); [] when it is gone."""
    found: list[int] = []
    try:
        tids = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            found.extend(map(int, _read(f"{proc}/{pid}/task/{tid}/children").split()))
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    return found


def descendants(pid: int | None = None, *, proc: str = PROC) -> list[int]:
    """Every process ``pid`` (default: this one) started, and theirs, depth first.

    Read from ``/proc/<pid>/task/<tid>/children`` (Linux >= 4.2 with ``CONFIG_PROC_CHILDREN``,
    as every distribution builds it). A process that detached itself (a daemon that forked
    twice, reparented to init) is no longer a descendant and is not found.

    >>> import subprocess
    >>> child = subprocess.Popen(["sleep", "5"])
    >>> child.pid in descendants()
    True
    """
    root = os.getpid() if pid is None else pid
    found: list[int] = []
    stack = _children(root, proc)
    seen = {root}
    while stack:
        child = stack.pop()
        if child in seen:  # a reused pid seen twice in one walk
            continue
        seen.add(child)
        found.append(child)
        stack.extend(_children(child, proc))
    return found


def _rss(pid: int, proc: str) -> int:
    """Resident memory of ``pid`` in bytes; 0 when it is gone (or a zombie)."""
    try:
        return int(_read(f"{proc}/{pid}/statm").split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _tree(pid: int, proc: str) -> tuple[int, list[int]]:
    """The resident memory of ``pid`` and its descendants, and the descendants."""
    children = descendants(pid, proc=proc)
    return _rss(pid, proc) + sum(_rss(child, proc) for child in children), children


def tree_rss(pid: int | None = None, *, proc: str = PROC) -> int:
    """Resident memory in bytes of process ``pid`` (default: this one) and all its
    descendants; 0 where /proc cannot be read.

    The sum of each process's RSS (``/proc/<pid>/statm``), so memory two processes share
    (libraries, copy-on-write pages after ``fork``, shared memory) counts once per process:
    the total may exceed what the kernel charges, never fall short of it. A process that
    ends during the walk counts 0. A few reads per process: about 0.1 ms for a worker with a
    handful of threads and children.

    >>> tree_rss() > 0
    True
    """
    return _tree(os.getpid() if pid is None else pid, proc)[0]


# -- the watch ---------------------------------------------------------------------------------
@dataclass
class _Armed:
    """What the poller checks: the watch of the experiment now running."""

    watch: MemoryWatch
    limit: int
    key: str
    report_dir: str | None
    #: This process's own resident memory when the experiment began: not the experiment's.
    #: (A forked worker starts with its parent's pages resident; they count once, there.)
    base: int = 0
    peak: int = 0
    #: The last sample and when it was taken, for the rate at which memory grows.
    last: int = 0
    when: float = 0.0


class _Poller:
    """The one sampling thread of a worker process, shared by every experiment's watch, so
    that starting and stopping a watch costs a lock and a notify, not a thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.armed: _Armed | None = None
        self.pid = os.getpid()
        self.proc = PROC
        self.thread = threading.Thread(target=self._run, name="memento-memory-watch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            with self.lock:
                while self.armed is None:
                    self.wake.wait()
                armed = self.armed
            # Sampled without the lock (the GIL is let go in every read): start and stop
            # never wait for a walk of the tree.
            rss, children = _tree(self.pid, self.proc)
            rss = max(0, rss - armed.base)
            with self.lock:
                if self.armed is not armed:
                    continue  # stopped (or replaced) during the walk: this sample is not its
                armed.peak = max(armed.peak, rss)
                if rss > armed.limit:
                    _stop_experiment(armed, rss, children, self.proc)  # never returns
                now = time.monotonic()
                rate = (rss - armed.last) / max(now - armed.when, 1e-6)
                armed.last, armed.when = rss, now
                # Waiting on the condition lets go of the lock; stop() wakes it early.
                self.wake.wait(_next_wait(rss, armed.limit, rate))


def _next_wait(rss: int, limit: int, rate: float) -> float:
    """Seconds until the next sample: at most 0.1 s far below the limit (0.05 s past half of
    it, 0.02 s past 80%), and, while memory grows at ``rate`` bytes a second, half the time
    it would take to reach the limit (at least 5 ms): a fast allocator is sampled often, an
    idle experiment costs ten samples a second.

    >>> _next_wait(10, 100, 0.0), _next_wait(90, 100, 0.0), _next_wait(10, 100, 1e9)
    (0.1, 0.02, 0.005)
    """
    longest = _LONGEST if rss < limit / 2 else 0.05 if rss < limit * 0.8 else 0.02
    if rate <= 0:
        return longest
    return max(_SHORTEST, min(longest, (limit - rss) / rate / 2))


_poller: _Poller | None = None
_poller_lock = threading.Lock()


def _the_poller() -> _Poller:
    """This process's poller, started on first use (again in a forked child: threads do not
    survive ``fork``)."""
    global _poller
    with _poller_lock:
        if _poller is None or _poller.pid != os.getpid():
            _poller = _Poller()
        return _poller


def _stop_experiment(armed: _Armed, rss: int, children: list[int], proc: str) -> None:
    """Over the limit: leave the report, kill the tree, end this worker. Called with the
    poller's lock held, so that a ``stop()`` that comes now waits and never returns."""
    if armed.report_dir is not None:
        report = {"limit": armed.limit, "rss": rss, "key": armed.key}
        try:
            path = Path(armed.report_dir) / f"{armed.key}.memory"
            atomic_write(path, json.dumps(report).encode())
        except OSError:
            pass  # the driver still sees OOM_EXIT_CODE
    # Twice: a process forked between the walk and its parent's kill is found the second time.
    for _ in range(2):
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        children = descendants(os.getpid(), proc=proc)
    os._exit(OOM_EXIT_CODE)


class MemoryWatch:
    """Stops the running experiment when its process tree goes over a memory limit.

    ``start(limit, key, report_dir)`` before the experiment, ``stop()`` after it (in a
    ``finally``). Between the two, a daemon thread samples :func:`tree_rss` of this process,
    less this process's own resident memory when the watch started (what the worker held
    before the experiment: its interpreter, its libraries, and in a forked worker the pages
    it shares with the driver), every 5-100 ms (more often near the limit and while memory
    grows fast). When the tree is over ``limit`` bytes, it writes
    ``{"limit": ..., "rss": ..., "key": ...}`` to ``<report_dir>/<key>.memory``
    (atomically; not when ``report_dir`` is ``None``), SIGKILLs every descendant process
    and ends this process with ``os._exit(OOM_EXIT_CODE)``: meant for a worker process of
    its own, never the driver.

    A stopped watch never fires: ``stop()`` and the decision to kill take the same lock, and
    a sample taken before ``stop()`` is dropped after it. One thread serves every watch of a
    process, so a start and a stop cost two samples of the tree (about 0.1 ms), no thread.

    Memory that grows past the limit and back between two samples goes unseen, and so does
    an experiment that ends within its first samples (``stop()`` then returns a peak over
    the limit: the result stands). The thread needs the GIL for a sample: a C call that
    holds it for long (and allocates meanwhile) is seen only after it; what the kernel's
    OOM killer does then is told by :func:`looks_like_kernel_oom`.

    >>> watch = MemoryWatch()
    >>> watch.start(8 * 2**30, "a1b2c3", None)
    >>> data = bytearray(10 * 2**20)
    >>> watch.stop() > 10 * 2**20
    True
    """

    __slots__ = ("_armed",)

    def __init__(self) -> None:
        self._armed: _Armed | None = None

    def start(self, limit: int, key: str, report_dir: str | None) -> None:
        """Watch this process's tree against ``limit`` bytes for experiment ``key``. A watch
        of an earlier experiment still running in this process is replaced (one process runs
        one experiment at a time)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(
                f"MemoryWatch.start: limit must be a positive int of bytes, got {limit!r}"
            )
        poller = _the_poller()
        base = _rss(poller.pid, poller.proc)
        rss = max(0, tree_rss(poller.pid, proc=poller.proc) - base)  # the start is a sample
        armed = _Armed(self, limit, key, report_dir, base, rss, rss, time.monotonic())
        with poller.lock:
            self._armed = poller.armed = armed
            poller.wake.notify()

    def stop(self) -> int:
        """Stop watching; the peak resident memory of the tree seen in bytes (a last sample
        included, so a short experiment has one too), 0 when the watch was not started."""
        armed = self._armed
        if armed is None:
            return 0
        poller = _the_poller()
        with poller.lock:
            if poller.armed is armed:
                poller.armed = None
                poller.wake.notify()
        self._armed = None
        return max(armed.peak, tree_rss(poller.pid, proc=poller.proc) - armed.base)


def read_report(report_dir: str | os.PathLike[str], key: str) -> dict[str, Any] | None:
    """The report the memory watch of experiment ``key`` left in ``report_dir``
    (``{"limit": ..., "rss": ..., "key": ...}``), removed once read; ``None`` when there is
    none (or it cannot be read).

    >>> read_report("/nonexistent", "a1b2c3") is None
    True
    """
    path = Path(report_dir) / f"{key}.memory"
    try:
        text = path.read_bytes()
    except OSError:
        return None
    try:
        path.unlink()
    except OSError:
        pass
    try:
        report = json.loads(text)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


# -- the kernel's OOM killer -------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryCgroup:
    """A process's memory cgroup: its directory and the cgroup version (1 or 2)."""

    path: Path
    version: int


def memory_cgroup(
    pid: int | str = "self", *, proc: str = PROC, cgroup_root: str = CGROUP_ROOT
) -> MemoryCgroup | None:
    """The memory cgroup of process ``pid``, from ``/proc/<pid>/cgroup``; ``None`` when
    unknown (not Linux, no memory controller).

    cgroup v1 (a ``N:...memory...:/path`` line: the memory controller has a hierarchy of its
    own) is looked for at ``<cgroup_root>/memory/<path>``; cgroup v2 (the ``0::/path`` line)
    at ``<cgroup_root>/<path>``, or ``<cgroup_root>/unified/<path>`` (hybrid mounts). When
    the path is not found there (a container that sees its own cgroup as the mount's root),
    the mount's root is taken.

    >>> memory_cgroup(proc="/nonexistent") is None
    True
    """
    try:
        lines = Path(f"{proc}/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    root = Path(cgroup_root)
    v2: str | None = None
    for line in lines:
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            return _existing((root / "memory", path), "memory.limit_in_bytes", 1)
    if v2 is None:
        return None
    return _existing((root, v2), "memory.max", 2) or _existing(
        (root / "unified", v2), "memory.max", 2
    )


def _existing(where: tuple[Path, str], marker: str, version: int) -> MemoryCgroup | None:
    mount, path = where
    for candidate in (mount / path.lstrip("/"), mount):
        if (candidate / marker).exists():
            return MemoryCgroup(candidate, version)
    return None


def _number(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None  # "max"


def _field(path: Path, name: str) -> int | None:
    """The value of the ``name value`` line of a cgroup or /proc file; ``None`` if absent."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0].rstrip(":") == name:
            return _number(parts[1])
    return None


def oom_kill_count(
    cgroup: MemoryCgroup | None = None, *, proc: str = PROC, cgroup_root: str = CGROUP_ROOT
) -> int | None:
    """How many processes the kernel's OOM killer has killed in ``cgroup`` (default: this
    process's memory cgroup); read it before and after, and compare.

    cgroup v2: ``oom_kill`` of ``memory.events`` (which counts the cgroup's descendants too);
    v1: ``oom_kill`` of ``memory.oom_control`` (Linux >= 4.13; that cgroup's own kills only).
    Without either, the machine's count (``oom_kill`` of ``/proc/vmstat``), which also counts
    kills elsewhere on the machine. ``None`` when nothing tells.

    >>> oom_kill_count(proc="/nonexistent", cgroup_root="/nonexistent") is None
    True
    """
    if cgroup is None:
        cgroup = memory_cgroup(proc=proc, cgroup_root=cgroup_root)
    count: int | None = None
    if cgroup is not None and cgroup.version == 2:
        count = _field(cgroup.path / "memory.events", "oom_kill")
    elif cgroup is not None:
        count = _field(cgroup.path / "memory.oom_control", "oom_kill")
    if count is None:
        count = _field(Path(proc) / "vmstat", "oom_kill")
    return count


def memory_ceiling(
    cgroup: MemoryCgroup | None = None, *, proc: str = PROC, cgroup_root: str = CGROUP_ROOT
) -> int:
    """The most memory the processes of ``cgroup`` (default: this process's) may use, in
    bytes: the machine's ``MemTotal``, or the cgroup's limit when it is lower.

    v2: the lowest ``memory.max`` of the cgroup and its ancestors; v1: the
    ``hierarchical_memory_limit`` of ``memory.stat`` (which includes the ancestors'), else
    ``memory.limit_in_bytes``. "No limit" (``max``, or v1's huge number) is the machine's.

    >>> memory_ceiling() > 0
    True
    """
    total = _field(Path(proc) / "meminfo", "MemTotal")
    ceiling = total * 1024 if total else _physical_memory()
    if cgroup is None:
        cgroup = memory_cgroup(proc=proc, cgroup_root=cgroup_root)
    if cgroup is None:
        return ceiling
    limits: list[int | None] = []
    if cgroup.version == 2:
        directory, top = cgroup.path, Path(cgroup_root)
        while True:
            try:
                limits.append(_number((directory / "memory.max").read_text().strip()))
            except OSError:
                break
            if directory in (top, top / "unified") or directory.parent == directory:
                break
            directory = directory.parent
    else:
        limit = _field(cgroup.path / "memory.stat", "hierarchical_memory_limit")
        if limit is None:
            try:
                limit = _number((cgroup.path / "memory.limit_in_bytes").read_text().strip())
            except OSError:
                limit = None
        limits.append(limit)
    return min([ceiling, *(limit for limit in limits if limit is not None and limit > 0)])


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1


def looks_like_kernel_oom(
    exitcode: int | None,
    peak_rss: int | None,
    kills_before: int | None,
    kills_now: int | None,
    ceiling: int,
) -> bool:
    """Whether a worker that ended with ``exitcode`` was, as far as can be told, killed by
    the kernel's OOM killer: it died of SIGKILL (``-9``) and either the OOM kill count
    (:func:`oom_kill_count`, before the experiment and now) went up, or the experiment's
    peak memory (``peak_rss``, when known) reached 90% of ``ceiling``
    (:func:`memory_ceiling`). A SIGKILL from anyone else (``kill -9``, a scheduler) with
    neither sign is not an OOM.

    >>> looks_like_kernel_oom(-9, None, 3, 4, 2**34)
    True
    >>> looks_like_kernel_oom(-9, 2**30, 3, 3, 2**34), looks_like_kernel_oom(1, None, 3, 4, 2**34)
    (False, False)
    """
    if exitcode != -signal.SIGKILL:
        return False
    if kills_before is not None and kills_now is not None and kills_now > kills_before:
        return True
    return peak_rss is not None and ceiling > 0 and peak_rss >= 0.9 * ceiling


__all__ = [
    "CGROUP_ROOT",
    "OOM_EXIT_CODE",
    "PROC",
    "MemoryCgroup",
    "MemoryWatch",
    "descendants",
    "looks_like_kernel_oom",
    "memory_ceiling",
    "memory_cgroup",
    "oom_kill_count",
    "read_report",
    "tree_rss",
]
