"""Memento.add_matrix / run_all: dependency order, extra parameters, failures, one notification."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from memento import AggregateException, Config, CyclicDependency, Memento, NotificationProvider
from memento.events import ExperimentFailed, RunFinished
from memento.run.run_all import check_matrix, execution_order


def experiment(context: Any, config: Any) -> Any:
    """data: seed -> seed * 10; model: data + depth; report: the model's number, as text."""
    params = config.asdict()
    if "model" in params:
        return f"report {params['model']}"
    if "data" in params:
        if params.get("depth") == 0:
            raise ValueError("depth 0 is not a model")
        return params["data"] + params.get("depth", 0)
    return params.get("seed", 0) * 10


class Recorder(NotificationProvider):
    def __init__(self) -> None:
        self.events: list[Any] = []

    def notify(self, event: Any) -> None:
        self.events.append(event)

    def ends(self) -> list[RunFinished]:
        return [e for e in self.events if isinstance(e, RunFinished)]


def make(recorder: Recorder | None = None, executor: str = "inline") -> Memento:
    return Memento(experiment, notification_provider=recorder, executor=executor, progress=False)


DATA = {"id": "data", "dependencies": [], "parameters": {"seed": [1, 2]}}
MODEL = {"id": "model", "dependencies": ["data"], "parameters": {"depth": [3, 5]}}
REPORT = {"id": "report", "dependencies": ["model"], "parameters": {}}


# --- add_matrix checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matrix", "error", "match"),
    [
        ([("id", "a")], TypeError, "dict"),
        ({"parameters": {"x": [1]}}, ValueError, "needs an 'id'"),
        ({"id": ["a"], "parameters": {"x": [1]}}, TypeError, "hashable"),
        ({"id": "b", "dependencies": "a", "parameters": {"x": [1]}}, TypeError, "list"),
        ({"id": "b", "dependencies": {"a"}, "parameters": {"x": [1]}}, TypeError, "list"),
        ({"id": "b", "dependencies": ["a", "a"], "parameters": {"x": [1]}}, ValueError, "twice"),
        ({"id": "b", "dependencies": ["a"], "parameters": {"a": [1]}}, ValueError, "rename"),
        ({"id": "b", "dependencies": ["settings"], "parameters": {}}, ValueError, "settings"),
        ({"id": "b", "parameters": {"x": 1}}, TypeError, "list"),
        (
            {"id": "b", "parameters": {"x": [1]}, "dependncies": []},
            ValueError,
            "did you mean 'dependencies'",
        ),
        ({"id": "b"}, ValueError, "parameters"),
    ],
)
def test_add_matrix_rejects_bad_matrices(matrix: Any, error: type, match: str) -> None:
    memento = make()
    with pytest.raises(error, match=match):
        memento.add_matrix(matrix)


def test_add_matrix_rejects_a_duplicate_id() -> None:
    memento = make()
    memento.add_matrix(DATA)
    with pytest.raises(ValueError, match="'data' was already added"):
        memento.add_matrix({"id": "data", "parameters": {"x": [1]}})


def test_dependencies_may_be_left_out_and_parameters_too_when_there_are_dependencies() -> None:
    check_matrix({"id": "a", "parameters": {"x": [1]}}, [])
    check_matrix({"id": "b", "dependencies": ["a"]}, [{"id": "a"}])
    check_matrix({"id": "c", "dependencies": None, "parameters": {"x": [1]}}, [])


# --- order -------------------------------------------------------------------------------------


def ids(matrices: list[Any]) -> list[Any]:
    return [m["id"] for m in matrices]


def test_execution_order_puts_dependencies_first() -> None:
    a = {"id": "a", "dependencies": ["b", "c"]}
    b = {"id": "b", "dependencies": ["d"]}
    c = {"id": "c", "dependencies": ["d"]}
    d = {"id": "d", "dependencies": []}
    e = {"id": "e"}
    assert ids(execution_order([a, b, c, d, e])) == ["d", "e", "b", "c", "a"]
    assert ids(execution_order([e, d, c, b, a])) == ["e", "d", "c", "b", "a"]


@pytest.mark.parametrize(
    ("matrices", "cycle"),
    [
        ([{"id": "a", "dependencies": ["b"]}, {"id": "b", "dependencies": ["a"]}], ["a", "b", "a"]),
        ([{"id": "a", "dependencies": ["a"]}], ["a", "a"]),
        (
            [
                {"id": "x"},
                {"id": "a", "dependencies": ["x", "c"]},
                {"id": "b", "dependencies": ["a"]},
                {"id": "c", "dependencies": ["b"]},
                {"id": "z", "dependencies": ["c"]},
            ],
            ["a", "c", "b", "a"],
        ),
    ],
)
def test_a_cycle_is_named(matrices: list[Any], cycle: list[str]) -> None:
    with pytest.raises(CyclicDependency) as caught:
        execution_order(matrices)
    assert caught.value.cycle == cycle
    assert " -> ".join(map(repr, cycle)) in str(caught.value)


