"""The store contract: what every backend of :class:`memento.store.base.BaseStore` does, run
on each of them (SQLite in a temp dir, PostgreSQL in a fresh database of a real server), so a
new backend inherits the whole suite by adding one parameter to ``location``.
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memento._util.checkpoint_format import pack_checkpoint
from memento.exceptions import StoreError
from memento.store.backends import open_checkpoints, open_store
from memento.store.base import BaseStore, StoredOutcome
from memento.store.safe_pickle import StoredValue
from memento.worker.context import FileCheckpoints

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a new, empty store of each backend goes."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "results.sqlite")
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
def store(location: str) -> Iterator[BaseStore]:
    with open_store(location) as opened:
        yield opened


def outcome(key: str, run_id: str = "run-1", **fields: Any) -> StoredOutcome:
    values: dict[str, Any] = {
        "experiment": "m:f",
        "status": "done",
        "params": json.dumps({"key": key}),
        "value": pickle.dumps(key),
        "run_id": run_id,
        "fingerprint": "v2:aaa",
        **fields,
    }
    return StoredOutcome(key=key, **values)


def until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def checkpoint_provider(store: BaseStore) -> Any:
    """What a worker writes this store's checkpoints through."""
    if store.checkpoint_url:
        return open_checkpoints(store.checkpoint_url)
    assert store.checkpoint_directory is not None
    return FileCheckpoints(store.checkpoint_directory)


# -- opening and empty reads -------------------------------------------------------------------
def test_an_empty_store_reads_as_empty(store: BaseStore) -> None:
    assert store.open() is store
    assert store.lookup(["a", "b"], ["status"]) == {}
    assert list(store.rows()) == []
    assert list(store.result_states()) == []
    assert store.latest_fingerprints() == {}
    assert store.experiment_names() == set()
    assert store.in_flight() == []
    assert store.runs() == [] and store.runs(running_only=True) == []
    assert store.run_count() == 0
    assert store.last_activity() is None
    assert store.find_jobs("slurm", ["a"]) == {}
    assert store.leases() == {} and store.leases(["a"]) == {}
    store.close()
    store.close()  # twice is fine, and the next call connects again
    assert store.run_count() == 0


def test_the_store_clock_is_epoch_seconds(store: BaseStore) -> None:
    assert abs(store.now() - time.time()) < 60


# -- results ---------------------------------------------------------------------------------
def test_outcomes_are_looked_up_and_listed(store: BaseStore) -> None:
    before = store.now()
    store.write_outcomes(
        [
            outcome("k1", metrics={"loss": [(0, 1.0), (1, 0.5)]}, output="hello\n"),
            outcome(
                "k2",
                status="failed",
                value=None,
                error_type="ValueError",
                error_message="bad",
                traceback="Traceback...",
                error=b"pickled",
            ),
            outcome("x3", experiment="m:g", fingerprint="v2:ggg", attempts=3, pid=12, host="h"),
        ]
    )
    found = store.lookup(["k1", "k2", "x3", "nope"], ["status", "value", "attempts"])
    assert found == {
        "k1": ("done", pickle.dumps("k1"), 1),
        "k2": ("failed", None, 1),
        "x3": ("done", pickle.dumps("x3"), 3),
    }
    assert store.lookup([], ["status"]) == {}
    (updated,) = store.lookup(["k1"], ["updated"])["k1"]
    assert before <= updated <= store.now()

    rows = list(store.rows())
    assert [r["key"] for r in rows] == ["k1", "k2", "x3"]
    assert rows[0]["params"] == {"key": "k1"}
    assert rows[0]["metrics"] == {"loss": [[0, 1.0], [1, 0.5]]}
    assert rows[1]["metrics"] == {} and rows[1]["error"] == b"pickled"
    assert rows[2]["host"] == "h" and rows[2]["pid"] == 12
    assert "output" not in rows[0]
    assert next(store.rows(with_output=True))["output"] == "hello\n"
    assert [r["key"] for r in store.rows(status="failed")] == ["k2"]
    assert [r["key"] for r in store.rows(experiment="m:g")] == ["x3"]
    assert [r["key"] for r in store.rows(key_prefix="k")] == ["k1", "k2"]
    assert [r["key"] for r in store.rows(key_prefix="%")] == []  # a prefix, not a pattern

    states = list(store.result_states())
    assert [s[:3] for s in states] == [
        ("k1", "m:f", "done"),
        ("k2", "m:f", "failed"),
        ("x3", "m:g", "done"),
    ]
    assert states[1][5:7] == ("ValueError", "bad")
    assert store.latest_fingerprints() == {"m:f": "v2:aaa", "m:g": "v2:ggg"}
    assert store.experiment_names() == {"m:f", "m:g"}
    activity = store.last_activity()
    assert activity is not None and activity >= updated


