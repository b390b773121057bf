"""The figures of :mod:`memento.results.figures` drawn with matplotlib: for notebooks
(``results.plot(by="model")``) and for papers (``memento report --format png|svg``).

matplotlib is optional (the ``plot`` extra) and imported on first use, so ``import memento``
never pays for it; without it these functions raise :class:`~memento.exceptions.MissingExtra`
naming the extra. Colours, dashes, bands and error bars follow the HTML report.

Example::

    figures = open_results("runs/grid.sqlite").plot(by="model", metric="loss")
    figures[0].savefig("loss.pdf")
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from memento._util.optional import optional_import
from memento.results.figures import (
    CurveFigure,
    Figures,
    FinalFigure,
    build_figures,
    short_label,
    style,
)

#: The size of one figure, inches: a column of a two-column paper at 2x.
FIGSIZE = (7.0, 3.6)


def plot_records(
    records: Sequence[Mapping[str, Any]],
    *,
    by: str | None = None,
    metric: str | Iterable[str] | None = None,
    purpose: str = "plot()",
) -> list[Any]:
    """The matplotlib ``Figure`` of every curve and final-value figure of ``records``."""
    figures = build_figures(records, by=by, metrics=metric)
    return render(figures, purpose=purpose)


def render(figures: Figures, *, purpose: str = "plot()") -> list[Any]:
    """One matplotlib ``Figure`` per figure: curves first, then final values."""
    pyplot = _matplotlib("matplotlib.pyplot", purpose)
    out = [_curve(pyplot.figure(figsize=FIGSIZE), f) for f in figures.curves]
    out += [_final(pyplot.figure(figsize=FIGSIZE), f) for f in figures.finals]
    return out


def save_figures(
    figures: Figures, directory: str | os.PathLike[str], fmt: Literal["png", "svg"]
) -> list[Path]:
    """Write every figure as ``DIRECTORY/<name>.<fmt>``; return the paths written."""
    # A bare Figure, not pyplot's: no GUI backend, nothing kept open after the file is written.
    module = _matplotlib("matplotlib.figure", f"memento report --format {fmt}")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    drawn = [(f.name, _curve(module.Figure(figsize=FIGSIZE), f)) for f in figures.curves]
    drawn += [(f.name, _final(module.Figure(figsize=FIGSIZE), f)) for f in figures.finals]
    for name, figure in drawn:
        path = target / f"{name}.{fmt}"
        figure.savefig(path, format=fmt, dpi=200 if fmt == "png" else None, bbox_inches="tight")
        written.append(path)
    return written


def _matplotlib(module: str, purpose: str) -> Any:
    optional_import("matplotlib", "plot", purpose)  # names the extra, not the submodule
    return optional_import(module, "plot", purpose)


def _curve(fig: Any, figure: CurveFigure) -> Any:
    ax = fig.subplots()
    for line in figure.lines:
        colour, dash = style(line.index)
        ax.plot(line.xs, line.mean, color=colour, dashes=dash, lw=1.6, label=_text(line.label))
        if any(line.std):
            low = [m - s for m, s in zip(line.mean, line.std)]
            high = [m + s for m, s in zip(line.mean, line.std)]
            ax.fill_between(line.xs, low, high, color=colour, alpha=0.18, lw=0)
    ax.set_title(_text(figure.title))
    ax.set_xlabel(figure.x_label)
    ax.set_ylabel(_text(figure.metric))
    _legend(ax, figure.legend_title)
    return fig


def _final(fig: Any, figure: FinalFigure) -> Any:
    ax = fig.subplots()
    for line in figure.lines:
        colour, dash = style(line.index)
        ax.errorbar(
            line.xs,
            line.mean,
            yerr=line.std,
            color=colour,
            dashes=dash,
            lw=1.6,
            marker="o",
            ms=4,
            capsize=3,
            label=_text(line.label),
        )
    if figure.log_x:
        ax.set_xscale("log")
    ax.set_title(_text(figure.title))
    ax.set_xlabel(_text(figure.param))
    ax.set_ylabel(_text(figure.quantity))
    _legend(ax, figure.legend_title)
    return fig


def _text(label: str) -> str:
    """``label`` shown as it is: a ``$`` would start matplotlib's math mode."""
    return label.replace("$", r"\$")


def _legend(ax: Any, title: str) -> None:
    """A legend outside the axes, on the right, so that it never hides a line."""
    ax.grid(True, color="#e6e8ec", lw=0.8)
    handles, labels = ax.get_legend_handles_labels()
    short = [short_label(label, 40) for label in labels]
    ax.legend(
        handles,
        short,
        title=textwrap.fill(title, 28),
        title_fontsize=8,
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        ncol=2 if len(labels) > 14 else 1,
        frameon=False,
    )
    ax.figure.tight_layout()


__all__ = ["FIGSIZE", "plot_records", "render", "save_figures"]
