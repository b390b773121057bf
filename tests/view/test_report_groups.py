"""The grouped report: 72 results (3 models x 4 learning rates x 2 dropouts x 3 repeats), one
line per group with a std band, final values against lr with error bars, group means, and
curves recorded with x never on the axis of curves recorded with timestamps. Checked on the
page, and in headless Chromium (DOM and screenshot)."""

from __future__ import annotations

import html
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, needs_chromium

from memento import Memento
from memento.results.figures import PALETTE, build_figures, style
from memento.results.reading import read_records
from memento.store.sqlite import Store
from memento.view.report import build_report

MODELS = ["mlp", "cnn", "<b>transformer</b>"]  # a label that must stay text
GRID: dict[str, Any] = {
    "parameters": {
        "model": MODELS,
        "lr": [1e-4, 1e-3, 1e-2, 1e-1],
        "dropout": [0.0, 0.3],
        "repeat": [0, 1, 2],
    }
}
GRID_X = ("lr", "dropout")  # the numeric parameters final values are drawn against
START = 1_800_000_000.0  # a Unix time: the x of a timestamped metric


def train(context: Any, config: Any) -> dict[str, float]:
    """A loss curve against the epoch, a throughput against (fake) wall-clock time, and a
    metric recorded against x by the cnn and against time by the others."""
    scale = {"mlp": 1.0, "cnn": 0.6}.get(config.model, 0.3)
    speed = -math.log10(config.lr) / 4  # lr 1e-1 learns fastest
    jitter = 0.04 * (config.repeat - 1) + 0.02 * config.dropout
    for epoch in range(20):
        loss = scale * math.exp(-epoch / (4 + 12 * speed)) + jitter
        context.record({"loss": (epoch, loss)})
        context.record({"throughput": (START + 1.5 * epoch, 100 * scale + 5 * config.repeat)})
        gap = (epoch, loss / 2) if config.model == "cnn" else (START + epoch, loss / 2)
        context.record({"gap": gap})
    return {"accuracy": 1 - scale * speed / 2 - jitter}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("groups") / "grid.sqlite"
    Memento(train, progress=False, executor="inline").run(GRID, cache_path=path)
    return path


@pytest.fixture(scope="module")
def records(store: Path) -> list[dict[str, Any]]:
    with Store(store, readonly=True) as opened:
        return read_records(opened)


def test_figures_group_and_average(records: list[dict[str, Any]]) -> None:
    figures = build_figures(records, by="model")
    kinds = {(f.metric, f.kind) for f in figures.curves}
    assert kinds == {("loss", "x"), ("throughput", "time"), ("gap", "x"), ("gap", "time")}
    loss = next(f for f in figures.curves if f.metric == "loss")
    assert [line.label for line in loss.lines] == sorted(MODELS)
    mlp = next(line for line in loss.lines if line.label == "mlp")
    assert mlp.configs == 24 and mlp.xs == tuple(float(e) for e in range(20))
    mlp_first = [r["series"]["loss"][0][1] for r in records if r["params"]["model"] == "mlp"]
    assert mlp.mean[0] == pytest.approx(sum(mlp_first) / 24) and mlp.std[0] > 0
    throughput = next(f for f in figures.curves if f.metric == "throughput")
    assert max(x for line in throughput.lines for x in line.xs) == pytest.approx(28.5)
    # lr spans three decades: a log axis, one point per lr, std over dropout and repeats.
    final = next(f for f in figures.finals if (f.quantity, f.param) == ("accuracy", "lr"))
    assert final.log_x and [len(line.xs) for line in final.lines] == [4, 4, 4]
    assert all(c == 6 for line in final.lines for c in line.counts)
    assert {f.param for f in figures.finals} == {"lr", "dropout"}  # never repeat, never model
    assert [row[0] for row in figures.table.rows] == sorted(MODELS)
    assert [row[1] for row in figures.table.rows] == [24, 24, 24]


def test_without_by_many_configs_make_one_mean_line(records: list[dict[str, Any]]) -> None:
    loss = next(f for f in build_figures(records).curves if f.metric == "loss")
    assert [line.label for line in loss.lines] == ["all 72 configs"]
    few = [r for r in records if r["params"]["model"] == "mlp" and r["params"]["repeat"] == 0]
    loss = next(f for f in build_figures(few[:8]).curves if f.metric == "loss")
    assert len(loss.lines) == 8 and loss.legend_title == "one line per config"
    assert loss.lines[0].label == "lr=0.0001, dropout=0"  # only what varies


def test_metric_and_by_are_checked(records: list[dict[str, Any]]) -> None:
    figures = build_figures(records, by="model", metrics=["accuracy"])
    assert figures.curves == () and {f.quantity for f in figures.finals} == {"accuracy"}
    with pytest.raises(ValueError, match="No metric or value key named 'los'"):
        build_figures(records, metrics="los")
    with pytest.raises(ValueError, match="No parameter named 'modle' to group by"):
        build_figures(records, by="modle")


def test_styles_are_distinct_then_dashed() -> None:
    assert len(set(PALETTE)) >= 10
    assert len({style(i) for i in range(40)}) == 40
    assert style(0)[1] == () and style(len(PALETTE))[1] != ()