def test_writing_a_key_again_replaces_its_result(store: BaseStore) -> None:
    store.write_outcomes([outcome("k1"), outcome("k2")])
    store.write_outcomes([outcome("k1", status="failed", value=None, run_id="run-2")])
    assert store.lookup(["k1"], ["status", "value", "run_id"]) == {"k1": ("failed", None, "run-2")}
    assert sorted(r["key"] for r in store.rows()) == ["k1", "k2"]


def test_many_keys_at_once(store: BaseStore) -> None:
    keys = [f"{i:032x}" for i in range(2500)]
    store.write_outcomes(outcome(k) for k in keys[:2000])
    found = store.lookup(keys, ["status"])
    assert len(found) == 2000 and set(found) == set(keys[:2000])


def test_delete_forgets_results(store: BaseStore) -> None:
    store.write_outcomes([outcome("k1"), outcome("k2"), outcome("k3")])
    assert store.delete(["k1", "k3", "missing"]) == 2
    assert set(store.lookup(["k1", "k2", "k3"], ["status"])) == {"k2"}
    assert store.delete([]) == 0


def test_values_load_back_large_and_plain(store: BaseStore) -> None:
    big = {"blob": b"z" * (600 * 1024), "n": 1}
    store.write_outcomes(
        [
            outcome("big", value=pickle.dumps(big)),
            outcome("none", value=None),
            outcome("obj", value=pickle.dumps(Path("/x"))),
        ]
    )
    found = store.lookup(["big", "none", "obj"], ["value", "value_file"])
    assert store.load_value(*found["big"]) == big
    assert store.load_value(*found["big"], plain_only=True) == big
    assert store.load_value(*found["none"]) is None
    assert store.load_value(*found["obj"]) == Path("/x")
    shown = store.load_value(*found["obj"], plain_only=True)
    assert isinstance(shown, StoredValue)  # no code of the store runs on reading


# -- runs, in flight, jobs ---------------------------------------------------------------------
def test_runs_are_recorded(store: BaseStore) -> None:
    store.start_run("run-1", "m:f", total=10, to_run=8, cached=2, fingerprint="v2:one")
    store.start_run("run-2", "m:f", total=5, to_run=5, cached=0, fingerprint="v2:two")
    assert store.run_count() == 2
    running = store.runs(running_only=True)
    assert [r[0] for r in running] == ["run-1", "run-2"]
    _, experiment, host, pid, started, finished, state, total, done, failed = running[0]
    assert (experiment, pid, finished, state, total, done, failed) == (
        "m:f",
        os.getpid(),
        None,
        "running",
        10,
        0,
        0,
    )
    assert host and started <= store.now()
    store.finish_run("run-1", done=7, failed=1, state="finished")
    assert [r[0] for r in store.runs(running_only=True)] == ["run-2"]
    latest = store.runs(limit=1)
    assert [r[0] for r in latest] == ["run-2"]
    (first,) = [r for r in store.runs() if r[0] == "run-1"]
    assert first[6:] == ("finished", 10, 7, 1) and first[5] >= first[4]
    assert store.latest_fingerprints() == {"m:f": "v2:two"}
    activity = store.last_activity()
    assert activity is not None and activity >= first[5]


def test_experiments_in_flight(store: BaseStore) -> None:
    store.start_run("run-1", "m:f", total=3, to_run=3, cached=0)
    store.mark_running("run-1", "m:f", [("k1", '{"a": 1}'), ("k2", '{"a": 2}')])
    store.mark_running("run-1", "m:f", [("k3", '{"a": 3}')])
    flying = store.in_flight()
    assert [f[0] for f in flying] == ["k1", "k2", "k3"]
    assert flying[0][1:4] == ("run-1", "m:f", '{"a": 1}')
    assert store.experiment_names() == {"m:f"}
    store.write_outcomes([outcome("k1")])  # stored: no longer in flight
    assert [f[0] for f in store.in_flight()] == ["k2", "k3"]
    store.finish_run("run-1", done=1, failed=0, state="interrupted")
    assert store.in_flight() == []


