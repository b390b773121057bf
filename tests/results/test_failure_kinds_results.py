"""Failure kinds on :class:`Result`, in ``ResultList``'s records, and in what ``open_results``
reads from a real store; ``ResultList.not_run``."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from memento.exceptions import ExperimentTimeout, WorkerDied
from memento.matrix.configs import Config
from memento.results.reading import count_kinds, kinds_text, open_results
from memento.results.result import Result, ResultList, result_record
from memento.run.memento import Memento
from memento.store.backends import open_store
from memento.store.base import StoredOutcome
from memento.store.values import encode

STACKS = 'Thread 0x00007f00 (most recent call first):\n  File "x.py", line 3 in hang\n'


def config(**params: Any) -> Config:
    return Config(params)


def failed(error: BaseException, **params: Any) -> Result:
    return Result(config(**params), None, key=f"k{params}", error=error)


def attached(error: BaseException, kind: str) -> BaseException:
    """An experiment's own exception with the ``kind`` the driver attaches to it."""
    error.kind = kind  # type: ignore[attr-defined]
    return error


# -- Result.kind --------------------------------------------------------------------------------
def test_a_success_has_no_kind() -> None:
    assert Result(config(a=1), 2).kind is None


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (attached(ValueError("boom"), "error"), "error"),
        (attached(MemoryError(), "oom"), "oom"),
        (ExperimentTimeout("ran past 1 s"), "timeout"),
        (WorkerDied("signal 9"), "crash"),
        (WorkerDied("over memory_limit", kind="oom"), "oom"),
        # No kind attached (a Result made by hand): the one the type implies.
        (ValueError("boom"), "error"),
        (MemoryError(), "oom"),
    ],
)
def test_a_failure_has_the_kind_of_its_error(error: BaseException, kind: str) -> None:
    assert failed(error, a=1).kind == kind


def test_an_explicit_kind_wins_and_is_checked() -> None:
    result = Result(config(a=1), None, error=ValueError("x"), kind="interrupted")
    assert result.kind == "interrupted"
    result.kind = "infrastructure"
    assert result.kind == "infrastructure"
    with pytest.raises(ValueError, match=r"Result kind must be None or one of error, .*'later'"):
        result.kind = "later"
    with pytest.raises(ValueError, match="'bogus'"):
        Result(config(a=1), None, error=ValueError("x"), kind="bogus")


@pytest.mark.parametrize(
    "result",
    [
        failed(attached(ValueError("boom"), "oom"), a=1),
        failed(ExperimentTimeout("ran past 1 s"), a=2),
        Result(config(a=3), None, error=ValueError("x"), kind="interrupted"),
    ],
    ids=["attached", "class", "explicit"],
)
def test_the_kind_survives_pickling(result: Result) -> None:
    loaded = pickle.loads(pickle.dumps(result))
    assert loaded.kind == result.kind and loaded.kind is not None
    assert type(loaded).__module__ == "memento.results"


def test_a_result_pickled_before_kinds_loads_with_its_errors_kind() -> None:
    old = failed(WorkerDied("signal 9"), a=1)
    del old.__dict__["_kind"]  # the state a Result pickled before kinds existed has
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.kind == "crash"
    assert pickle.loads(pickle.dumps(Result(config(a=1), 2))).kind is None


# -- records --------------------------------------------------------------------------------------
def grid() -> ResultList:
    return ResultList(
        [
            Result(config(lr=0.1), {"score": 1.0}, key="k1"),
            failed(attached(ValueError("diverged"), "error"), lr=0.2),
            failed(ExperimentTimeout("ran past 5 s"), lr=0.3),
        ]
    )


def test_records_have_kind_next_to_error() -> None:
    records = grid().to_records()
    columns = list(records[0])
    assert columns.index("kind") == columns.index("error") + 1
    assert [r["kind"] for r in records] == [None, "error", "timeout"]
    assert result_record(grid()[2])["kind"] == "timeout"


def test_a_returned_kind_key_does_not_hide_the_failures_kind() -> None:
    results = ResultList(
        [Result(config(a=1), {"kind": "cat"}), failed(ExperimentTimeout("late"), a=2)]
    )
    records = results.to_records()
    assert records[0]["inner.kind"] == "cat" and records[0]["kind"] is None
    assert records[1]["kind"] == "timeout"


def test_to_dataframe_has_a_kind_column() -> None:
    pytest.importorskip("pandas")
    frame = grid().to_dataframe()
    assert list(frame["kind"].isna()) == [True, False, False]  # pandas: None as missing
    assert list(frame["kind"][1:]) == ["error", "timeout"]
    assert list(frame.columns).index("kind") == list(frame.columns).index("error") + 1


