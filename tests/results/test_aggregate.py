"""Aggregating over repeats: ``ResultList.aggregate`` and ``open_results(...).aggregate``, on
real runs into a real store, checked against means and stds computed by hand."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from memento import Memento, MissingExtra, open_results
from memento.results.aggregate import aggregate

GRID: dict[str, Any] = {
    "parameters": {"model": ["a", "b"], "lr": [0.1, 0.01], "repeat": [0, 1, 2]},
}
OFFSET = {"a": 0.5, "b": 0.7}


def accuracy(model: str, lr: float, repeat: int) -> float:
    return OFFSET[model] + lr * 3 + repeat * 0.013 + (repeat == 1) * lr * 0.5


def final_loss(model: str, lr: float, repeat: int) -> float:
    return 1.0 / (1 + repeat) + lr


def scores(context: Any, config: Any) -> dict[str, Any]:
    """A dict of floats (and one string) depending on every parameter, and a loss curve."""
    final = final_loss(config.model, config.lr, config.repeat)
    for step, y in enumerate([final + 1.0, final + 0.5, final]):
        context.record({"loss": (step, y)})
    return {
        "accuracy": accuracy(config.model, config.lr, config.repeat),
        "steps": 10 + config.repeat,
        "name": f"{config.model}-{config.lr}",
    }


def flaky_scores(context: Any, config: Any) -> dict[str, Any]:
    """``scores``, but model b fails on repeat 2, and every time with lr 0.01."""
    if config.model == "b" and (config.repeat == 2 or config.lr == 0.01):
        raise ValueError("diverged")
    return scores(context, config)


def scalar(context: Any, config: Any) -> float:
    return accuracy(config.model, config.lr, config.repeat)


def run(experiment: Any, store: Path) -> Any:
    memento = Memento(experiment, progress=False, executor="thread", num_workers=2)
    return memento.run(GRID, cache_path=store, raise_on_failure=False)


def expected(
    fn: Any, groups: dict[Any, list[tuple[str, float, int]]]
) -> dict[Any, tuple[Any, ...]]:
    """(mean, std, count) of ``fn`` over each group's configs, with the statistics module."""
    out: dict[Any, tuple[Any, ...]] = {}
    for label, configs in groups.items():
        values = [fn(*c) for c in configs]
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        out[label] = (statistics.mean(values) if values else math.nan, std, len(values))
    return out


def configs(model: str | None = None, lr: float | None = None) -> list[tuple[str, float, int]]:
    return [
        (m, x, r)
        for m in GRID["parameters"]["model"]
        for x in GRID["parameters"]["lr"]
        for r in GRID["parameters"]["repeat"]
        if model in (None, m) and lr in (None, x)
    ]


def assert_stats(frame: Any, column: str, want: dict[Any, tuple[Any, ...]]) -> None:
    for label, (mean, std, count) in want.items():
        got = frame.loc[label, column]
        assert got["count"] == count, (label, column)
        if count == 0:
            assert math.isnan(got["mean"]) and math.isnan(got["std"])
            continue
        assert got["mean"] == mean, (label, column)  # exactly: the same arithmetic
        assert (math.isnan(got["std"]) and math.isnan(std)) or got["std"] == std, (label, column)


BY_MODEL_LR = {(m, x): configs(m, x) for m in ("a", "b") for x in (0.1, 0.01)}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store" / "grid.sqlite"


def test_aggregate_by_two_parameters_averages_over_repeats(store: Path) -> None:
    frame = run(scores, store).aggregate(by=["model", "lr"])
    assert list(frame.index) == [("a", 0.1), ("a", 0.01), ("b", 0.1), ("b", 0.01)]
    assert list(frame.index.names) == ["model", "lr"]
    assert list(frame.columns) == [
        ("accuracy", "mean"),
        ("accuracy", "std"),
        ("accuracy", "count"),
        ("steps", "mean"),
        ("steps", "std"),
        ("steps", "count"),
        ("metric.loss", "mean"),
        ("metric.loss", "std"),
        ("metric.loss", "count"),
        ("failed", "count"),
    ]  # "name" holds strings: skipped
    assert_stats(frame, "accuracy", expected(accuracy, BY_MODEL_LR))
    assert_stats(frame, "metric.loss", expected(final_loss, BY_MODEL_LR))  # the last value
    assert_stats(frame, "steps", expected(lambda m, x, r: 10 + r, BY_MODEL_LR))
    assert list(frame["failed", "count"]) == [0, 0, 0, 0]
    assert frame["accuracy", "count"].dtype.kind == "i"


def test_open_results_aggregates_the_same(store: Path) -> None:
    from_run = run(scores, store).aggregate(by=["model", "lr"])
    from_store = open_results(store).aggregate(by=["model", "lr"])
    assert_stats(from_store, "accuracy", expected(accuracy, BY_MODEL_LR))
    assert_stats(from_store, "metric.loss", expected(final_loss, BY_MODEL_LR))
    # Rows come in store order there; the table is otherwise the same.
    pd.testing.assert_frame_equal(from_store.loc[from_run.index], from_run)
    only_a = open_results(store, where={"model": "a"}).aggregate(by="lr")
    assert_stats(only_a, "accuracy", expected(accuracy, {0.1: configs("a", 0.1)}))