def test_a_cycle_stops_run_all_before_anything_runs(tmp_path: Path) -> None:
    memento = make()
    memento.add_matrix(DATA)
    memento.add_matrix({"id": "a", "dependencies": ["b", "data"], "parameters": {}})
    memento.add_matrix({"id": "b", "dependencies": ["a"], "parameters": {}})
    with pytest.raises(CyclicDependency):
        memento.run_all(cache_path=tmp_path / "store.sqlite")
    assert not (tmp_path / "store.sqlite").exists()


def test_an_unknown_dependency_is_named_before_anything_runs(tmp_path: Path) -> None:
    memento = make()
    memento.add_matrix(DATA)
    memento.add_matrix({"id": "model", "dependencies": ["dataset"], "parameters": {}})
    with pytest.raises(ValueError, match="'model' depends on 'dataset'"):
        memento.run_all(cache_path=tmp_path / "store.sqlite")
    assert not (tmp_path / "store.sqlite").exists()


def test_an_unknown_run_argument_is_refused_before_anything_runs(tmp_path: Path) -> None:
    memento = make()
    memento.add_matrix(DATA)
    with pytest.raises(TypeError, match=r"Memento\.run"):
        memento.run_all(cache_path=tmp_path / "store.sqlite", force_rerun=True)
    assert not (tmp_path / "store.sqlite").exists()


# --- running -----------------------------------------------------------------------------------


def add_chain(memento: Memento) -> None:
    memento.add_matrix(REPORT)  # added first, runs last
    memento.add_matrix(MODEL)
    memento.add_matrix(DATA)


def test_dependents_get_their_dependencies_results_as_a_parameter(tmp_path: Path) -> None:
    memento = make()
    add_chain(memento)
    results = memento.run_all(cache_path=tmp_path / "store.sqlite")
    assert results is not None
    assert list(results) == ["report", "model", "data"]
    assert [r.inner for r in results["data"] or []] == [10, 20]
    model = results["model"] or []
    assert [(r.config.depth, r.config.data, r.inner) for r in model] == [
        (3, 10, 13),
        (3, 20, 23),
        (5, 10, 15),
        (5, 20, 25),
    ]
    assert [r.inner for r in results["report"] or []] == [
        "report 13",
        "report 23",
        "report 15",
        "report 25",
    ]
    assert not any(r.was_cached for rs in results.values() for r in rs or [])


def test_run_all_does_not_modify_the_matrices(tmp_path: Path) -> None:
    memento = make()
    matrices = [copy.deepcopy(m) for m in (REPORT, MODEL, DATA)]
    before = copy.deepcopy(matrices)
    for matrix in matrices:
        memento.add_matrix(matrix)
    memento.run_all(cache_path=tmp_path / "store.sqlite")
    memento.run_all(cache_path=tmp_path / "store.sqlite")
    assert matrices == before


def test_a_second_run_all_reads_everything_from_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    add_chain(first := make())
    first.run_all(cache_path=store)
    add_chain(second := make())
    results = second.run_all(cache_path=store)
    assert results is not None
    assert all(r.was_cached for rs in results.values() for r in rs or [])
    assert sum(len(rs or []) for rs in results.values()) == 10


def test_several_dependencies_form_a_product(tmp_path: Path) -> None:
    memento = make()
    memento.add_matrix({"id": "left", "parameters": {"seed": [1, 2]}})
    memento.add_matrix({"id": "right", "parameters": {"seed": [3, 4, 5]}})
    memento.add_matrix(
        {"id": "both", "dependencies": ["left", "right"], "parameters": {"report": ["r"]}}
    )
    results = memento.run_all(cache_path=tmp_path / "store.sqlite")
    assert results is not None
    both = results["both"] or []
    assert len(both) == 6
    assert {(r.config.left, r.config.right) for r in both} == {
        (a, b) for a in (10, 20) for b in (30, 40, 50)
    }


def test_a_dependency_without_results_gives_an_empty_product(tmp_path: Path) -> None:
    memento = make()
    memento.add_matrix({"id": "none", "parameters": {"seed": [1]}, "exclude": [{"seed": 1}]})
    memento.add_matrix({"id": "after", "dependencies": ["none"], "parameters": {"depth": [1]}})
    results = memento.run_all(cache_path=tmp_path / "store.sqlite")
    assert results == {"none": [], "after": []}


def test_run_all_with_no_matrices() -> None:
    recorder = Recorder()
    assert make(recorder).run_all() == {}
    assert len(recorder.ends()) == 1


@pytest.mark.timeout(120)
def test_run_all_in_worker_processes(tmp_path: Path) -> None:
    memento = make(executor="process")
    add_chain(memento)
    results = memento.run_all(cache_path=tmp_path / "store.sqlite")
    assert results is not None
    assert sorted(r.inner for r in results["report"] or []) == [
        "report 13",
        "report 15",
        "report 23",
        "report 25",
    ]


# --- notifications -----------------------------------------------------------------------------


