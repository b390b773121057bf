"""memento's overhead beside a bare process pool, joblib and a serial loop (issue: overhead).

Run:  python bench/bench_overhead.py [--quick] [--repeat N] [--src PATH]
      (about 4 minutes on 2 cores, --quick about 1.5)

Every figure comes from this one run: each case against its reference, the two sides taking
turns within each repeat, each side in a fresh interpreter; the table shows medians. What is
timed is the run itself, from before the pool (or ``Memento``) is made to after it is shut
down: the reference's own start-up counts, as memento's does. Imports are done before the
clock starts on both sides and are measured apart, in case (e).

a. 2,000 trivial experiments (``x * 2``), fresh store, ``Memento(f, num_workers=2,
   progress=False).run`` vs ``ProcessPoolExecutor(2).map``;
b. the same with 200 (mostly fixed start-up);
c. 8 CPU-bound experiments of identical work (a pure-Python loop of about 0.5 s, calibrated
   once), wall time vs the pool;
d. 8 BLAS-heavy experiments (``--blas-reps`` products of two random 1000 x 1000 matrices
   each) vs ``joblib.Parallel(n_jobs=2)`` and vs a serial loop in one process; one more
   memento row caps each worker's BLAS at 1 thread with threadpoolctl inside the experiment
   (what a default cap of ``cores // workers`` threads per worker would give, for comparison);
e. ``import memento`` and ``from memento import Memento`` in a fresh interpreter, minus the
   bare interpreter's start (``python -c pass``), bytecode caches warm.

``--src`` names the ``src`` folder to import memento from (default: this checkout's), put
first on ``PYTHONPATH``. ``PYTHONDONTWRITEBYTECODE`` is removed from the children's
environment (users have bytecode caches); BLAS variables (``OPENBLAS_*``, ``OMP_*``) are
passed on as they are. numpy, threadpoolctl and joblib are needed (``pip install -e
".[bench]"``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Each case is a script that prints one JSON line; "wall" is the timed part, in seconds.

# argv: store path, n
TRIVIAL_MEMENTO = """
import json, sys, time
from memento import Memento

def double(context, config):
    return config.x * 2

if __name__ == "__main__":
    n = int(sys.argv[2])
    t = time.perf_counter()
    results = Memento(double, num_workers=2, progress=False).run(
        {"parameters": {"x": list(range(n))}}, cache_path=sys.argv[1])
    wall = time.perf_counter() - t
    assert [r.inner for r in results] == [2 * i for i in range(n)]
    print(json.dumps({"wall": wall}))
"""

# argv: n
TRIVIAL_POOL = """
import json, sys, time
from concurrent.futures import ProcessPoolExecutor

def double(x):
    return x * 2

if __name__ == "__main__":
    n = int(sys.argv[1])
    t = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        out = list(pool.map(double, range(n)))
    wall = time.perf_counter() - t
    assert out == [2 * i for i in range(n)]
    print(json.dumps({"wall": wall}))
"""

# The same loop in both sides' scripts: identical work per experiment.
LOOP = """
def loop(n):
    s = 0
    for i in range(n):
        s += i
    return s
"""

# argv: iterations; prints the seconds of one loop of that many iterations.
CALIBRATE = (
    "import json, sys, time\n"
    + LOOP
    + """
