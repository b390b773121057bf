"""The one text toolkit: durations, truncation and tails, as every display shows them."""

from __future__ import annotations

import pytest

from memento._util.text import format_seconds, tail, truncate


@pytest.mark.parametrize(
    ("seconds", "clock", "words", "timer", "message"),
    [
        (0.004, "4 ms", "4 ms", "0:00", "0.00s"),
        (3.0, "3 s", "3 s", "0:03", "3.00s"),
        (59.4, "59.4 s", "59.4 s", "0:59", "0:00:59"),
        (307.0, "0:05:07", "5m 07s", "5:07", "0:05:07"),
        (3725.0, "1:02:05", "1h 02m", "1:02:05", "1:02:05"),
    ],
)
def test_one_duration_formatter_in_four_styles(
    seconds: float, clock: str, words: str, timer: str, message: str
) -> None:
    assert format_seconds(seconds) == clock
    assert format_seconds(seconds, style="words") == words
    assert format_seconds(seconds, style="timer") == timer
    assert format_seconds(seconds, style="message") == message
    assert format_seconds(None, style="timer") == ""


def test_truncate_keeps_the_width() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("x" * 11, 10) == "xxxxxxx..."
    assert truncate("x" * 50, 40, marker="\u2026") == "x" * 39 + "\u2026"
    cut = truncate("y" * 400, 300, marker=" ... [truncated]")
    assert len(cut) == 300 and cut.endswith(" ... [truncated]")


def test_tail_keeps_the_last_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(20))
    assert tail(text, 3) == "line 17\nline 18\nline 19"
    assert tail(text, 3, marker="...") == "...\nline 17\nline 18\nline 19"
    assert tail("a\nb", 3, marker="...") == "a\nb"
    assert tail(text, 3, chars=10) == "18\nline 19"
    assert tail("", 3) == ""