def test_exactly_one_end_notification_with_the_totals(tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    recorder = Recorder()
    memento = make(recorder)
    memento.add_matrix(DATA)
    memento.add_matrix(MODEL)
    make().run({"parameters": {"seed": [1]}}, cache_path=store)  # one result stored already
    memento.run_all(cache_path=store)
    (end,) = recorder.ends()
    assert recorder.events[-1] is end
    assert (end.done, end.cached, end.failed) == (5, 1, 0)
    assert end.store_path == str(store)


def test_no_end_notification_when_asked_not_to(tmp_path: Path) -> None:
    recorder = Recorder()
    memento = make(recorder)
    memento.add_matrix(DATA)
    memento.run_all(cache_path=tmp_path / "store.sqlite", notify_on_complete=False)
    assert recorder.ends() == []
    assert recorder.events  # the experiments' own events still come


# --- failures ----------------------------------------------------------------------------------


def failing_chain(memento: Memento) -> None:
    memento.add_matrix(DATA)
    memento.add_matrix({"id": "model", "dependencies": ["data"], "parameters": {"depth": [0, 1]}})
    memento.add_matrix(REPORT)  # depends on the failing one: not run
    memento.add_matrix({"id": "other", "parameters": {"seed": [7]}})  # independent: runs


def test_a_failed_matrix_stops_its_dependents_others_run_then_it_raises(tmp_path: Path) -> None:
    recorder = Recorder()
    memento = make(recorder)
    failing_chain(memento)
    with pytest.raises(AggregateException) as caught:
        memento.run_all(cache_path=tmp_path / "store.sqlite")
    error = caught.value
    assert [str(e) for e in error.exceptions] == [
        "depth 0 is not a model",
        "depth 0 is not a model",
    ]
    assert error.skipped == ["report"]  # type: ignore[attr-defined]
    assert "'report' (needs 'model')" in str(error)
    results = error.results  # type: ignore[attr-defined]
    assert results["report"] is None
    assert [r.inner for r in results["other"]] == [70]
    assert [r.ok for r in results["model"]] == [False, False, True, True]
    (end,) = recorder.ends()
    assert (end.done, end.cached, end.failed) == (5, 0, 2)
    assert all(isinstance(f, ExperimentFailed) and f.exc_type == "ValueError" for f in end.failures)


def test_without_raising_failures_come_back_and_dependents_are_none(tmp_path: Path) -> None:
    memento = make()
    failing_chain(memento)
    results = memento.run_all(cache_path=tmp_path / "store.sqlite", raise_on_failure=False)
    assert results is not None
    assert results["report"] is None
    assert len((results["model"] or []).failures) == 2
    assert [r.inner for r in results["other"] or []] == [70]


# --- dry run -----------------------------------------------------------------------------------


def test_dry_run_prints_each_plan_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.sqlite"
    memento = make()
    add_chain(memento)
    assert memento.run_all(dry_run=True, cache_path=store) is None
    out = capsys.readouterr().out
    assert not store.exists()
    assert out.index("Matrix 'data'") < out.index("Matrix 'model'") < out.index("Matrix 'report'")
    assert "Matrix 'data': 2 configs: 0 cached, 0 failed before, 0 stale, 2 new" in out
    assert "Matrix 'model': 4 configs, whose inputs are not known until 'data' has run" in out
    assert "depth=3, data=(result 1 of 'data')" in out
    assert "Matrix 'report': 4 configs, whose inputs are not known until 'model' has run" in out
    assert out.rstrip().endswith("Exiting due to dry run")


def test_dry_run_after_a_run_plans_dependents_from_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.sqlite"
    memento = make()
    memento.add_matrix(DATA)
    memento.add_matrix(MODEL)
    memento.run({"parameters": {"seed": [1, 2]}}, cache_path=store)
    capsys.readouterr()
    assert memento.run_all(dry_run=True, cache_path=store) is None
    out = capsys.readouterr().out
    assert "Matrix 'data': 2 configs: 2 cached" in out
    assert "Matrix 'model': 4 configs: 0 cached, 0 failed before, 0 stale, 4 new" in out
    assert "depth=5, data=20" in out


@pytest.mark.timeout(120)
def test_numeric_matrix_ids_as_in_memento_ml(tmp_path: Path) -> None:
    """memento-ml 1.2 code used ids like 1 and 2; str(id) becomes the parameter name."""
    memento = Memento(_sum_dependency, executor="inline", progress=False)
    memento.add_matrix({"id": 1, "dependencies": [], "parameters": {"x": [1, 2]}})
    memento.add_matrix({"id": 2, "dependencies": [1], "parameters": {"k": [10]}})
    results = memento.run_all(cache_path=tmp_path / "s.sqlite")
    assert results is not None
    assert [r.inner for r in results[2]] == [11, 12]
    assert results[2][0].config.asdict()["1"] == 1


def _sum_dependency(context: object, config: Config) -> int:
    params = config.asdict()
    return int(params.get("x", 0)) + int(params.get("1", 0)) + int(params.get("k", 0))
