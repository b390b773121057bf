"""Several drivers on one grid: every experiment runs once, and every driver returns the grid.

Real driver processes on a real store (an SQLite file, and a PostgreSQL database when a
server is available: see tests/support/postgres.py). Each experiment appends the pid of the
driver that ran it to a file of its own, so the tests count real runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from memento import Memento
from memento.plan.planning import make_plan
from memento.store.backends import open_store
from memento.store.base import StoredOutcome
from memento.view.cli import cli

GRID = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    # Set before memento starts workers, so each worker knows which driver it belongs to.
    os.environ["RACE_DRIVER"] = str(os.getpid())

    from memento import Memento

    def experiment(context, config):
        with open(Path(os.environ["RACE_COUNTS"]) / f"{config.n}.runs", "a") as f:
            f.write(os.environ["RACE_DRIVER"] + "\\n")
        time.sleep(float(os.environ.get("RACE_SLEEP", "0.05")))
        return config.n * 3

    if __name__ == "__main__":
        store, n = sys.argv[1], int(sys.argv[2])
        memento = Memento(
            experiment,
            num_workers=2,
            progress=False,
            lease_timeout=float(os.environ.get("RACE_LEASE", "60")),
        )
        results = memento.run({"parameters": {"n": list(range(n))}}, cache_path=store)
        print(json.dumps([r.inner for r in results]))
    """
)


class Race:
    """Driver processes of the grid script on one store, and the runs they counted."""

    def __init__(self, tmp_path: Path, store: str, env: dict[str, str], **extra: str) -> None:
        self.script = tmp_path / "race_grid.py"
        self.script.write_text(GRID)
        self.counts = tmp_path / "counts"
        self.counts.mkdir()
        self.store = store
        self.env = {**env, "RACE_COUNTS": str(self.counts), **extra}

    def start(self, n: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(self.script), self.store, str(n)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.script.parent,
        )

    def runs(self) -> dict[int, list[int]]:
        """Experiment -> the pids of the drivers that ran it, one per run."""
        found = {}
        for path in self.counts.glob("*.runs"):
            found[int(path.stem)] = [int(line) for line in path.read_text().split()]
        return found

    def wait_for(self, condition: Callable[[], bool], what: str, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)


def _grid(proc: subprocess.Popen[str], timeout: float = 240) -> list[int]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    values: list[int] = json.loads(out.strip().splitlines()[-1])
    return values


def test_four_drivers_split_the_grid_and_each_returns_all_of_it(
    tmp_path: Path, location: str, subprocess_env: dict[str, str]
) -> None:
    race = Race(tmp_path, location, subprocess_env, RACE_SLEEP="0.05")
    drivers = [race.start(40) for _ in range(4)]
    outputs = [_grid(d) for d in drivers]
    expected = [3 * n for n in range(40)]
    assert all(out == expected for out in outputs)
    runs = race.runs()
    assert sorted(runs) == list(range(40))
    twice = {n: pids for n, pids in runs.items() if len(pids) != 1}
    assert twice == {}, f"experiments that did not run exactly once: {twice}"
    # The grid was shared out: more than one driver ran experiments.
    assert len({pids[0] for pids in runs.values()}) > 1


def test_a_killed_driver_s_experiments_are_taken_over_and_run_again(
    tmp_path: Path, location: str, subprocess_env: dict[str, str]
) -> None:
    race = Race(tmp_path, location, subprocess_env, RACE_SLEEP="0.3")
    drivers = [race.start(40) for _ in range(4)]
    victim = drivers[0]
    race.wait_for(
        lambda: any(victim.pid in pids for pids in race.runs().values()),
        "the first driver to start an experiment",
    )
    victim.kill()  # SIGKILL: no chance to release its leases
    victim.wait(timeout=30)
    outputs = [_grid(d) for d in drivers[1:]]
    expected = [3 * n for n in range(40)]
    assert all(out == expected for out in outputs)
    runs = race.runs()
    assert sorted(runs) == list(range(40))
    again = {n: pids for n, pids in runs.items() if len(pids) > 1}
    # Run twice: only what the killed driver had in flight, each once by it and once by a
    # survivor. In flight: handed to its workers and not yet stored, at most 2 jobs per
    # worker: the one each of its 2 workers ran, and one that may have just finished there
    # with its outcome on the way to the driver when it was killed.
    assert len(again) <= 4, again
    for pids in again.values():
        assert len(pids) == 2 and pids[0] == victim.pid and pids[1] != victim.pid
    assert all(len(pids) == 1 for n, pids in runs.items() if n not in again)


