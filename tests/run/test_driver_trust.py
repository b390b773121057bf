"""Issue 9, the driver's side: wrong signatures, `include`, clean stops, honest status,
values the driver cannot load."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from memento import Memento

# --- 1. an experiment that cannot take (context, config) fails before anything runs ------------


def takes_config_only(config: Any) -> int:
    return 1


def takes_three(a: Any, b: Any, c: Any) -> int:
    return 1


class OneArgument:
    def __init__(self, config: Any) -> None:
        self.config = config


class TwoArguments:
    def __init__(self, context: Any, config: Any) -> None:
        self.config = config


def with_default(context: Any, config: Any, extra: int = 3) -> int:
    return int(config.a) + extra


def with_varargs(*args: Any) -> int:
    return int(args[1].a)


@pytest.mark.parametrize(
    ("func", "name"),
    [
        (takes_config_only, "takes_config_only"),
        (takes_three, "takes_three"),
        (OneArgument, "OneArgument"),
        (lambda config: 1, "<lambda>"),
        (functools.partial(takes_three, 1, 2), "partial"),
    ],
)
def test_a_wrong_signature_is_a_type_error_at_construction(
    func: Any, name: str, store_path: Path
) -> None:
    with pytest.raises(TypeError, match=r"experiment\(context, config\)") as info:
        Memento(func)
    assert name in str(info.value)
    assert not store_path.exists() and not store_path.parent.exists()


def test_a_non_callable_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"callable experiment\(context, config\), got int: 42"):
        Memento(42)


@pytest.mark.parametrize(
    "func", [with_default, with_varargs, TwoArguments, functools.partial(takes_three, 1)]
)
def test_callables_that_take_context_and_config_are_accepted(func: Any, store_path: Path) -> None:
    results = Memento(func, executor="inline", progress=False).run(
        {"parameters": {"a": [1]}}, cache_path=store_path
    )
    assert len(results) == 1


def test_callables_without_a_signature_pass() -> None:
    Memento(max, progress=False)  # a builtin whose signature Python cannot tell


# --- 2. `include` ------------------------------------------------------------------------------


def test_include_with_empty_parameters_gives_one_config_per_entry(store_path: Path) -> None:
    from memento.matrix.configs import generate_configurations

    matrix = {"parameters": {}, "include": [{"a": 1}, {"a": 2}, {"b": 3}]}
    configs = list(generate_configurations(matrix))
    assert [c.asdict() for c in configs] == [{"a": 1}, {"a": 2}, {"b": 3}]
    results = Memento(with_varargs_or_b, executor="inline", progress=False).run(
        matrix, cache_path=store_path
    )
    assert [r.inner for r in results] == [1, 2, 3]


def with_varargs_or_b(context: Any, config: Any) -> int:
    return int(config.asdict().get("a", config.asdict().get("b")))


def test_an_include_entry_overwriting_an_earlier_entrys_value_warns_naming_both() -> None:
    from memento.matrix.configs import generate_configurations

    matrix = {
        "parameters": {"x": [1, 2], "y": ["u"]},
        "include": [{"x": 1, "c": "first"}, {"y": "u", "c": "second"}],
    }
    with pytest.warns(UserWarning) as caught:
        configs = list(generate_configurations(matrix))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "{'y': 'u', 'c': 'second'} overwrites 'c'" in messages[0]
    assert "earlier entry {'x': 1, 'c': 'first'}" in messages[0]
    assert caught[0].filename == __file__  # points at the caller, not into memento
    # GitHub Actions' rule: the later entry wins.
    assert [c.asdict() for c in configs] == [
        {"x": 1, "y": "u", "c": "second"},
        {"x": 2, "y": "u", "c": "second"},
    ]


def test_include_entries_that_never_meet_or_agree_do_not_warn() -> None:
    import warnings

    from memento.matrix.configs import generate_configurations

    matrix = {
        "parameters": {"x": [1, 2], "y": ["u", "v"]},
        "exclude": [{"x": 2, "y": "v"}],
        "include": [
            {"x": 1, "c": 1},
            {"x": 2, "c": 2},  # other configs
            {"x": 1, "c": 1},  # same value
            {"x": 2, "y": "v", "c": 3},  # excluded combination: a config of its own
            {"x": 1, "d": 4},  # another key
        ],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        configs = list(generate_configurations(matrix))
    assert {"x": 2, "y": "v", "c": 3} in [c.asdict() for c in configs]


# --- 3. Ctrl-C and SIGTERM stop cleanly ------------------------------------------------------

_DRIVER = """
import sys
from memento import Memento
from experiments import slow_count
matrix = {"parameters": {"a": list(range(int(sys.argv[2])))}, "settings": {"sleep": 0.3}}
results = Memento(slow_count, num_workers=2, progress=False).run(matrix, cache_path=sys.argv[1])
print("cached", sum(r.was_cached for r in results), "total", len(results))
"""


def _query(store: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import sqlite3

    if not store.exists():
        return []
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []


def _done(store: Path) -> int:
    rows = _query(store, "SELECT count(*) FROM results WHERE status = 'done'")
    return int(rows[0][0]) if rows else 0


def _poll(predicate: Any, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _descendants(pid: int) -> set[int]:
    import subprocess

    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True)
    parents: dict[int, list[int]] = {}
    for line in out.stdout.splitlines():
        child, parent = map(int, line.split())
        parents.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("sig", "name", "code"), [("SIGINT", "Ctrl-C", 1), ("SIGTERM", "SIGTERM", 143)]
)
def test_a_signal_stops_the_run_cleanly_and_a_rerun_resumes(
    sig: str, name: str, code: int, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    import signal
    import subprocess
    import sys

    store = tmp_path / "grid.sqlite"
    cmd = [sys.executable, "-c", _DRIVER, str(store), "60"]
    proc = subprocess.Popen(
        cmd, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _poll(lambda: _done(store) >= 3)
    workers = _descendants(proc.pid)
    assert workers
    proc.send_signal(getattr(signal, sig))
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the driver did not stop within 20 s of {sig}") from None
    assert proc.returncode == code, err
    assert "Traceback" not in err
    stored = _done(store)
    assert 3 <= stored < 60
    assert f"stopped by {name}; {stored} new result(s) stored" in err
    assert str(store) in err and "Running again resumes" in err
    assert _query(store, "SELECT state FROM runs") == [("interrupted",)]
    assert _query(store, "SELECT count(*) FROM running") == [(0,)]
    _poll(lambda: not any(_alive(p) for p in workers), timeout=30)
    again = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=150)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["cached", str(stored), "total", "60"]


def test_the_sigterm_handler_is_restored_after_the_run(store_path: Path) -> None:
    import signal

    def mine(signum: int, frame: Any) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        Memento(with_default, executor="inline", progress=False).run(
            {"parameters": {"a": [1]}}, cache_path=store_path
        )
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- 4. the running table holds only what really runs ------------------------------------------


@pytest.mark.timeout(120)
def test_only_experiments_that_began_are_marked_running(store_path: Path) -> None:
    import threading
    import time

    from experiments import slow_count

    seen: list[int] = []
    memento = Memento(slow_count, num_workers=2, progress=False)
    matrix = {"parameters": {"a": list(range(12))}, "settings": {"sleep": 0.4}}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            memento.run(matrix, cache_path=store_path)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        while thread.is_alive():
            rows = _query(store_path, "SELECT count(*) FROM running")
            if rows:
                seen.append(int(rows[0][0]))
            time.sleep(0.02)  # a poll interval, not an ordering
    finally:
        thread.join(60)
    assert not errors, errors
    assert max(seen) == 2  # both workers busy, never the 4 submitted nor the 12 of the grid
    assert _query(store_path, "SELECT count(*) FROM running") == [(0,)]


# --- 5. a value the driver cannot load fails only its own cell ---------------------------------


def _refuse_to_load() -> None:
    raise RuntimeError("this value cannot be loaded here")


class LoadsNowhere:
    """Pickles fine; loading it raises, as a class from a module only the worker has would."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_refuse_to_load, ())


def unloadable_on_two(context: Any, config: Any) -> Any:
    return LoadsNowhere() if config.a == 2 else config.a * 10


@pytest.mark.timeout(120)
def test_a_value_the_driver_cannot_load_fails_only_its_cell(store_path: Path) -> None:
    memento = Memento(unloadable_on_two, num_workers=2, progress=False)
    matrix = {"parameters": {"a": [1, 2, 3]}}
    for _ in range(2):  # a re-run does not abort either
        results = memento.run(matrix, cache_path=store_path, raise_on_failure=False)
        assert [r.inner for r in results if r.ok] == [10, 30]
        (failure,) = results.failures
        assert failure.config.a == 2
        assert "cannot be loaded in the driver" in str(failure.error)
        assert "this value cannot be loaded here" in str(failure.error)
    assert _query(store_path, "SELECT count(*) FROM results WHERE status = 'done'") == [(2,)]
