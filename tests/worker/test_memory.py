"""The memory watch and the kernel's OOM evidence.

The watch is tested on real processes that really allocate (each test's processes stay
under about 400 MiB): a hog is stopped with ``OOM_EXIT_CODE`` and leaves its report, its own
children die with it, an experiment under the limit runs to its end, and a stopped watch
never fires. Every watch runs in a child Python process, never in pytest's own: a watch that
fires ends its process.

The kernel side reads /proc and /sys: on a fake tree in a tmp dir (a mock of the kernel,
since nothing can safely trigger an OOM of the whole machine here), and, where this process
may create a memory cgroup (root, cgroup v1 or v2), on a real cgroup with a small limit and
a real process the kernel's OOM killer kills.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from memento.worker.memory import (
    OOM_EXIT_CODE,
    MemoryCgroup,
    descendants,
    looks_like_kernel_oom,
    memory_ceiling,
    memory_cgroup,
    oom_kill_count,
    read_report,
    tree_rss,
)

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc"),
]

MiB = 2**20

#: A process that allocates ``argv[1]`` MiB (pages touched), says so on stdout and waits
#: for its stdin to close (at most 30 s, so that nothing outlives a failed test).
ALLOCATE = """
import select, sys
data = b"x" * (int(sys.argv[1]) * 2**20)
print("ready", flush=True)
select.select([sys.stdin], [], [], 30)
"""

#: Under a MemoryWatch of ``limit`` bytes: optionally start a child that allocates
#: ``child_mib`` MiB (its pid written to ``pid_file``), allocate 20 MiB chunks up to
#: ``total_mib`` MiB, keep them for ``hold`` seconds (the experiment's work), and print the
#: peak that ``stop()`` returns.
HOG = """
import subprocess, sys, threading
from pathlib import Path
from memento.worker.memory import MemoryWatch