n = int(sys.argv[1])
loop(n // 10)
t = time.perf_counter()
loop(n)
print(json.dumps({"wall": time.perf_counter() - t}))
"""
)

# argv: store path, iterations
BURN_MEMENTO = (
    "import json, sys, time\nfrom memento import Memento\n"
    + LOOP
    + """
def burn(context, config):
    return loop(config.n)

if __name__ == "__main__":
    n = int(sys.argv[2])
    t = time.perf_counter()
    results = Memento(burn, num_workers=2, progress=False).run(
        {"parameters": {"i": list(range(8)), "n": [n]}}, cache_path=sys.argv[1])
    wall = time.perf_counter() - t
    assert len({r.inner for r in results}) == 1 and len(results) == 8
    print(json.dumps({"wall": wall}))
"""
)

# argv: iterations
BURN_POOL = (
    "import json, sys, time\nfrom concurrent.futures import ProcessPoolExecutor\n"
    + LOOP
    + """
if __name__ == "__main__":
    n = int(sys.argv[1])
    t = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        out = list(pool.map(loop, [n] * 8))
    wall = time.perf_counter() - t
    assert len(set(out)) == 1 and len(out) == 8
    print(json.dumps({"wall": wall}))
"""
)

# The BLAS work: `reps` products of two random 1000 x 1000 matrices (rescaled to stay finite).
BLAS = """
import numpy

def matmuls(seed, reps):
    rng = numpy.random.default_rng(seed)
    a = rng.standard_normal((1000, 1000))
    b = rng.standard_normal((1000, 1000))
    for _ in range(reps):
        a = a @ b
        a /= numpy.abs(a).max()
    return float(a[0, 0])
"""

# argv: store path, reps, "free" | "capped" (capped: 1 BLAS thread per worker, threadpoolctl)
BLAS_MEMENTO = (
    "import json, sys, time\nfrom memento import Memento\n"
    "from threadpoolctl import threadpool_limits\n"
    + BLAS
    + """
def blas(context, config):
    return matmuls(config.i, config.reps)

def blas_capped(context, config):
    with threadpool_limits(1):
        return matmuls(config.i, config.reps)

if __name__ == "__main__":
    reps = int(sys.argv[2])
    func = blas_capped if sys.argv[3] == "capped" else blas
    t = time.perf_counter()
    results = Memento(func, num_workers=2, progress=False).run(
        {"parameters": {"i": list(range(8)), "reps": [reps]}}, cache_path=sys.argv[1])
    wall = time.perf_counter() - t
    assert len(results) == 8 and all(r.ok for r in results)
    print(json.dumps({"wall": wall}))
"""
)

# argv: reps
BLAS_JOBLIB = (
    "import json, sys, time\nfrom joblib import Parallel, delayed\n"
    + BLAS
    + """
if __name__ == "__main__":
    reps = int(sys.argv[1])
    t = time.perf_counter()
    out = Parallel(n_jobs=2)(delayed(matmuls)(i, reps) for i in range(8))
    wall = time.perf_counter() - t
    assert len(out) == 8
    print(json.dumps({"wall": wall}))
"""
)

# argv: reps
BLAS_SERIAL = (
    "import json, sys, time\n"
    + BLAS
    + """
if __name__ == "__main__":
    reps = int(sys.argv[1])
    t = time.perf_counter()
    out = [matmuls(i, reps) for i in range(8)]
    wall = time.perf_counter() - t
    assert len(out) == 8
    print(json.dumps({"wall": wall}))
"""
)

# The header's BLAS description, from a child (the parent never loads numpy).
BLAS_INFO = """
import json
import numpy, threadpoolctl
print(json.dumps({"numpy": numpy.__version__, "pools": threadpoolctl.threadpool_info()}))
"""

IMPORT_SNIPPETS = {
    "bare": "pass",
    "import memento": "import memento",
    "from memento import Memento": "from memento import Memento",
}


class Cases:
    """Writes each case's script once into the work directory (named by its text, as
    bench_core.py does) and runs it in a fresh interpreter with ``src`` on PYTHONPATH."""

    def __init__(self, work: Path, src: Path) -> None:
        self.work = work
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(src) + (os.pathsep + path if path else "")
        self.env = env

    def script(self, text: str) -> Path:
        text = textwrap.dedent(text)
        path = self.work / f"case_{hashlib.sha256(text.encode()).hexdigest()[:12]}.py"
        if not path.exists():
            path.write_text(text)
        return path

    def run(self, text: str, *args: object) -> dict[str, object]:
        """The JSON line the script prints last (a failing case stops the benchmark)."""
        proc = subprocess.run(
            [sys.executable, str(self.script(text)), *map(str, args)],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.work,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            raise RuntimeError(
                f"benchmark case failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
            )
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))

    def wall(self, text: str, *args: object) -> float:
        return float(self.run(text, *args)["wall"])  # type: ignore[arg-type]

    def store(self) -> str:
        """A path for a new store (every memento measurement starts from an empty one)."""
        return str(self.work / f"store-{uuid.uuid4().hex}.sqlite")

    def interpreter(self, code: str) -> float:
        """Seconds of ``python -c code`` in a fresh interpreter, as seen from outside."""
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=self.env, cwd=self.work, check=True)
        return time.perf_counter() - t


def turns(repeat: int, sides: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Median per side of ``repeat`` rounds, the sides taking turns within each round (drift
    on a noisy machine then hits every side alike)."""
    got: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, measure in sides.items():
            got[name].append(measure())
    return {name: statistics.median(values) for name, values in got.items()}


Row = tuple[str, str, str, str, str, str]


def row(case: str, ours: float, ref: float | None, target: float | None, unit: str = "s") -> Row:
    """One table row; ``target`` bounds the ratio (or, without a reference, the figure)."""
    if ref is None:
        met = "" if target is None else ("yes" if ours <= target else "NO")
        limit = "" if target is None else f"<= {target:.2f} {unit}"
        return (case, f"{ours:.3f} {unit}", "", "", limit, met)
    ratio = ours / ref
    met = "" if target is None else ("yes" if ratio <= target else "NO")
    limit = "" if target is None else f"<= {target:.2f}"
    return (case, f"{ours:.3f} {unit}", f"{ref:.3f} {unit}", f"{ratio:.2f}", limit, met)


def trivial_case(cases: Cases, repeat: int, n: int, target: float) -> list[Row]:
    med = turns(
        repeat,
        {
            "memento": lambda: cases.wall(TRIVIAL_MEMENTO, cases.store(), n),
            "pool": lambda: cases.wall(TRIVIAL_POOL, n),
        },
    )
    return [row(f"({'a' if n >= 1000 else 'b'}) {n:,} trivial, fresh store / pool",
                med["memento"], med["pool"], target)]  # fmt: skip


