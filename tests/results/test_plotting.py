"""``results.plot(...)``: the report's figures drawn by matplotlib (Agg), from a run's
``ResultList`` and from a store read by ``open_results``, and the error when matplotlib is
missing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from memento import Memento, open_results
from memento.exceptions import MissingExtra
from memento.results.figures import PALETTE

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

GRID: dict[str, Any] = {
    "parameters": {"model": ["mlp", "cnn"], "lr": [0.001, 0.01, 0.1], "repeat": [0, 1]}
}


def train(context: Any, config: Any) -> dict[str, float]:
    base = 1.0 if config.model == "mlp" else 0.5
    for epoch in range(5):
        context.record({"loss": (epoch, base / (epoch + 1) + 0.01 * config.repeat)})
    return {"accuracy": 1 - base * config.lr - 0.01 * config.repeat}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    path = tmp_path_factory.mktemp("plot") / "grid.sqlite"
    results = Memento(train, progress=False, executor="inline").run(GRID, cache_path=path)
    return results, path


def legend_texts(figure: Any) -> list[str]:
    return [t.get_text() for t in figure.axes[0].get_legend().get_texts()]


@pytest.mark.parametrize("source", ["run", "store"])
def test_plot_draws_a_mean_line_and_band_per_group(run: tuple[Any, Path], source: str) -> None:
    results = run[0] if source == "run" else open_results(run[1])
    figures = results.plot(by="model", metric="loss")
    try:
        assert len(figures) == 2  # the loss curve, and the final loss against lr
        curve, final = figures
        ax = curve.axes[0]
        assert ax.get_title() == "loss" and ax.get_xlabel() == "x"
        assert [line.get_label() for line in ax.get_lines()] == ["cnn", "mlp"]
        assert legend_texts(curve) == ["cnn", "mlp"]
        cnn = ax.get_lines()[0]
        assert list(cnn.get_xdata()) == [0, 1, 2, 3, 4]
        assert cnn.get_ydata()[0] == pytest.approx(0.505)  # mean of the 6 cnn configs
        assert len(ax.collections) == 2  # a std band per group
        assert {line.get_color() for line in ax.get_lines()} == set(PALETTE[:2])
        fax = final.axes[0]
        assert fax.get_title() == "final loss against lr" and fax.get_xscale() == "log"
        assert legend_texts(final) == ["cnn", "mlp"]
    finally:
        for figure in figures:
            matplotlib.pyplot.close(figure)


def test_plot_without_by_and_of_a_value_key(run: tuple[Any, Path]) -> None:
    figures = run[0].plot(metric=["accuracy"])
    try:
        assert len(figures) == 1
        ax = figures[0].axes[0]
        assert ax.get_title() == "final accuracy against lr" and ax.get_ylabel() == "accuracy"
        assert legend_texts(figures[0]) == ["all"]
        (bars,) = ax.containers  # one errorbar per group
        line = bars.lines[0]
        assert list(line.get_xdata()) == [0.001, 0.01, 0.1]
        assert line.get_ydata()[0] == pytest.approx(1 - 0.75 * 0.001 - 0.005)
    finally:
        for figure in figures:
            matplotlib.pyplot.close(figure)


def test_plot_names_the_extra_when_matplotlib_is_missing(
    run: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(MissingExtra, match=r"pip install 'memento-grid\[plot\]'"):
        run[0].plot(by="model")


def test_plot_checks_its_arguments(run: tuple[Any, Path]) -> None:
    with pytest.raises(ValueError, match="No metric or value key named 'los'"):
        run[0].plot(metric="los")