def test_a_frozen_driver_s_leases_expire_and_another_driver_finishes_the_grid(
    tmp_path: Path, location: str, subprocess_env: dict[str, str]
) -> None:
    race = Race(tmp_path, location, subprocess_env, RACE_SLEEP="0.5", RACE_LEASE="2")
    frozen = race.start(12)
    try:
        race.wait_for(lambda: bool(race.runs()), "the first driver to start an experiment")
        os.kill(frozen.pid, signal.SIGSTOP)  # alive, but it sends no heartbeat any more
        with open_store(location, readonly=True) as store:
            held = {lease.run_id for lease in store.leases().values()}
        assert len(held) == 1
        rescuer = race.start(12)
        assert _grid(rescuer) == [3 * n for n in range(12)]
    finally:
        frozen.kill()
        frozen.wait(timeout=30)
    runs = race.runs()
    assert sorted(runs) == list(range(12))
    # The frozen driver's workers may finish what they had begun; nothing runs a third time.
    assert all(1 <= len(pids) <= 2 for pids in runs.values())
    assert any(rescuer.pid in pids for pids in runs.values())


# -- in one process: what the plan, the status and a waiting driver see ------------------------
def triple(context: Any, config: Any) -> int:
    return int(config.n) * 3


def _hold(location: str, keys: list[str], run_id: str = "elsewhere01") -> None:
    """Claim ``keys`` as another live driver would (this process, a run of its own)."""
    with open_store(location) as store:
        claim = store.claim(run_id, keys, since=0.0, lease_timeout=60)
        assert claim.claimed == keys


def test_the_plan_and_status_show_experiments_running_elsewhere(
    location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = {"parameters": {"n": [1, 2, 3]}}
    Memento(triple, progress=False, executor="thread").run(
        {"parameters": {"n": [1]}}, cache_path=location
    )
    keys = make_plan(triple, matrix, location).keys
    _hold(location, keys[1:])

    plan = make_plan(triple, matrix, location)
    assert plan.states == ["cached", "running", "running"]
    holder = f"{os.uname().nodename}:{os.getpid()}"
    assert plan.holders[keys[1]].holder == holder
    assert "1 cached" in plan.summary() and "2 running elsewhere" in plan.summary()

    assert Memento(triple).run(matrix, cache_path=location, dry_run=True) is None
    shown = capsys.readouterr().out
    assert f"[running elsewhere] n=2 ({holder})" in shown
    assert "2 running elsewhere" in shown

    status = CliRunner().invoke(cli, ["status", location])
    assert status.exit_code == 0, status.output
    assert "Claimed by drivers" in status.output
    line = next(x for x in status.output.splitlines() if x.startswith(holder))
    assert "elsewhere01" in line and "expires in" in line


def test_a_driver_waits_for_what_another_holds_and_returns_its_outcome(location: str) -> None:
    matrix = {"parameters": {"n": [1, 2, 3]}}
    keys = make_plan(triple, matrix, location).keys
    _hold(location, [keys[1]])
    finished = threading.Event()

    def the_other_driver_finishes() -> None:
        # Once the run waits (its two own experiments stored), store n=2 as another run.
        with open_store(location) as store:
            deadline = time.monotonic() + 60
            while len(store.lookup([keys[0], keys[2]], ["status"])) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            store.write_outcomes(
                [
                    StoredOutcome(
                        key=keys[1],
                        experiment=make_plan(triple, matrix, location).experiment,
                        status="done",
                        params='{"n": 2}',
                        value=__import__("cloudpickle").dumps(600),
                        run_id="elsewhere01",
                    )
                ]
            )
        finished.set()

    other = threading.Thread(target=the_other_driver_finishes)
    other.start()
    results = Memento(triple, progress=False, executor="thread").run(matrix, cache_path=location)
    other.join(timeout=60)
    assert finished.is_set()
    # The other driver's value (600, not 6): this run did not compute n=2 itself.
    assert [r.inner for r in results] == [3, 600, 9]
    with open_store(location, readonly=True) as store:
        assert store.leases() == {}


def test_a_driver_runs_what_a_driver_that_let_go_held(location: str) -> None:
    matrix = {"parameters": {"n": [1, 2]}}
    keys = make_plan(triple, matrix, location).keys
    _hold(location, keys)

    def let_go() -> None:
        with open_store(location) as store:
            deadline = time.monotonic() + 60
            while not store.runs(running_only=True):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            store.release("elsewhere01")  # as an interrupted driver does when it stops

    other = threading.Thread(target=let_go)
    other.start()
    results = Memento(triple, progress=False, executor="thread").run(matrix, cache_path=location)
    other.join(timeout=60)
    assert [r.inner for r in results] == [3, 6]
    assert not any(r.was_cached for r in results)
