"""pebble is imported in the background as soon as a ProcessExecutor is made, and the pool
waits for that import before it forks (each case in a fresh interpreter: pytest's own has
pebble loaded already)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys, threading
import memento.executors.local as local
from memento.executors.local import ProcessExecutor, wait_for_pebble
assert "pebble" not in sys.modules
ex = ProcessExecutor(1)
first = local._pebble_import
started = [first] if first is not None else []
ProcessExecutor(1)  # a second executor starts no second import
again = [t for t in threading.enumerate() if t.name == "memento-import-pebble"]
assert local._pebble_import is first
wait_for_pebble()
loaded = "pebble" in sys.modules
pool = ex._get_pool()
pool.schedule(print, args=("worker ran",)).result(timeout=30)
ex.shutdown()
print(len(started), len(again) <= 1, loaded)
"""


def test_pebble_is_imported_in_the_background_before_the_pool_needs_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "1 True True"