report_dir, limit, child_mib, pid_file, total_mib, hold = sys.argv[1:7]
watch = MemoryWatch()
watch.start(int(limit), "hogkey", None if report_dir == "-" else report_dir)
if int(child_mib):
    child = subprocess.Popen(
        [sys.executable, "-c", sys.argv[7], child_mib], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    Path(pid_file).write_text(str(child.pid))
    assert child.stdout.readline() == "ready\\n"
chunks = []
for _ in range(int(total_mib) // 20):
    chunks.append(b"x" * (20 * 2**20))
threading.Event().wait(float(hold))
print(watch.stop(), flush=True)
"""


def _hog(
    reports: Path | str, limit: int, total_mib: int, child_mib: int = 0, hold: float = 5
) -> subprocess.CompletedProcess[str]:
    pid_file = Path(reports) / "pid" if reports != "-" else "-"
    return _python(HOG, reports, limit, child_mib, pid_file, total_mib, hold, ALLOCATE)


def _python(code: str, *args: object, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_until_gone(pid: int, deadline: float = 10) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not _running(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def no_strays() -> Iterator[list[int]]:
    """Pids a test started indirectly: killed at the end if they still run."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


# -- tree_rss ----------------------------------------------------------------------------------
def test_tree_rss_counts_children_and_grandchildren() -> None:
    before = tree_rss()
    # A child of 60 MiB that starts a grandchild of 60 MiB.
    parent_code = (
        "import subprocess, sys\n"
        f"g = subprocess.Popen([sys.executable, '-c', {ALLOCATE!r}, '60'], "
        "stdout=subprocess.PIPE, text=True)\n"
        "assert g.stdout.readline() == 'ready\\n'\n"
        "print(g.pid, flush=True)\n"
        f"exec({ALLOCATE!r}.replace('sys.argv[1]', '60'))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", parent_code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        assert child.stdout.readline() == "ready\n"
        assert {child.pid, grandchild} <= set(descendants())
        assert descendants(child.pid) == [grandchild]
        assert tree_rss(child.pid) >= 120 * MiB
        assert tree_rss() - before >= 120 * MiB
        assert tree_rss(grandchild) < tree_rss(child.pid) - 55 * MiB
    finally:
        child.kill()
        child.communicate()  # closes its stdin, which the grandchild shares
    assert _wait_until_gone(grandchild)  # its stdin closed with its parent's death
    assert tree_rss(child.pid) == 0  # gone: counts nothing, raises nothing
    assert descendants(child.pid) == []


def test_tree_rss_of_a_process_that_is_not_there() -> None:
    assert tree_rss(2**22 + 12345) == 0  # above the largest pid Linux gives
    assert tree_rss(proc="/nonexistent") == 0
    assert descendants(proc="/nonexistent") == []


# -- the watch ---------------------------------------------------------------------------------
@pytest.fixture
def reports(tmp_path: Path) -> Path:
    """The run's report folder, empty."""
    path = tmp_path / "reports"
    path.mkdir()
    return path


def test_a_hog_is_stopped_with_its_exit_code_and_leaves_a_report(reports: Path) -> None:
    limit = 200 * MiB
    done = _hog(reports, limit, 400)
    assert done.returncode == OOM_EXIT_CODE, done.stderr
    assert done.stdout == ""  # stopped before the end
    report = read_report(str(reports), "hogkey")
    assert report is not None
    assert report["limit"] == limit
    assert report["rss"] > limit
    assert report["key"] == "hogkey"
    assert not (reports / "hogkey.memory").exists()  # removed once read
    assert read_report(str(reports), "hogkey") is None
    assert list(reports.iterdir()) == []  # no temp file left


def test_the_tree_counts_and_the_hogs_children_die_with_it(
    reports: Path, no_strays: list[int]
) -> None:
    # The hog itself allocates 100 MiB, under the limit; its child's 150 MiB put the tree over.
    limit = 200 * MiB
    done = _hog(reports, limit, 100, child_mib=150)
    child = int((reports / "pid").read_text())
    no_strays.append(child)
    assert done.returncode == OOM_EXIT_CODE, done.stderr
    assert _wait_until_gone(child)
    report = read_report(reports, "hogkey")
    assert report is not None and report["rss"] > limit


def test_under_the_limit_the_experiment_runs_to_its_end(reports: Path) -> None:
    done = _hog(reports, 300 * MiB, 100, hold=0.3)
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout)
    assert 100 * MiB < peak < 300 * MiB  # the chunks, and the interpreter's own memory
    assert read_report(reports, "hogkey") is None


def test_no_report_dir_still_stops_the_hog() -> None:
    done = _hog("-", 150 * MiB, 300)
    assert done.returncode == OOM_EXIT_CODE, done.stderr
    assert done.stdout == ""


RACE = """
import sys, threading
from memento.worker.memory import MemoryWatch
ballast = b"x" * (50 * 2**20)
for i in range(300):
    print("start", i, flush=True)
    watch = MemoryWatch()
    watch.start(1, "k", None)  # over at once: the poller may fire before stop() returns
    watch.stop()
    print("stopped", i, flush=True)
# Stopped: no later sample may fire. Give the poller time for many samples (it samples every
# 20 ms while armed); this is a window for something that must not happen, not an ordering.
threading.Event().wait(0.3)
again = MemoryWatch()
again.start(2**40, "k", None)
peak = again.stop()
print("done", peak, flush=True)
"""


def test_a_stopped_watch_never_fires() -> None:
    done = _python(RACE)
    lines = done.stdout.splitlines()
    if done.returncode == OOM_EXIT_CODE:
        # A watch may fire only while it runs: between its start and the return of stop().
        assert lines[-1].startswith("start"), lines[-3:]
    else:
        assert done.returncode == 0, done.stderr
        assert lines[-1].startswith("done")
        # The peak counts what the watched experiment added (nothing here), not the
        # interpreter the process held before it.
        assert 0 <= int(lines[-1].split()[1]) < 50 * MiB


def test_start_checks_the_limit() -> None:
    from memento.worker.memory import MemoryWatch

    watch = MemoryWatch()
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="limit must be a positive int of bytes"):
            watch.start(bad, "k", None)  # type: ignore[arg-type]
    assert watch.stop() == 0  # never started


def test_read_report_of_a_broken_file(tmp_path: Path) -> None:
    (tmp_path / "k.memory").write_text("{not json")
    assert read_report(tmp_path, "k") is None
    assert not (tmp_path / "k.memory").exists()
    assert read_report(tmp_path / "missing", "k") is None


# -- the kernel's OOM evidence, on a fake /proc and /sys (a mock of the kernel) ------------------
def _fake(tmp_path: Path, cgroup_lines: str, files: dict[str, str]) -> tuple[str, str]:
    proc, sysfs = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup_lines)
    (proc / "meminfo").write_text("MemTotal:       16384000 kB\nMemFree:  1000 kB\n")
    (proc / "vmstat").write_text("pgfault 12\noom_kill 7\n")
    for name, text in files.items():
        path = sysfs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(proc), str(sysfs)


