"""Typed values and provenance (issue 13): a 100 MB array, 100,000 small dicts, and what
collecting a run's provenance costs.

Run:  python bench/bench_values.py [--quick]     (about 3 minutes on 2 cores, --quick about 1)

Every figure comes from this one run, each case in a fresh interpreter. "Baseline" is memento
as of commit ``BASELINE`` (the last one before issue 13, when every value was cloudpickled
inline), extracted with ``git archive`` into ``bench/.baseline-<commit>`` (git-ignored) and run
from there with ``PYTHONPATH``; "current" is ``src/``. Sides alternate, so drift on a noisy
machine hits both alike. numpy is needed.

1. A 100 MB float64 array returned by one experiment: store (fresh store, wall time of ``run``),
   load (cached re-run, then ``.inner.sum()`` so every page is read) and the driver's memory
   (peak RSS minus RSS just before ``run``, over the array's size) for both steps.
2. 100,000 results that are dicts of 3 floats: the cached re-run in a new interpreter (import +
   run), and whether plain ``sqlite3`` can query them with ``json_extract``.
3. Provenance: 2,000 trivial experiments, fresh store, ``run`` wall time, with collection as it
   is and with ``memento.run.driver.Collector`` replaced by a stub (in the child only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
#: The last commit before issue 13 (typed values, provenance, output folders).
BASELINE = "4961a4f"
#: float64 elements in 100 MiB.
ARRAY_LEN = 100 * 2**20 // 8

# Case 1: argv = store path, "store" | "load". numpy is imported before the RSS reading, so
# its libraries are not counted as the run's memory.
ARRAY = f"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy
from memento import Memento

def big(context, config):
    return numpy.ones({ARRAY_LEN})

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")

if __name__ == "__main__":
    grid = {{"parameters": {{"i": [0]}}}}
    memento = Memento(big, num_workers=1, progress=False)
    before = rss_kib()
    imported = time.perf_counter() - t0
    t = time.perf_counter()
    results = memento.run(grid, cache_path=sys.argv[1])
    total = float(results[0].inner.sum()) if sys.argv[2] == "load" else None
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if total is not None:
        assert total == {ARRAY_LEN}, total
    print(json.dumps({{"wall": wall, "import": imported, "before_kib": before, "peak_kib": peak,
                      "cached": sum(bool(r.was_cached) for r in results)}}))
"""

# Case 1's floor, without memento: make the array and write it to a file, fsync'ed (argv = path).
FLOOR = f"""
import json, os, sys, time
import numpy
t = time.perf_counter()
a = numpy.ones({ARRAY_LEN})
with open(sys.argv[1], "wb") as f:
    f.write(memoryview(a).cast("B"))
    os.fsync(f.fileno())
print(json.dumps({{"wall": time.perf_counter() - t}}))
"""

# Case 2: argv = store path, n.
DICTS = """
import json, sys, time
t0 = time.perf_counter()
from memento import Memento

def three(context, config):
    return {"a": config.i * 0.5, "b": config.i + 0.25, "c": -float(config.i)}

if __name__ == "__main__":
    n = int(sys.argv[2])
    t = time.perf_counter()
    results = Memento(three, progress=False).run(
        {"parameters": {"i": list(range(n))}}, cache_path=sys.argv[1])
    run = time.perf_counter() - t
    assert results[n - 1].inner == {"a": (n - 1) * 0.5, "b": n - 0.75, "c": -float(n - 1)}
    print(json.dumps({"run": run, "total": time.perf_counter() - t0,
                      "cached": sum(bool(r.was_cached) for r in results)}))
"""

# Case 3: argv = store path, n, "stub" | "real". The stub replaces the driver's Collector in
# this child only: it collects nothing and returns a Provenance with empty fields.
TRIVIAL = """
import json, sys, time
t0 = time.perf_counter()
from memento import Memento

def trivial(context, config):
    return config.i

class StubCollector:
    def __init__(self, *args, **kwargs):
        pass
    def add_modules(self, names):
        pass
    def result(self, timeout=10.0):
        from memento.results.provenance import Provenance
        return Provenance(git_root=None, git_commit=None, dirty=None, diff=None,
                          diff_hash=None, python="", platform="", host="", command=[])

if __name__ == "__main__":
    if sys.argv[3] == "stub":
        import memento.run.driver
        memento.run.driver.Collector = StubCollector
    n = int(sys.argv[2])
    t = time.perf_counter()
    results = Memento(trivial, num_workers=2, progress=False).run(
        {"parameters": {"i": list(range(n))}}, cache_path=sys.argv[1])
    run = time.perf_counter() - t
    assert [r.inner for r in results] == list(range(n))
    print(json.dumps({"run": run, "total": time.perf_counter() - t0,
                      "cached": sum(bool(r.was_cached) for r in results)}))
"""