def test_job_ids_are_remembered_and_forgotten(store: BaseStore) -> None:
    store.record_jobs("slurm", [("k1", "101"), ("k2", "102")])
    store.record_jobs("dask", [("k3", "abc")])
    store.record_jobs("slurm", [("k2", "202")])  # a resubmission replaces it
    assert store.find_jobs("slurm", ["k1", "k2", "k3", "k4"]) == {"k1": "101", "k2": "202"}
    assert store.find_jobs("dask", ["k3"]) == {"k3": "abc"}
    store.forget_jobs(["k1", "k3"])
    assert store.find_jobs("slurm", ["k1", "k2"]) == {"k2": "202"}
    assert store.find_jobs("dask", ["k3"]) == {}


# -- leases ----------------------------------------------------------------------------------
def test_a_claim_takes_free_keys_and_sees_others(store: BaseStore) -> None:
    since = store.now()
    first = store.claim("run-1", ["a", "b"], since=since, lease_timeout=60)
    assert first.claimed == ["a", "b"] and not first.held and not first.reclaimed
    again = store.claim("run-1", ["a"], since=since, lease_timeout=60)
    assert again.claimed == ["a"]  # the holder's own keys stay its own

    other = store.claim("run-2", ["a", "b", "c"], since=since, lease_timeout=60)
    assert other.claimed == ["c"] and set(other.held) == {"a", "b"}
    lease = other.held["a"]
    assert (lease.run_id, lease.pid) == ("run-1", os.getpid())
    assert lease.claimed <= lease.heartbeat < lease.expires
    assert lease.expires == pytest.approx(lease.heartbeat + 60)

    leases = store.leases()
    assert {k: v.run_id for k, v in leases.items()} == {"a": "run-1", "b": "run-1", "c": "run-2"}
    assert set(store.leases(["a", "zzz"])) == {"a"}


def test_a_result_stored_by_another_run_since_planning_is_finished(store: BaseStore) -> None:
    store.write_outcomes([outcome("old", run_id="run-0")])
    since = store.now()
    store.write_outcomes([outcome("new", run_id="run-2")])
    claim = store.claim("run-1", ["old", "new", "mine"], since=since, lease_timeout=60)
    assert claim.finished == ["new"]
    assert claim.claimed == ["old", "mine"]  # a result from before the plan is the plan's


def test_storing_an_outcome_drops_the_lease_of_its_run(store: BaseStore) -> None:
    since = store.now()
    store.claim("run-1", ["a", "b"], since=since, lease_timeout=60)
    store.write_outcomes([outcome("a", run_id="run-1"), outcome("b", run_id="run-other")])
    assert set(store.leases()) == {"b"}  # another run's outcome leaves run-1's lease alone


def test_release_and_finish_run_drop_leases(store: BaseStore) -> None:
    since = store.now()
    store.start_run("run-1", "m:f", total=3, to_run=3, cached=0)
    store.claim("run-1", ["a", "b", "c"], since=since, lease_timeout=60)
    store.claim("run-2", ["d"], since=since, lease_timeout=60)
    store.release("run-1", ["a"])
    assert set(store.leases()) == {"b", "c", "d"}
    store.finish_run("run-1", done=0, failed=0, state="interrupted")
    assert set(store.leases()) == {"d"}
    store.release("run-2")
    assert store.leases() == {}


#: A lease short enough to wait for, long enough for a loaded machine's next call.
SHORT = 3.0


def test_a_live_holder_keeps_its_lease_until_it_expires(store: BaseStore) -> None:
    since = store.now()
    store.claim("run-1", ["a"], since=since, lease_timeout=SHORT)  # this process: alive
    assert set(store.claim("run-2", ["a"], since=since, lease_timeout=60).held) == {"a"}
    expires = store.leases(["a"])["a"].expires
    until(lambda: store.now() > expires)
    taken = store.claim("run-2", ["a"], since=since, lease_timeout=60)
    assert taken.claimed == ["a"]
    assert [lease.run_id for lease in taken.reclaimed] == ["run-1"]
    assert store.leases(["a"])["a"].run_id == "run-2"


def test_a_heartbeat_extends_the_leases_of_its_run(store: BaseStore) -> None:
    since = store.now()
    store.claim("run-1", ["a", "b"], since=since, lease_timeout=SHORT)
    store.claim("run-2", ["c"], since=since, lease_timeout=60)
    lapsed = store.leases(["a"])["a"].expires
    until(lambda: store.now() > lapsed)
    assert store.heartbeat("run-1") == 2
    renewed = store.leases(["a"])["a"]
    assert renewed.expires > store.now() and renewed.heartbeat > lapsed - SHORT
    assert renewed.expires == pytest.approx(renewed.heartbeat + SHORT)
    assert set(store.claim("run-3", ["a", "b"], since=since, lease_timeout=60).held) == {"a", "b"}
    assert store.heartbeat("nobody") == 0


