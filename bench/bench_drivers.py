"""Many drivers and the PostgreSQL store: what claiming costs, what a second driver gains, and
PostgreSQL beside SQLite.

Run:  python bench/bench_drivers.py [--postgres URL]     (a few minutes on 2 cores)

Every figure comes from this one run, each case in a fresh interpreter, the median of
``--repeat`` (default 3) runs. "Before leases" is memento as of commit ``BASELINE`` (the
last one before drivers claimed experiments), extracted with ``git archive`` into
``bench/.baseline-<commit>`` (git-ignored) and run from there, so the cost of claiming is
measured against the code it was added to, on the same machine in the same run.

PostgreSQL: ``--postgres URL`` (or ``$MEMENTO_TEST_POSTGRES``, which ``.ci/postgres.sh``
exports) names a server whose user may create databases; each case gets a database of its
own, dropped at the end. Without one, the PostgreSQL rows are left out.
"""

from __future__ import annotations

import argparse
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
#: The last commit before leases (issue 11).
BASELINE = "634931e"

GRID = """
import json, sys, time
t0 = time.perf_counter()
from memento import Memento
def trivial(context, config):
    return config.i
if __name__ == "__main__":
    n = int(sys.argv[2])
    t = time.perf_counter()
    results = Memento(trivial, num_workers=2, progress=False).run(
        {"parameters": {"i": list(range(n))}}, cache_path=sys.argv[1])
    assert [r.inner for r in results] == list(range(n))
    print(json.dumps({"run": time.perf_counter() - t, "total": time.perf_counter() - t0,
                      "cached": sum(bool(r.was_cached) for r in results)}))
"""


class Cases:
    """Writes each script once (named by its text: a script's experiment is keyed by its
    file) and runs it in a fresh interpreter."""

    def __init__(self, work: Path) -> None:
        self.work = work

    def script(self, text: str) -> Path:
        text = textwrap.dedent(text)
        path = self.work / f"case_{hashlib.sha256(text.encode()).hexdigest()[:12]}.py"
        path.write_text(text)
        return path

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(self.script(GRID)), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.work,
        )

    def run(self, *args: str, env: dict[str, str] | None = None) -> dict[str, float]:
        return _figures(self.start(*args, env=env))

    def together(self, count: int, *args: str) -> float:
        """Wall seconds from starting ``count`` drivers of one grid to the last one's end."""
        t = time.perf_counter()
        procs = [self.start(*args) for _ in range(count)]
        for proc in procs:
            _figures(proc)
        return time.perf_counter() - t


def _figures(proc: subprocess.Popen[str]) -> dict[str, float]:
    out, err = proc.communicate(timeout=900)
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"benchmark case failed ({proc.returncode}):\n{out}\n{err[-3000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def median(repeat: int, measure: Callable[[int], float]) -> float:
    return statistics.median(measure(i) for i in range(repeat))


def baseline_env() -> dict[str, str]:
    """The environment that runs memento as of :data:`BASELINE`."""
    target = HERE / f".baseline-{BASELINE}"
    if not (target / "src" / "memento" / "__init__.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BASELINE, "src"],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return dict(os.environ, PYTHONPATH=str(target / "src"))


class Postgres:
    """Databases of their own for each case, on the server of ``url``."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.psycopg = psycopg
        self.made: list[str] = []

    def database(self) -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with self.psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        base, _, _ = self.url.rpartition("/")
        return f"{base}/{name}"

    def settings(self) -> str:
        """The server's durability settings, which the figures depend on."""
        with self.psycopg.connect(self.url, autocommit=True) as conn:
            shown = [
                f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
                for name in ("fsync", "synchronous_commit")
            ]
        return ", ".join(shown)

    def drop(self) -> None:
        with self.psycopg.connect(self.url, autocommit=True) as conn:
            for name in self.made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=os.environ.get("MEMENTO_TEST_POSTGRES"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("-n", type=int, default=2000, help="experiments per grid")
    args = parser.parse_args()
    n, repeat = str(args.n), args.repeat
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = Cases(Path(tmp))
        fresh = lambda i: f"{tmp}/fresh-{uuid.uuid4().hex}.sqlite"  # noqa: E731

        # 1. One driver, fresh store: before leases, and now (claims every experiment).
        old_env = baseline_env()
        before = median(repeat, lambda i: cases.run(fresh(i), n, env=old_env)["run"])
        now = median(repeat, lambda i: cases.run(fresh(i), n)["run"])
        rows.append(
            (
                f"{args.n:,} trivial, fresh store, 1 driver",
                f"before leases ({BASELINE})",
                f"{before:.2f} s",
            )
        )
        rows.append(("", "now (claiming)", f"{now:.2f} s"))
        rows.append(("", "ratio now / before (target <= 1.10)", f"{now / before:.2f}"))

        # 2. Two drivers at once on one SQLite store, beside one (wall, start to last end).
        one = median(repeat, lambda i: cases.together(1, fresh(i), n))
        two = median(repeat, lambda i: cases.together(2, fresh(i), n))
        rows.append((f"{args.n:,} trivial, SQLite, wall", "1 driver", f"{one:.2f} s"))
        rows.append(("", "2 drivers at once", f"{two:.2f} s"))
        rows.append(("", "ratio 2 / 1 (target <= 1.0)", f"{two / one:.2f}"))

        # 3. PostgreSQL on loopback beside SQLite: fresh grid, and the cached re-run in a new
        #    interpreter (import + run).
        if args.postgres:
            pg = Postgres(args.postgres)
            try:
                sqlite_fresh, sqlite_cached, pg_fresh, pg_cached = [], [], [], []
                for i in range(repeat):
                    path = fresh(i)
                    sqlite_fresh.append(cases.run(path, n)["run"])
                    again = cases.run(path, n)
                    assert again["cached"] == args.n
                    sqlite_cached.append(again["total"])
                    url = pg.database()
                    pg_fresh.append(cases.run(url, n)["run"])
                    again = cases.run(url, n)
                    assert again["cached"] == args.n
                    pg_cached.append(again["total"])
            finally:
                pg.drop()
            sf, sc = statistics.median(sqlite_fresh), statistics.median(sqlite_cached)
            pf, pc = statistics.median(pg_fresh), statistics.median(pg_cached)
            rows.append(("PostgreSQL server", pg.settings(), ""))
            rows.append((f"{args.n:,} trivial, fresh store", "SQLite", f"{sf:.2f} s"))
            rows.append(("", "PostgreSQL (loopback)", f"{pf:.2f} s"))
            rows.append(("", "ratio PostgreSQL / SQLite (target <= 2)", f"{pf / sf:.2f}"))
            rows.append((f"{args.n:,} cached, new interpreter", "SQLite", f"{sc:.2f} s"))
            rows.append(("", "PostgreSQL (loopback)", f"{pc:.2f} s"))
            rows.append(("", "ratio PostgreSQL / SQLite (target <= 2)", f"{pc / sc:.2f}"))
        else:
            rows.append(("PostgreSQL cases", "skipped", "no --postgres URL"))

    width = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"memento drivers benchmark, median of {repeat} (2 workers per driver)")
    for case, who, figure in rows:
        print(f"{case:<{width[0]}}  {who:<{width[1]}}  {figure:>{width[2]}}")


if __name__ == "__main__":
    main()