def test_cgroup_v2(tmp_path: Path) -> None:
    proc, root = _fake(
        tmp_path,
        "0::/user.slice/job.scope\n",
        {
            "user.slice/memory.max": f"{4 * 2**30}\n",
            "user.slice/job.scope/memory.max": "max\n",
            "user.slice/job.scope/memory.events": "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n",
        },
    )
    cgroup = memory_cgroup(proc=proc, cgroup_root=root)
    assert cgroup == MemoryCgroup(Path(root) / "user.slice/job.scope", 2)
    assert oom_kill_count(proc=proc, cgroup_root=root) == 2
    assert memory_ceiling(proc=proc, cgroup_root=root) == 4 * 2**30  # the parent's limit
    (Path(root) / "user.slice/memory.max").write_text("max\n")
    assert memory_ceiling(proc=proc, cgroup_root=root) == 16384000 * 1024  # MemTotal


def test_cgroup_v2_on_a_hybrid_mount(tmp_path: Path) -> None:
    proc, root = _fake(
        tmp_path,
        "1:name=systemd:/x\n0::/x\n",
        {"unified/x/memory.max": "1000000\n", "unified/x/memory.events": "oom_kill 0\n"},
    )
    assert memory_cgroup(proc=proc, cgroup_root=root) == MemoryCgroup(Path(root) / "unified/x", 2)
    assert oom_kill_count(proc=proc, cgroup_root=root) == 0
    assert memory_ceiling(proc=proc, cgroup_root=root) == 1000000


def test_cgroup_v1(tmp_path: Path) -> None:
    proc, root = _fake(
        tmp_path,
        "5:cpu,cpuacct:/\n4:memory:/docker/abc\n0::/\n",
        {
            "memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n",
            "memory/docker/abc/memory.stat": "cache 1\nhierarchical_memory_limit 2147483648\n",
            "memory/docker/abc/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n",
        },
    )
    assert memory_cgroup(proc=proc, cgroup_root=root) == MemoryCgroup(
        Path(root) / "memory/docker/abc", 1
    )
    assert oom_kill_count(proc=proc, cgroup_root=root) == 5
    assert memory_ceiling(proc=proc, cgroup_root=root) == 2 * 2**30


def test_cgroup_v1_seen_from_inside_a_container(tmp_path: Path) -> None:
    # /proc says /docker/abc, but the container's mount shows its own cgroup as the root.
    proc, root = _fake(
        tmp_path,
        "4:memory:/docker/abc\n",
        {
            "memory/memory.limit_in_bytes": "536870912\n",
            "memory/memory.oom_control": "oom_kill 1\n",
        },
    )
    assert memory_cgroup(proc=proc, cgroup_root=root) == MemoryCgroup(Path(root) / "memory", 1)
    assert oom_kill_count(proc=proc, cgroup_root=root) == 1
    assert memory_ceiling(proc=proc, cgroup_root=root) == 512 * MiB


def test_without_a_cgroup_the_machine_tells(tmp_path: Path) -> None:
    proc, root = _fake(tmp_path, "0::/\n", {})
    assert memory_cgroup(proc=proc, cgroup_root=root) is None
    assert oom_kill_count(proc=proc, cgroup_root=root) == 7  # /proc/vmstat
    assert memory_ceiling(proc=proc, cgroup_root=root) == 16384000 * 1024
    (Path(proc) / "vmstat").write_text("pgfault 12\n")  # a kernel before 4.13
    assert oom_kill_count(proc=proc, cgroup_root=root) is None
    assert oom_kill_count(proc=str(tmp_path / "none"), cgroup_root=root) is None