class Cases:
    """Writes each script once (named by its text: a script's experiment is keyed by its file,
    so a cached re-run must run the same file) and runs it in a fresh interpreter, with the
    baseline's or the current ``src`` on ``PYTHONPATH``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = {"baseline": baseline_env(), "current": dict(os.environ, PYTHONPATH=str(SRC))}

    def script(self, text: str, folder: Path | None = None) -> Path:
        text = textwrap.dedent(text)
        folder = folder or self.work
        path = folder / f"case_{hashlib.sha256(text.encode()).hexdigest()[:12]}.py"
        if not path.exists():
            path.write_text(text)
        return path

    def run(self, side: str, text: str, *args: str, folder: Path | None = None) -> dict[str, float]:
        """The figures one run of ``text`` prints (its last stdout line, JSON); the script is
        written into ``folder`` (default: the work directory)."""
        proc = subprocess.run(
            [sys.executable, str(self.script(text, folder)), *args],
            capture_output=True,
            text=True,
            env=self.env[side],
            cwd=self.work,
            timeout=900,
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            raise RuntimeError(
                f"{side} case failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
            )
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))

    def fresh(self) -> str:
        """A path for a new store (each measurement starts from an empty one)."""
        return str(self.work / f"fresh-{uuid.uuid4().hex}.sqlite")


def baseline_env() -> dict[str, str]:
    """The environment that runs memento as of :data:`BASELINE` (extracted on first use)."""
    target = HERE / f".baseline-{BASELINE}"
    if not (target / "src" / "memento" / "__init__.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BASELINE, "src"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return dict(os.environ, PYTHONPATH=str(target / "src"))


def dirty_repository(cases: Cases) -> Path:
    """A git repository (in the work directory) holding case 3's script, committed, and a
    tracked file changed since: what provenance meets in a user's project."""
    repo = cases.work / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-C"]
    subprocess.run([*git, str(repo), "init", "-q"], check=True)
    script = cases.script(TRIVIAL, repo)
    notes = repo / "notes.txt"
    notes.write_text("committed\n")
    subprocess.run([*git, str(repo), "add", script.name, notes.name], check=True)
    subprocess.run([*git, str(repo), "commit", "-q", "-m", "bench"], check=True)
    notes.write_text("committed\nand changed since\n" * 50)
    return repo


Row = tuple[str, str, str, str, str, str]
SIDES = ("baseline", "current")


def alternate(repeat: int, measure: Callable[[str], float]) -> dict[str, float]:
    """Median per side of ``repeat`` rounds, the sides taking turns within each round."""
    got: dict[str, list[float]] = {side: [] for side in SIDES}
    for _ in range(repeat):
        for side in SIDES:
            got[side].append(measure(side))
    return {side: statistics.median(values) for side, values in got.items()}


def row(case: str, base: float, cur: float, unit: str, target: str, met: bool) -> Row:
    """One table row: both figures in ``unit`` ("s" or "x", times the array), their ratio."""
    ratio = f"{cur / base:.2f}" if base else "-"
    return (case, f"{base:.2f} {unit}", f"{cur:.2f} {unit}", ratio, target, "yes" if met else "NO")


def array_case(cases: Cases, repeat: int) -> list[Row]:
    """Case 1: store and load a 100 MB array; driver memory over the array's size."""
    size_kib = ARRAY_LEN * 8 / 1024
    figs: dict[str, dict[str, list[float]]] = {
        side: {"store": [], "load": [], "mem_store": [], "mem_load": [], "import": []}
        for side in SIDES
    }
    floor: list[float] = []
    for _ in range(repeat):
        path = cases.fresh()
        floor.append(cases.run("current", FLOOR, path)["wall"])
        Path(path).unlink()
        for side in SIDES:
            path = cases.fresh()
            stored = cases.run(side, ARRAY, path, "store")
            loaded = cases.run(side, ARRAY, path, "load")
            assert stored["cached"] == 0 and loaded["cached"] == 1, (stored, loaded)
            f = figs[side]
            f["store"].append(stored["wall"])
            f["load"].append(loaded["wall"])
            f["mem_store"].append((stored["peak_kib"] - stored["before_kib"]) / size_kib)
            f["mem_load"].append((loaded["peak_kib"] - loaded["before_kib"]) / size_kib)
            f["import"].append(stored["import"])
            Path(path).unlink(missing_ok=True)
    med = {s: {k: statistics.median(v) for k, v in figs[s].items()} for s in SIDES}
    b, c = med["baseline"], med["current"]
    both_b, both_c = b["store"] + b["load"], c["store"] + c["load"]
    return [
        row("100 MB array: store (run, fresh)", b["store"], c["store"], "s", "", True),
        row("100 MB array: load (cached run + sum)", b["load"], c["load"], "s", "", True),
        row("100 MB array: store + load", both_b, both_c, "s", "ratio <= 0.5",
            both_c * 2 <= both_b),
        row("100 MB array: driver mem, store", b["mem_store"], c["mem_store"], "x", "cur <= 1.5 x",
            c["mem_store"] <= 1.5),
        row("100 MB array: driver mem, load", b["mem_load"], c["mem_load"], "x", "cur <= 1.5 x",
            c["mem_load"] <= 1.5),
        row("(interpreter + imports, not counted)", b["import"], c["import"], "s", "", True),
        ("(floor: numpy.ones + write + fsync, no memento)", "", f"{statistics.median(floor):.2f} s",
         "", "", ""),
    ]  # fmt: skip


