"""The live display counts failures by kind and shows warnings: plain lines and a real terminal."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from memento import AggregateException, Memento
from memento.run.progress import WARNING_CHARS, ProgressDisplay

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # everything but "\n"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
WARNING = "3 of 3 failures: ValueError at train.py:42"


def test_plain_lines_count_failures_by_kind_and_show_the_warning() -> None:
    out = io.StringIO()
    display = ProgressDisplay(4, 0, "train", stream=out, mode="plain", interval=3600)
    display.start()
    for key in "abcd":
        display.submitted(key, key)
    display.finished("a", True, 1.0)
    display.finished("b", False, 1.0, kind="oom")
    display.warn(WARNING)
    display.finished("c", False, 1.0, kind="crash")
    display.finished("d", False, 1.0, kind="oom")
    display.stop()
    lines = out.getvalue().splitlines()
    assert not CONTROL.search(out.getvalue())
    assert lines[1] == f"memento: warning: {WARNING}"  # at once, between the two counts lines
    assert "4/4 finished (1 done, 3 failed: 2 oom, 1 crash), 0 cached" in lines[2]
    snap = display.snapshot()
    assert snap.kinds == (("oom", 2), ("crash", 1)) and snap.failed == 3


def test_plain_errors_need_no_breakdown_and_old_calls_still_work() -> None:
    display = ProgressDisplay(3, 0, "train", stream=io.StringIO(), mode="plain")
    display.finished("a", False, 1.0, kind="error")
    display.finished("b", False, 1.0)  # a 1.x-style call: no kind, counted as failed only
    assert "(0 done, 2 failed), 0 cached" in display.snapshot().line()
    display.finished("c", False, 1.0, kind="timeout")
    display.landed(False, kind="timeout")  # another driver's failure, with its kind
    line = display.snapshot().line()
    assert "(0 done, 4 failed: 2 timeout, 1 error), 0 cached" in line


def test_warn_goes_to_stderr_in_plain_mode_on_one_clean_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    display = ProgressDisplay(2, 0, "train", mode="plain", interval=3600)
    display.warn("before start")  # the driver may warn before the first frame: still shown
    display.start()
    display.warn("max_failures=10 reached:\nstopped submitting;\x1b[2J 37 experiments not run")
    display.warn("x" * (2 * WARNING_CHARS))
    display.stop()
    display.warn("after stop")
    captured = capsys.readouterr()
    assert captured.out == ""  # never on stdout
    lines = captured.err.splitlines()
    assert lines[0] == "memento: warning: before start"
    # Newlines become spaces and the escape character goes (what follows it is plain text).
    assert lines[2] == (
        "memento: warning: max_failures=10 reached: stopped submitting; [2J 37 experiments not run"
    )
    assert len(lines[3]) == WARNING_CHARS and lines[3].endswith("...")
    assert lines[-1] == "memento: warning: after stop"
    assert not CONTROL.search(captured.err)


def test_live_rendering_shows_kinds_in_the_status_line() -> None:
    from rich.console import Console

    from memento.run.progress import render

    display = ProgressDisplay(3, 0, "train", stream=io.StringIO(), mode="plain")
    display.finished("a", False, 1.0, kind="oom")
    display.finished("b", False, 1.0, kind="crash")
    console = Console(record=True, width=120, force_terminal=True)
    console.print(render(display.snapshot()))
    assert "2 failed (1 oom, 1 crash)" in console.export_text()


def always_fails(context: Any, config: Any) -> int:
    raise ValueError(f"bad a={config.a}")


def test_a_real_run_with_the_same_error_everywhere_warns_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AggregateException):
        Memento(always_fails, executor="inline").run(
            {"parameters": {"a": [1, 2, 3, 4]}}, cache_path=tmp_path / "s.sqlite"
        )
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("memento: warning: ")]
    assert len(warnings) == 1, err
    assert re.match(
        r"memento: warning: 3 of 3 failures: ValueError at test_progress_kinds\.py:\d+: bad a=",
        warnings[0],
    ), warnings
    assert "(0 done, 4 failed)" in err  # plain errors: no breakdown by kind


# -- in a real terminal ---------------------------------------------------------------------------

TERMINAL = textwrap.dedent(
    f"""
    from memento.run.progress import ProgressDisplay

    display = ProgressDisplay(3, 0, "mod:train", workers=2)
    display.start()
    print("mode", display.mode, flush=True)
    for key in "abc":
        display.submitted(key, "a=" + key)
    display.finished("a", True, 1.0)
    display.finished("b", False, 1.0, kind="oom")
    display.warn({WARNING!r})
    display.finished("c", False, 1.0, kind="crash")
    display.stop()
    """
)


def read_terminal(proc: subprocess.Popen[bytes], master: int, deadline: float) -> str:
    """Everything the child wrote to the pseudo-terminal, until it closes it."""
    chunks = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child's side is closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.timeout(120)
def test_in_a_real_terminal_the_warning_is_printed_above_the_live_display(
    tmp_path: Path,
) -> None:
    script = tmp_path / "terminal.py"
    script.write_text(TERMINAL)
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    for name in ("TTY_COMPATIBLE", "NO_COLOR", "FORCE_COLOR"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    terminal = read_terminal(proc, master, time.monotonic() + 100)
    stdout = proc.stdout.read() if proc.stdout else b""
    assert proc.wait(timeout=100) == 0
    os.close(master)
    assert stdout == b"mode live\n"
    # Styled as a warning: bold yellow, right before the text.
    assert re.search(r"\x1b\[1;33m" + re.escape(f"memento: warning: {WARNING}"), terminal)
    text = ANSI.sub("", terminal)
    assert f"memento: warning: {WARNING}" in text
    assert "2 failed (1 oom, 1 crash)" in text  # the last frame's status line
    # Above the live display: the last frame is drawn after the warning and below it.
    assert text.rindex("2 failed (1 oom, 1 crash)") > text.index(f"memento: warning: {WARNING}")