def test_the_lease_of_a_dead_local_holder_is_taken_at_once(
    store: BaseStore, location: str, subprocess_env: dict[str, str]
) -> None:
    script = textwrap.dedent(
        """
        import sys
        from memento.store.backends import open_store
        with open_store(sys.argv[1]) as store:
            store.claim("run-dead", ["a", "b"], since=0.0, lease_timeout=3600)
        """
    )
    subprocess.run(
        [sys.executable, "-c", script, location], env=subprocess_env, check=True, timeout=60
    )
    assert {lease.run_id for lease in store.leases().values()} == {"run-dead"}
    taken = store.claim("run-1", ["a", "b"], since=store.now(), lease_timeout=60)
    assert taken.claimed == ["a", "b"] and not taken.held
    assert {lease.run_id for lease in taken.reclaimed} == {"run-dead"}


CLAIMER = textwrap.dedent(
    """
    import json, random, sys
    from memento.store.backends import open_store
    location, run_id = sys.argv[1], sys.argv[2]
    keys = [f"key-{i:03d}" for i in range(200)]
    random.Random(run_id).shuffle(keys)
    store = open_store(location).open()
    print("ready", flush=True)
    sys.stdin.readline()
    claimed = []
    for start in range(0, len(keys), 10):
        claimed += store.claim(run_id, keys[start:start + 10], since=0.0, lease_timeout=600).claimed
    print(json.dumps(claimed), flush=True)
    sys.stdin.read()  # stay alive (a live holder) until the test has both answers
    store.close()
    """
)


def test_two_processes_claiming_the_same_keys_split_them(
    store: BaseStore, location: str, subprocess_env: dict[str, str]
) -> None:
    store.open()  # the schema exists before the race
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, location, f"run-{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=subprocess_env,
            text=True,
        )
        for n in (1, 2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        claimed = [set(json.loads(p.stdout.readline())) for p in procs if p.stdout]
    finally:
        for proc in procs:
            if proc.stdin:
                proc.stdin.close()
        for proc in procs:
            proc.wait(timeout=60)
    assert not claimed[0] & claimed[1]
    assert claimed[0] | claimed[1] == {f"key-{i:03d}" for i in range(200)}
    assert {p.returncode for p in procs} == {0}


# -- checkpoints -----------------------------------------------------------------------------
def test_workers_checkpoints_and_their_removal(store: BaseStore) -> None:
    store.open()
    provider = checkpoint_provider(store)
    with pytest.raises(KeyError):
        provider.get("k1")
    assert not provider.contains("k1")
    provider.set("k1", pack_checkpoint({"step": 1}, {"loss": [(0, 1.0)]}, (1.0, 4.0)))
    provider.set("k1", pack_checkpoint({"step": 2}, {"loss": [(0, 1.0)]}, (2.0, 4.0)))
    provider.set("k2", {"bare": "state"})
    assert provider.get("k1") == {"step": 2}
    assert provider.get_saved("k1")["progress"] == (2.0, 4.0)
    assert provider.get("k2") == {"bare": "state"}
    assert provider.contains("k1")
    provider.remove("k2")
    provider.remove("k2")  # gone already: fine
    assert not provider.contains("k2")

    copy = pickle.loads(pickle.dumps(provider))  # what travels to a worker
    assert copy.get("k1") == {"step": 2}
    store.delete_checkpoints(["k1", "missing"])
    assert not provider.contains("k1")
    store.delete_checkpoints([])


# -- read-only -------------------------------------------------------------------------------
def test_a_readonly_store_never_writes(location: str) -> None:
    with open_store(location) as writer:
        writer.write_outcomes([outcome("k1")])
        writer.start_run("run-1", "m:f", total=1, to_run=1, cached=0)
    with open_store(location, readonly=True) as reader:
        assert reader.readonly
        assert set(reader.lookup(["k1"], ["status"])) == {"k1"}
        assert reader.run_count() == 1
        for write in (
            lambda: reader.write_outcomes([outcome("k2")]),
            lambda: reader.start_run("run-2", "m:f", total=1, to_run=1, cached=0),
            lambda: reader.claim("run-2", ["k3"], since=0.0, lease_timeout=60),
            lambda: reader.delete(["k1"]),
            lambda: reader.record_jobs("slurm", [("k1", "1")]),
        ):
            with pytest.raises((StoreError, sqlite3.Error)):  # SQLite's own, for SQLite
                write()
        assert reader.run_count() == 1 and reader.leases() == {}
        assert set(reader.lookup(["k1", "k2"], ["status"])) == {"k1"}
        assert reader.find_jobs("slurm", ["k1"]) == {}