def test_the_page_is_escaped_and_groups_have_bands(records: list[dict[str, Any]]) -> None:
    page = build_report(records, by="model")
    assert "<b>transformer</b>" not in page and html.escape("<b>transformer</b>") in page
    assert 'id="groups-table" class="sortable"' in page
    assert "http://" not in page and "https://" not in page


def test_grouped_figures_escape_every_name() -> None:
    evil = '"><img src=x onerror=alert(3)>'
    record = {
        "key": "0" * 32,
        "experiment": "m:f",
        "params": {evil: evil, "lr": 0.1},
        "status": "done",
        "stale": False,
        "runtime": 1.0,
        "cpu_time": 1.0,
        "peak_memory": 1,
        "attempts": 1,
        "error": None,
        "traceback": None,
        "metrics": {evil: 1.0},
        "series": {evil: [[0, 2.0], [1, 1.0]]},
        "inner": {evil + "v": 0.5},
        "note": None,
    }
    other = {**record, "key": "1" * 32, "params": {evil: evil + "2", "lr": 0.2}}
    page = build_report([record, other], by=evil)
    assert page.count('<svg class="chart"') == 3  # the curve; metric and value against lr
    assert evil not in page and "<img" not in page


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memento", "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_where_metric_and_errors(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    done = run_cli(str(store), "--by", "model", "--where", "dropout=0.3", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "Wrote" in done.stdout and "(36 results," in done.stdout
    bad = run_cli(str(store), "--by", "nope", "-o", str(out))
    assert bad.returncode == 1 and "No parameter named 'nope' to group by" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_cli_writes_png_and_svg_figures(store: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    for fmt in ("png", "svg"):
        target = tmp_path / fmt
        args = ("--by", "model", "--metric", "loss", "--metric", "accuracy")
        done = run_cli(str(store), *args, "--format", fmt, "-o", str(target))
        assert done.returncode == 0, done.stderr
        names = sorted(p.name for p in target.iterdir())
        stems = ["loss", *(f"final-{q}-vs-{p}" for q in ("loss", "accuracy") for p in GRID_X)]
        assert names == sorted(f"{stem}.{fmt}" for stem in stems)
    assert (tmp_path / "png" / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert "<svg" in (tmp_path / "svg" / "loss.svg").read_text()


# -- in a real browser ----------------------------------------------------------------------------


def figure_of(dom: str, caption: str) -> str:
    found = re.search(
        rf'<figure class="plot"><figcaption>{re.escape(caption)}</figcaption>(.*?)</figure>',
        dom,
        re.S,
    )
    assert found is not None, caption
    return found.group(1)


@pytest.mark.timeout(300)
@needs_chromium
def test_the_grouped_report_in_chromium(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    done = run_cli(str(store), "--by", "model", "-o", str(out))
    assert done.returncode == 0, done.stderr
    dom = chromium(tmp_path, "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-ready="1"' in dom.stdout
    assert [line for line in dom.stderr.splitlines() if ":CONSOLE" in line] == []

    loss = figure_of(dom.stdout, "loss")
    assert loss.count('<g class="series"') == 3  # one line per model, not 72
    assert loss.count('<polygon class="band"') == 3
    assert loss.count("<li ") == 3  # legend entries = groups
    assert "&lt;b&gt;transformer&lt;/b&gt;" in loss and "<b>" not in loss
    # Timestamps become seconds since the start, on their own axes: no tick near 1.8e9.
    for caption, kind in (("throughput", "time"), ("gap (against time)", "time")):
        figure = figure_of(dom.stdout, caption)
        assert f'data-kind="{kind}"' in figure and "seconds since" in figure
        ticks = [
            float(t)
            for t in re.findall(r'<text class="tick" data-axis="x"[^>]*>([-0-9.e+]+)<', figure)
        ]
        assert ticks and max(ticks) < 100
    assert 'data-kind="x"' in figure_of(dom.stdout, "gap (against x)")
    final = figure_of(dom.stdout, "final accuracy against lr")
    assert "lr (log scale)" in final and final.count('<path class="err"') == 12

    shot = tmp_path / "groups.png"  # looked at by hand: docs/report-groups.png
    taken = chromium(
        tmp_path,
        "--hide-scrollbars",
        "--window-size=1300,1400",
        f"--screenshot={shot}",
        out.as_uri(),
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 30_000


def test_long_config_labels_keep_the_values_that_tell_lines_apart() -> None:
    def record(i: int, lr: float, dataset: str) -> dict[str, Any]:
        return {
            "key": f"{i:032d}",
            "params": {"model": "a-rather-long-model-name", "lr": lr, "dataset": dataset},
            "status": "done",
            "series": {"loss": [[e, lr * e] for e in range(3)]},
            "metrics": {"loss": lr * 2},
            "inner": None,
        }

    cells = [(0.03, "mnist"), (0.1, "mnist"), (0.03, "fashion-mnist-large")]
    grid = [record(i, lr, d) for i, (lr, d) in enumerate(cells)]
    loss = next(f for f in build_figures(grid).curves if f.metric == "loss")
    labels = [line.label for line in loss.lines]
    # model is the same everywhere: left out. name=value would not fit: the values, and the
    # names in the caption.
    assert labels == ["0.03, mnist", "0.1, mnist", "0.03, fashion-mnist-large"]
    assert loss.legend_title == "one line per config (lr, dataset)"