def test_this_machine_is_read_without_errors() -> None:
    count = oom_kill_count()
    assert count is None or count >= 0
    assert 2**26 < memory_ceiling() <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.mark.parametrize(
    ("exitcode", "peak", "before", "now", "expected"),
    [
        (-9, None, 3, 4, True),  # the OOM kill count went up
        (-9, 950, None, None, True),  # the peak reached 90% of the ceiling
        (-9, 900, 3, 3, True),
        (-9, 899, 3, 3, False),  # neither: someone's kill -9
        (-9, None, None, None, False),
        (-9, None, 3, None, False),
        (-15, 1000, 3, 4, False),  # not SIGKILL
        (1, 1000, 3, 4, False),
        (OOM_EXIT_CODE, 1000, 3, 4, False),  # the memory watch's own exit: not the kernel
        (None, 1000, 3, 4, False),
    ],
)
def test_looks_like_kernel_oom(
    exitcode: int | None, peak: int | None, before: int | None, now: int | None, expected: bool
) -> None:
    assert looks_like_kernel_oom(exitcode, peak, before, now, 1000) is expected


# -- a real kernel OOM kill, in a cgroup of its own ----------------------------------------------
@pytest.fixture
def small_cgroup() -> Iterator[MemoryCgroup]:
    """A new memory cgroup limited to 64 MiB, below this process's; skips where none can be
    made (not root, no memory controller, a read-only or delegated-away cgroup tree)."""
    if os.geteuid() != 0:
        pytest.skip("creating a cgroup needs root")
    own = memory_cgroup()
    if own is None:
        pytest.skip("this process has no memory cgroup that can be read")
    path = own.path / f"memento-test-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup under {own.path}: {exc}")
    try:
        limit_file = "memory.max" if own.version == 2 else "memory.limit_in_bytes"
        if not (path / limit_file).exists():
            pytest.skip(f"the memory controller is not enabled for children of {own.path}")
        (path / limit_file).write_text(str(64 * MiB))
        yield MemoryCgroup(path, own.version)
    finally:
        end = time.monotonic() + 10
        while True:
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)  # the killed process is still leaving the cgroup


def test_a_real_kernel_oom_kill_is_counted(small_cgroup: MemoryCgroup) -> None:
    # Waits for "go" on stdin, then allocates 256 MiB in 8 MiB chunks (pages touched).
    code = (
        "import sys\n"
        "assert sys.stdin.readline() == 'go\\n'\n"
        "chunks = [b'x' * (8 * 2**20) for _ in range(32)]\n"
        "print('survived', flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        (small_cgroup.path / "cgroup.procs").write_text(str(child.pid))
        assert memory_cgroup(child.pid) == small_cgroup
        assert memory_ceiling(small_cgroup) == 64 * MiB
        before = oom_kill_count(small_cgroup)
        assert before is not None
        out, _ = child.communicate("go\n", timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert out == ""
    now = oom_kill_count(small_cgroup)
    assert now is not None and now > before
    assert looks_like_kernel_oom(child.returncode, None, before, now, memory_ceiling(small_cgroup))


# -- what the driver sees ----------------------------------------------------------------------
def _hog_in_a_pool(report_dir: str) -> str:
    """An experiment in a pebble worker: watched, it allocates until the watch stops it."""
    from memento.worker.memory import MemoryWatch

    watch = MemoryWatch()
    watch.start(150 * MiB, "poolkey", report_dir)
    chunks = [b"x" * (20 * MiB) for _ in range(15)]
    threading.Event().wait(5)
    watch.stop()
    return f"survived with {len(chunks)} chunks"


def test_pebble_reports_the_exit_code_of_a_stopped_worker(reports: Path) -> None:
    pebble = pytest.importorskip("pebble")
    with pebble.ProcessPool(max_workers=1) as pool:
        future = pool.schedule(_hog_in_a_pool, args=(str(reports),))
        with pytest.raises(pebble.ProcessExpired) as info:
            future.result(timeout=30)
    assert info.value.exitcode == OOM_EXIT_CODE
    report = read_report(reports, "poolkey")
    assert report is not None and report["rss"] > report["limit"] == 150 * MiB