def calibrate(cases: Cases, seconds: float) -> int:
    """Loop iterations that take about ``seconds`` in one interpreter here."""
    probe = 2_000_000
    took = min(cases.wall(CALIBRATE, probe) for _ in range(5))
    return max(100_000, int(probe * seconds / took))


def burn_case(cases: Cases, repeat: int, iterations: int) -> list[Row]:
    med = turns(
        repeat,
        {
            "memento": lambda: cases.wall(BURN_MEMENTO, cases.store(), iterations),
            "pool": lambda: cases.wall(BURN_POOL, iterations),
        },
    )
    return [row("(c) 8 CPU-bound (~0.5 s each) / pool", med["memento"], med["pool"], 1.05)]


def blas_case(cases: Cases, repeat: int, reps: int) -> list[Row]:
    med = turns(
        repeat,
        {
            "memento": lambda: cases.wall(BLAS_MEMENTO, cases.store(), reps, "free"),
            "joblib": lambda: cases.wall(BLAS_JOBLIB, reps),
            "serial": lambda: cases.wall(BLAS_SERIAL, reps),
            "capped": lambda: cases.wall(BLAS_MEMENTO, cases.store(), reps, "capped"),
        },
    )
    m, capped = med["memento"], med["capped"]
    return [
        row("(d) 8 BLAS (matmul n=1000) / joblib(2)", m, med["joblib"], 1.00),
        row("(d) 8 BLAS (matmul n=1000) / serial loop", m, med["serial"], 1.05),
        row("    same, 1 BLAS thread/worker / joblib(2)", capped, med["joblib"], 1.00),
        row("    same, 1 BLAS thread/worker / serial", capped, med["serial"], 1.05),
    ]


def import_case(cases: Cases, repeat: int) -> list[Row]:
    for code in IMPORT_SNIPPETS.values():  # warm the bytecode caches
        cases.interpreter(code)
    sides: dict[str, Callable[[], float]] = {
        name: functools.partial(cases.interpreter, code) for name, code in IMPORT_SNIPPETS.items()
    }
    med = turns(repeat, sides)
    bare = med["bare"]
    return [
        row("(e) python -c pass (bare interpreter)", bare, None, None),
        row("(e) import memento, raw", med["import memento"], None, None),
        row("(e) import memento, minus bare", med["import memento"] - bare, None, 0.10),
        row("(e) from memento import Memento, raw", med["from memento import Memento"], None,
            None),
        row("(e) from memento import Memento, minus bare",
            med["from memento import Memento"] - bare, None, 0.10),
    ]  # fmt: skip


def header(cases: Cases, src: Path, repeats: dict[str, int], iterations: int, reps: int) -> str:
    """Where memento comes from, the BLAS in use and the settings of this run."""
    lines = [f"memento overhead benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}, "
             f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"]  # fmt: skip
    where = str(src)
    if src == (ROOT / "src").resolve():
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        where += f" (this checkout, {commit or 'commit unknown'})"
    lines.append(f"memento from {where}")
    info = cases.run(BLAS_INFO)
    for pool in info["pools"]:  # type: ignore[attr-defined]
        lines.append(
            f"BLAS: {pool.get('internal_api')} {pool.get('version')} "
            f"({pool.get('threading_layer')}, {pool.get('architecture')}), "
            f"{pool.get('num_threads')} threads, {Path(pool.get('filepath', '')).name}; "
            f"numpy {info['numpy']}"
        )
    blas_env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    lines.append(f"BLAS environment: {blas_env or 'none set'}")
    lines.append(
        f"repeats (medians of): {repeats}; loop of {iterations:,} iterations per CPU-bound "
        f"experiment; {reps} matmuls per BLAS experiment"
    )
    return "\n".join(lines)


def table(rows: list[Row]) -> str:
    head = ("case", "memento", "reference", "ratio", "target", "met?")
    lines = [head, ("---",) * 6, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about 1.5 min)")
    parser.add_argument("--repeat", type=int, help="repeats of every case (overrides --quick)")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="memento's src folder")
    parser.add_argument("--blas-reps", type=int, default=10, help="matmuls per BLAS experiment")
    args = parser.parse_args()
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.repeat is not None:
        repeats = dict.fromkeys(("short", "long", "import"), args.repeat)
    elif args.quick:
        repeats = {"short": 5, "long": 3, "import": 7}
    else:
        repeats = {"short": 11, "long": 5, "import": 15}
    src = args.src.resolve()
    if not (src / "memento" / "__init__.py").exists():
        parser.error(f"--src must be a folder holding memento/__init__.py, got {args.src}")
    with tempfile.TemporaryDirectory(prefix="memento-overhead-") as tmp:
        cases = Cases(Path(tmp), src)
        iterations = calibrate(cases, 0.5)
        print(header(cases, src, repeats, iterations, args.blas_reps), flush=True)
        rows = trivial_case(cases, repeats["short"], 2000, 1.0)
        rows += trivial_case(cases, repeats["short"], 200, 2.0)
        rows += burn_case(cases, repeats["long"], iterations)
        rows += blas_case(cases, repeats["long"], args.blas_reps)
        rows += import_case(cases, repeats["import"])
    print(table(rows))


if __name__ == "__main__":
    main()