def test_a_single_name_and_no_names(store: Path) -> None:
    results = run(scores, store)
    by_model = results.aggregate(by="model")  # averaged over lr and repeat
    assert by_model.index.name == "model" and list(by_model.index) == ["a", "b"]
    assert_stats(by_model, "accuracy", expected(accuracy, {m: configs(m) for m in ("a", "b")}))
    everything = results.aggregate(by=[])
    assert len(everything) == 1
    assert_stats(everything, "accuracy", expected(accuracy, {0: configs()}))
    assert open_results(store).aggregate([])["accuracy", "count"].tolist() == [12]


def test_a_scalar_return_value_is_the_inner_column(store: Path) -> None:
    frame = run(scalar, store).aggregate(by=["model", "lr"])
    assert list(frame.columns) == [
        ("inner", "mean"),
        ("inner", "std"),
        ("inner", "count"),
        ("failed", "count"),
    ]
    assert_stats(frame, "inner", expected(accuracy, BY_MODEL_LR))
    assert_stats(
        open_results(store).aggregate(["model", "lr"]), "inner", expected(accuracy, BY_MODEL_LR)
    )


def test_failed_results_are_counted_apart(store: Path) -> None:
    results = run(flaky_scores, store)
    assert len(results.failures) == 4
    ok = {
        label: [c for c in cs if not (c[0] == "b" and (c[2] == 2 or c[1] == 0.01))]
        for label, cs in BY_MODEL_LR.items()
    }
    for frame in (
        results.aggregate(["model", "lr"]),
        open_results(store).aggregate(["model", "lr"]),
    ):
        assert_stats(frame, "accuracy", expected(accuracy, ok))
        assert_stats(frame, "metric.loss", expected(final_loss, ok))
        assert frame.loc[("b", 0.1), ("accuracy", "count")] == 2
        assert frame.loc[("b", 0.01), ("accuracy", "count")] == 0  # all failed: still a row
        failed = {label: frame.loc[label, ("failed", "count")] for label in BY_MODEL_LR}
        assert failed == {("a", 0.1): 0, ("a", 0.01): 0, ("b", 0.1): 1, ("b", 0.01): 3}


@pytest.mark.parametrize("source", ["run", "store"])
def test_unknown_names_are_errors(store: Path, source: str) -> None:
    results = run(scores, store)
    target = results if source == "run" else open_results(store)
    with pytest.raises(
        ValueError,
        match=r"^No parameter named 'lrr' to aggregate by; the parameters are: lr, model, repeat$",
    ):
        target.aggregate(by=["model", "lrr"])
    with pytest.raises(ValueError, match="names 'model' more than once"):
        target.aggregate(by=["model", "model"])
    with pytest.raises(ValueError, match="No column named 'acc' to aggregate; the columns are"):
        target.aggregate(by="model", columns=["acc"])
    with pytest.raises(ValueError, match="Column 'name' does not hold numbers"):
        target.aggregate(by="model", columns=["name"])


def test_columns_chooses_what_is_aggregated(store: Path) -> None:
    frame = run(scores, store).aggregate(by="model", columns=["accuracy", "runtime"])
    assert list(frame.columns.get_level_values(0).unique()) == ["accuracy", "runtime", "failed"]
    assert (frame["runtime", "count"] == 6).all() and (frame["runtime", "mean"] >= 0).all()


def test_flat_records_with_unusual_values() -> None:
    records = [
        {"hidden": [64, 64], "seed": 0, "x": 1, "status": "done"},
        {"hidden": [64, 64], "seed": 1, "x": float("nan"), "status": "done"},
        {"hidden": None, "seed": 0, "x": True, "status": "done"},
        {"hidden": None, "seed": 1, "x": None, "status": "failed"},
        {"hidden": [32], "seed": 0, "x": float("inf"), "status": "done"},
    ]
    frame = aggregate(records, "hidden", parameters=["hidden", "seed"])
    assert list(frame.index[:1]) == ["[64, 64]"] and frame.index[2] == "[32]"
    assert frame["x", "count"].tolist() == [1, 1, 1]  # NaN and None are missing
    assert frame["x", "mean"].tolist()[:2] == [1.0, 1.0]  # True counts as 1
    assert frame["x", "mean"].tolist()[2] == math.inf
    assert frame["failed", "count"].tolist() == [0, 1, 0]
    assert aggregate([], ["model"], parameters=[]).empty


def test_renamed_columns_keep_their_names() -> None:
    # A store's parameter named like a run column is flattened as param.<name>; a value key
    # named "failed" would clash with the failures column.
    records = [
        {"param.status": "on", "status": "done", "failed": 1.0},
        {"param.status": "on", "status": "done", "failed": 3.0},
        {"param.status": "off", "status": "failed", "failed": None},
    ]
    frame = aggregate(records, "status", parameters=["status"])
    assert frame.index.name == "status" and list(frame.index) == ["on", "off"]
    assert list(frame.columns) == [
        ("inner.failed", "mean"),
        ("inner.failed", "std"),
        ("inner.failed", "count"),
        ("failed", "count"),
    ]
    assert frame.loc["on", ("inner.failed", "mean")] == 2.0
    assert frame["failed", "count"].tolist() == [0, 1]


def test_missing_pandas_names_the_extra(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = run(scores, store)
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'memento-grid\[pandas\]'"):
        results.aggregate("model")
    with pytest.raises(MissingExtra, match=r"pip install 'memento-grid\[pandas\]'"):
        open_results(store).aggregate("model")
