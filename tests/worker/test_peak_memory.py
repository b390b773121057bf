"""A worker's peak-memory counters (``memento.worker.process``), read from the real
/proc/self/status of real processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from memento.worker.process import peak_memory

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _status_kib(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/self/status")


@linux_only
def test_peak_memory_is_what_proc_status_says() -> None:
    before = _status_kib("VmHWM"), _status_kib("VmPeak")
    rss, vms = peak_memory()
    after = _status_kib("VmHWM"), _status_kib("VmPeak")
    assert rss is not None and vms is not None
    assert before[0] * 1024 <= rss <= after[0] * 1024
    assert before[1] * 1024 <= vms <= after[1] * 1024


# In a fresh interpreter: a peak left by a freed buffer is reset (clear_refs), a peak of the
# memory in use now is kept, and a forked child reads its own status, not its parent's.
PEAKS = """
import json, os, sys
from memento.worker.process import peak_memory, reset_peak_memory
MIB = 1024 * 1024
peak_memory()  # the descriptor is open in this process now
big = bytearray(150 * MIB)
held = peak_memory()[0]
reset_peak_memory()  # the buffer is still in use: its memory stays in the peak
kept = peak_memory()[0]
del big
reset_peak_memory()
after = peak_memory()[0]
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    child = bytearray(100 * MIB)
    os.write(write, json.dumps(peak_memory()[0]).encode())
    os._exit(0)
os.waitpid(pid, 0)
child_peak = json.loads(os.read(read, 100))
print(json.dumps([held, kept, after, child_peak, peak_memory()[0]]))
"""


@linux_only
def test_reset_and_fork() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PEAKS], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    held, kept, after, child_peak, parent_after = json.loads(done.stdout)
    mib = 1024 * 1024
    assert held > 150 * mib and kept > 150 * mib
    assert after < held - 100 * mib  # reset: the freed buffer's peak is gone
    assert child_peak > after + 80 * mib  # the child's own allocation, in its own status
    assert parent_after < held - 100 * mib  # the child's memory is not the parent's
