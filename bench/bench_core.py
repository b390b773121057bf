"""Core benchmarks: memento beside ProcessPoolExecutor, joblib.Memory and memento-ml 1.2.

Run:  python bench/bench_core.py            (about a minute on 2 cores)

Every figure comes from this one run, each case in a fresh interpreter. memento-ml 1.2.0 is
installed on first use into bench/.memento-ml (pip --target), since it shares the import name
``memento``; pass --no-memento-ml to skip it. joblib is needed for the cached re-run
comparison (pip install joblib).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ML_DIR = HERE / ".memento-ml"

# Each case is a script printing one JSON line with its figures.
# The experiments every memento case runs; the driver part differs per library.
EXPERIMENTS = """
import json, os, resource, sys, time
t0 = time.perf_counter()
from memento import Memento
def trivial(context, config):
    return config.i
def burn(context, config):
    end = time.process_time() + 0.5
    while time.process_time() < end:
        pass
    return config.i
"""

MEMENTO_GRID = (
    EXPERIMENTS
    + """
if __name__ == "__main__":
    func = burn if sys.argv[3] == "burn" else trivial
    n = int(sys.argv[2])
    t = time.perf_counter()
    results = Memento(func, num_workers=2, progress=False).run(
        {"parameters": {"i": list(range(n))}}, cache_path=sys.argv[1])
    run = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"run": run, "total": time.perf_counter() - t0, "rss_mib": rss,
                      "cached": sum(r.was_cached for r in results)}))
"""
)

MEMENTO_ML_GRID = (
    EXPERIMENTS
    + """
if __name__ == "__main__":
    func = burn if sys.argv[3] == "burn" else trivial
    n = int(sys.argv[2])
    os.environ["MEMENTO_CACHE_PATH"] = sys.argv[1]
    t = time.perf_counter()
    results = Memento(func, num_workers=2).run(
        {"parameters": {"i": list(range(n))}}, cache_path=sys.argv[1])
    run = time.perf_counter() - t
    print(json.dumps({"run": run, "total": time.perf_counter() - t0,
                      "cached": sum(bool(r.was_cached) for r in results)}))
"""
)

POOL = """
import json, sys, time, concurrent.futures as cf
def trivial(i):
    return i
def burn(i):
    end = time.process_time() + 0.5
    while time.process_time() < end:
        pass
    return i
if __name__ == "__main__":
    func = burn if sys.argv[2] == "burn" else trivial
    t = time.perf_counter()
    with cf.ProcessPoolExecutor(2) as pool:
        list(pool.map(func, range(int(sys.argv[1]))))
    print(json.dumps({"run": time.perf_counter() - t}))
"""

JOBLIB = """
import json, sys, time
t0 = time.perf_counter()
from joblib import Memory
memory = Memory(sys.argv[1], verbose=0)
@memory.cache
def trivial(i):
    return i
t = time.perf_counter()
[trivial(i) for i in range(int(sys.argv[2]))]
print(json.dumps({"run": time.perf_counter() - t, "total": time.perf_counter() - t0}))
"""


def run(script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    # One file per script, named by its text: an experiment defined in a script is identified
    # by the script, so the cached re-run must run the very same file.
    text = textwrap.dedent(script)
    path = Path(WORK) / f"case_{hashlib.sha256(text.encode()).hexdigest()[:12]}.py"
    path.write_text(text)
    out = subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=WORK,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark case failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def memento_ml_env() -> dict[str, str] | None:
    if not (ML_DIR / "memento" / "memento.py").exists():
        print("installing memento-ml 1.2.0 into bench/.memento-ml ...", flush=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(ML_DIR),
                "memento-ml==1.2.0",
                "networkx",
            ],
            check=False,
        )
        if done.returncode != 0:
            return None
    env = dict(os.environ, PYTHONPATH=str(ML_DIR))
    return env


def main() -> None:
    global WORK
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-memento-ml", action="store_true")
    parser.add_argument("--big", type=int, default=100_000, help="configs of the big cached run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        WORK = tmp
        ml_env = None if args.no_memento_ml else memento_ml_env()
        rows: list[tuple[str, str, str]] = []

        # 1. 2,000 trivial experiments on a fresh store.
        store = f"{tmp}/fresh.sqlite"
        fresh = run(MEMENTO_GRID, store, "2000", "trivial")
        pool = run(POOL, "2000", "trivial")
        rows.append(("2,000 trivial, fresh store", "memento", f"{fresh['run']:.2f} s"))
        rows.append(("", "ProcessPoolExecutor(2).map", f"{pool['run']:.2f} s"))
        rows.append(("", "ratio memento / pool (target <= 2)", f"{fresh['run'] / pool['run']:.2f}"))
        rows.append(
            (
                "driver peak RSS, 2,000 trivial",
                "memento (target <= 40 MiB)",
                f"{fresh['rss_mib']:.1f} MiB",
            )
        )

        # 2. Cached re-run of those 2,000 in a new interpreter (whole process wall time).
        cached = run(MEMENTO_GRID, store, "2000", "trivial")
        assert cached["cached"] == 2000
        run(JOBLIB, f"{tmp}/joblib", "2000")
        joblib_cached = run(JOBLIB, f"{tmp}/joblib", "2000")
        rows.append(
            ("2,000 cached, new interpreter", "memento (import + run)", f"{cached['total']:.2f} s")
        )
        rows.append(("", "joblib.Memory (import + calls)", f"{joblib_cached['total']:.2f} s"))

        # 3. Parallel efficiency: 8 CPU-bound experiments of 0.5 s on 2 workers.
        burn = run(MEMENTO_GRID, f"{tmp}/burn.sqlite", "8", "burn")
        pool_burn = run(POOL, "8", "burn")
        ideal = 8 * 0.5 / 2
        rows.append(("8 x 0.5 s CPU-bound, efficiency", "memento", f"{ideal / burn['run']:.2f}"))
        rows.append(("", "ProcessPoolExecutor(2)", f"{ideal / pool_burn['run']:.2f}"))

        # 4. Cached re-run of a big grid.
        big = f"{tmp}/big.sqlite"
        run(MEMENTO_GRID, big, str(args.big), "trivial")
        big_cached = run(MEMENTO_GRID, big, str(args.big), "trivial")
        assert big_cached["cached"] == args.big
        rows.append(
            (
                f"{args.big:,} cached, new interpreter",
                "memento (target <= 3 s)",
                f"{big_cached['total']:.2f} s",
            )
        )

        if ml_env is not None:
            ml_store = f"{tmp}/ml.sqlite"
            ml_fresh = run(MEMENTO_ML_GRID, ml_store, "2000", "trivial", env=ml_env)
            ml_cached = run(MEMENTO_ML_GRID, ml_store, "2000", "trivial", env=ml_env)
            ml_burn = run(MEMENTO_ML_GRID, f"{tmp}/mlburn.sqlite", "8", "burn", env=ml_env)
            rows.insert(2, ("", "memento-ml 1.2.0", f"{ml_fresh['run']:.2f} s"))
            rows.insert(7, ("", "memento-ml 1.2.0", f"{ml_cached['total']:.2f} s"))
            rows.insert(10, ("", "memento-ml 1.2.0", f"{ideal / ml_burn['run']:.2f}"))

    width = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"{'case':<{width[0]}}  {'who':<{width[1]}}  figure")
    for case, who, figure in rows:
        print(f"{case:<{width[0]}}  {who:<{width[1]}}  {figure}")


WORK = ""

if __name__ == "__main__":
    main()