# -- ResultList.not_run ---------------------------------------------------------------------------
def test_not_run_is_empty_by_default_and_kept_by_copies_slices_and_pickles() -> None:
    results = grid()
    assert results.not_run == []
    left = [config(lr=0.4), config(lr=0.5)]
    results.not_run = left
    assert results.not_run == left and results.not_run is not left  # a list of its own
    for other in (
        results.copy(),
        copy.copy(results),
        copy.deepcopy(results),
        results[1:],
        pickle.loads(pickle.dumps(results)),
    ):
        assert isinstance(other, ResultList)
        assert other.not_run == left
    assert len(results[1:]) == 2 and results[1:][0].kind == "error"
    assert isinstance(results[0], Result)
    assert ResultList([], not_run=left).not_run == left


def test_a_result_list_pickled_before_not_run_loads_with_an_empty_one() -> None:
    old = grid()
    old.__dict__.pop("_not_run")  # what a ResultList pickled before not_run existed holds
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.not_run == [] and len(loaded) == 3
    loaded.not_run.append(config(a=1))  # its own list, not one shared by every ResultList
    assert ResultList().not_run == []


# -- what open_results reads ----------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "kinds.sqlite"
    value = encode(1.0)

    def failure(key: str, kind: str | None, etype: str, stacks: str | None = None) -> Any:
        return StoredOutcome(
            key=key,
            experiment="m:f",
            status="failed",
            params=json.dumps({"kind": key}),  # a parameter named like the column
            error_type=etype,
            error_message="no",
            kind=kind,
            stacks=stacks,
        )

    rows = [
        failure("t" * 32, "timeout", "ExperimentTimeout", STACKS),
        failure("o" * 32, "oom", "WorkerDied"),
        failure("w" * 32, None, "WorkerDied"),  # stored before kinds: no kind column value
        failure("x" * 32, None, "ExperimentTimeout"),
        failure("v" * 32, None, "ValueError"),
        StoredOutcome(
            key="d" * 32,
            experiment="m:f",
            status="done",
            params=json.dumps({"kind": "d"}),
            value=value.data(),
            value_format=value.format,
            value_info=value.info,
        ),
    ]
    with open_store(path) as opened:
        opened.write_outcomes(rows)
    return path


def test_open_results_gives_each_records_kind_and_stacks(store: Path) -> None:
    records = {r["key"][0]: r for r in open_results(store)}
    assert {k: r["kind"] for k, r in records.items()} == {
        "t": "timeout",
        "o": "oom",
        "w": "crash",
        "x": "timeout",
        "v": "error",
        "d": None,
    }
    assert records["t"]["stacks"] == STACKS
    assert all(r["stacks"] is None for k, r in records.items() if k != "t")


def test_open_results_flat_records_and_dataframe_have_kind(store: Path) -> None:
    results = open_results(store)
    flat = results.to_records()
    columns = list(flat[0])
    assert columns.index("kind") == columns.index("error") + 1
    assert "param.kind" in columns  # the parameter keeps its value under another name
    assert {r["param.kind"]: r["kind"] for r in flat}["w" * 32] == "crash"
    pytest.importorskip("pandas")
    frame = results.to_dataframe()
    kinds = frame["kind"].dropna()
    assert sorted(kinds) == ["crash", "error", "oom", "timeout", "timeout"]


def test_counting_kinds() -> None:
    counted = count_kinds(["timeout", "error", None, "oom", "error", "later"])
    assert list(counted.items()) == [("error", 3), ("timeout", 1), ("oom", 1), ("later", 1)]
    assert kinds_text(counted) == "3 error, 1 timeout, 1 oom, 1 later"
    assert kinds_text({}) == ""


def boom(context: Any, config: Any) -> None:
    raise ValueError(f"no good: {config.a}")


def test_a_real_run_gives_failed_results_their_kind(tmp_path: Path) -> None:
    # End to end through the driver: the kind on the Result, on the exception, in the store.
    path = tmp_path / "run.sqlite"
    memento = Memento(boom, progress=False, executor="inline")
    results = memento.run({"parameters": {"a": [1, 2]}}, cache_path=path, raise_on_failure=False)
    assert results is not None
    assert [r.kind for r in results] == ["error", "error"]
    assert results.not_run == []
    loaded = pickle.loads(pickle.dumps(results))
    assert [r.kind for r in loaded] == ["error", "error"]
    assert [r["kind"] for r in open_results(path)] == ["error", "error"]
    assert [r["kind"] for r in results.to_records()] == ["error", "error"]