def json_count(path: str) -> str:
    """What plain sqlite3 answers to a ``json_extract`` query on the store at ``path``."""
    conn = sqlite3.connect(path)
    try:
        query = "SELECT count(*) FROM results WHERE json_extract(value, '$.a') >= 0"
        return str(conn.execute(query).fetchone()[0])
    except sqlite3.Error as exc:
        return f"error: {exc}"
    finally:
        conn.close()


def dicts_case(cases: Cases, repeat: int, n: int) -> tuple[list[Row], dict[str, str]]:
    """Case 2: the cached re-run of ``n`` dict results in a new interpreter, and plain SQL."""
    paths = {side: cases.fresh() for side in SIDES}
    populate = {}
    for side in SIDES:
        first = cases.run(side, DICTS, paths[side], str(n))
        assert first["cached"] == 0, first
        populate[side] = first["run"]

    def cached(side: str) -> float:
        again = cases.run(side, DICTS, paths[side], str(n))
        assert again["cached"] == n, again
        return again["total"]

    med = alternate(repeat, cached)
    sql = {side: json_count(paths[side]) for side in SIDES}
    b, c = med["baseline"], med["current"]
    rows = [
        row(f"{n:,} dicts: populate (run, once)", populate["baseline"], populate["current"], "s",
            "", True),
        row(f"{n:,} dicts: cached, new interpreter", b, c, "s", "cur <= base", c <= b),
    ]  # fmt: skip
    return rows, sql


def provenance_case(cases: Cases, repeat: int, n: int) -> list[Row]:
    """Case 3: ``run`` of ``n`` trivial experiments with and without provenance collection."""
    repo = dirty_repository(cases)
    variants = {  # name: (side, mode, folder of the script)
        "baseline": ("baseline", "real", None),
        "stub": ("current", "stub", None),
        "real": ("current", "real", None),
        "git stub": ("current", "stub", repo),
        "git real": ("current", "real", repo),
    }
    got: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, (side, mode, folder) in variants.items():
            figures = cases.run(side, TRIVIAL, cases.fresh(), str(n), mode, folder=folder)
            assert figures["cached"] == 0, figures
            got[name].append(figures["run"])
    med = {name: statistics.median(values) for name, values in got.items()}
    base, stub, real = med["baseline"], med["stub"], med["real"]
    git_stub, git_real = med["git stub"], med["git real"]
    return [
        row(f"{n:,} trivial: no provenance vs with", stub, real, "s", "ratio <= 1.05",
            real <= 1.05 * stub),
        row(f"{n:,} trivial, dirty git repo: same", git_stub, git_real, "s", "ratio <= 1.05",
            git_real <= 1.05 * git_stub),
        row(f"{n:,} trivial: baseline vs current", base, real, "s", "ratio <= 1.05",
            real <= 1.05 * base),
    ]  # fmt: skip


def table(rows: list[Row]) -> str:
    """A Markdown table of the rows."""
    head = ("case", "baseline", "current", "ratio", "target", "met?")
    lines = [head, ("---",) * 6, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    parser.add_argument("--dicts", type=int, default=100_000, help="results in case 2")
    args = parser.parse_args()
    reps = (1, 3, 3) if args.quick else (5, 5, 9)
    with tempfile.TemporaryDirectory() as tmp:
        cases = Cases(Path(tmp))
        rows = array_case(cases, reps[0])
        dict_rows, sql = dicts_case(cases, reps[1], args.dicts)
        rows += dict_rows
        rows += provenance_case(cases, reps[2], 2000)
    print(f"memento values benchmark (issue 13), medians of {reps} repeats; baseline {BASELINE}")
    print("(case 3's first two rows: 'baseline' = the current code with Collector stubbed)")
    print(table(rows))
    print("plain sqlite3, SELECT count(*) FROM results WHERE json_extract(value, '$.a') >= 0:")
    for side in SIDES:
        print(f"  {side}: {sql[side]}")


if __name__ == "__main__":
    main()
