"""The HTML report: self-contained, escaped, and working in a real (headless) browser."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, needs_chromium
from stores import XSS, make_store

from memento import Memento
from memento.results.figures import MAX_LINES
from memento.results.reading import read_records
from memento.store.sqlite import Store
from memento.view.report import _ticks, build_report, write_report


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "store" / "grid.sqlite")


def records_of(path: Path) -> list[dict[str, Any]]:
    with Store(path, readonly=True) as store:
        return read_records(store)


def test_report_is_self_contained_and_escaped(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    counts = write_report(store, out)
    # loss and accuracy curves, and loss, accuracy and score against lr
    assert counts == {"results": 12, "plots": 5}
    page = out.read_text()
    assert page.startswith("<!doctype html>")
    # Nothing to fetch: no URLs, no external scripts, styles, images or fonts.
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"\b(src|href)\s*=", page) and "url(" not in page and "@import" not in page
    assert "default-src 'none'" in page
    # Every stored string is escaped: the parameter, the error, the traceback.
    assert XSS not in page
    assert html.escape(XSS) in page
    assert "diverged with &lt;script&gt;alert(1)&lt;/script&gt; &amp; lr=0.3" in page
    assert page.count("<script>") == 1  # ours, and only ours
    assert page.count('<svg class="chart"') == 5
    assert page.count("<tr>") == 1 + 12
    assert "Failures (4)" in page


def test_every_kind_of_stored_text_is_escaped() -> None:
    evil = '"><img src=x onerror=alert(2)>'
    record = {
        "key": evil + "0" * 32,
        "experiment": f"mod:{evil}",
        "params": {evil: evil, "n": 1},
        "status": "failed",
        "stale": False,
        "runtime": 1.0,
        "cpu_time": 1.0,
        "peak_memory": 1,
        "attempts": 1,
        "error": f"E: {evil}",
        "traceback": f"T {evil}",
        "metrics": {evil: 1.0},
        "series": {evil: [[0, 1.0], [1, 2.0]]},
        "inner": None,
        "note": None,
    }
    page = build_report([record], title=evil)
    assert evil not in page
    assert "<img" not in page


def test_plots_handle_timestamps_text_and_many_configs() -> None:
    base = 1_700_000_000.0
    records = [
        {
            "key": f"{i:032d}",
            "experiment": "m:f",
            "params": {"i": i},
            "status": "done",
            "stale": False,
            "runtime": 1.0,
            "cpu_time": 1.0,
            "peak_memory": 1,
            "attempts": 1,
            "error": None,
            "traceback": None,
            "inner": i,
            "note": None,
            "metrics": {"loss": 0.0},
            "series": {
                "loss": [[base + i + t, 1.0 / (t + 1)] for t in range(5)],
                "label": [[0, "text"], [1, None]],
                "steps": [[f"step{t}", t] for t in range(3)],
            },
        }
        for i in range(MAX_LINES + 5)
    ]
    page = build_report(records)
    assert "seconds since the experiment&#x27;s first record" in page  # elapsed time
    assert "No numeric values to plot: label." in page  # a metric of strings
    plots = page[page.index('<section id="plots">') : page.index('<section id="finals">')]
    assert plots.count('<g class="series"') == 2  # loss and steps: one mean line each
    assert plots.count(f"all {MAX_LINES + 5} configs</li>") == 2  # in the legends


@pytest.mark.parametrize(
    ("low", "high"), [(0, 1), (0.5, 3), (-2.5, 7.1), (1e-6, 3e-6), (5, 5), (0, 0), (1e9, 1e9 + 7)]
)
def test_ticks_cover_the_range(low: float, high: float) -> None:
    ticks = _ticks(low, high)
    assert len(ticks) >= 2 and ticks == sorted(ticks)
    assert ticks[0] <= low and ticks[-1] >= high and ticks[0] < ticks[-1]


# -- in a real browser ----------------------------------------------------------------------------


def console_errors(log: str) -> list[str]:
    """Console lines in chromium's log (``INFO:CONSOLE`` even for ``console.error``): the
    report logs nothing, so any of them is a problem."""
    return [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.mark.timeout(300)
@needs_chromium
def test_the_console_error_check_catches_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><body><script>missingFunction();</script></body>")
    errors = console_errors(chromium(tmp_path, "--dump-dom", bad.as_uri()).stderr)
    assert any("Uncaught ReferenceError: missingFunction" in line for line in errors)


@pytest.mark.timeout(300)
@needs_chromium
def test_the_report_renders_in_chromium(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_report(store, out)
    dom = chromium(tmp_path, "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body is not None
    assert 'data-ready="1"' in body.group(0)  # our script ran to its end
    assert 'data-rows="12"' in body.group(0) and 'data-plots="5"' in body.group(0)
    assert console_errors(dom.stderr) == []
    assert "<script>alert(1)</script>" not in dom.stdout  # still text after parsing

    sorted_dom = chromium(tmp_path, "--dump-dom", out.as_uri() + "#sort=-lr")
    assert console_errors(sorted_dom.stderr) == []
    lr_cells = re.findall(r'<td data-sort="([0-9.]+)"[^>]*>0\.[123]</td>', sorted_dom.stdout)
    assert [float(v) for v in lr_cells] == sorted((float(v) for v in lr_cells), reverse=True)
    assert 'aria-sort="descending"' in sorted_dom.stdout

    shot = tmp_path / "shot.png"
    taken = chromium(
        tmp_path,
        "--hide-scrollbars",
        "--window-size=1200,900",
        f"--screenshot={shot}",
        out.as_uri(),
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 10_000


def test_report_of_a_store_with_nothing_recorded(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    Memento(lambda c, k: k.a, progress=False, executor="inline").run(
        {"parameters": {"a": [1, 2]}}, cache_path=path
    )
    page = build_report(records_of(path))
    assert "No metrics were recorded." in page and page.count("<tr>") == 3
