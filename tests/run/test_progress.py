"""The live progress display: plain lines off a terminal, rich in one, never on stdout."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from memento import Memento
from memento.run.progress import ProgressDisplay, Snapshot, render

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # everything but "\n"


class TTYBuffer(io.StringIO):
    """A text buffer that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_plain_mode_writes_clean_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    display = ProgressDisplay(3, 2, "mod:train\x1b[31m", workers=2, stream=out, interval=3600)
    display.start()
    assert display.mode == "plain"  # a StringIO is not a terminal
    display.submitted("k1", "a=1\nb=\x1b[2J")
    display.submitted("k2", "a=2")
    display.progress("k1", 5, 10)
    display.finished("k1", True, 2.0)
    display.finished("k2", False, 4.0)
    display.submitted("k3", "a=3")
    display.finished("k3", True, 3.0)
    display.stop()
    display.stop()  # harmless
    text = out.getvalue()
    assert not CONTROL.search(text)
    lines = text.splitlines()
    assert len(lines) == 2  # one at the start, one at the end (the interval never passed)
    assert lines[0].startswith("memento: mod:train")
    assert "0/3 finished" in lines[0] and "2 cached" in lines[0]
    assert "3/3 finished (2 done, 1 failed), 2 cached, 0 running on 2 workers" in lines[1]
    assert lines[1].endswith("ETA 0:00")


def test_plain_mode_repeats_every_interval() -> None:
    out = io.StringIO()
    display = ProgressDisplay(2, 0, "train", stream=out, mode="plain", interval=0.01)
    display.start()
    wrote = threading.Event()

    def wait_for_lines() -> None:
        while out.getvalue().count("\n") < 4:
            threading.Event().wait(0.01)
        wrote.set()

    waiter = threading.Thread(target=wait_for_lines, daemon=True)
    waiter.start()
    assert wrote.wait(60)
    display.stop()
    assert not CONTROL.search(out.getvalue())


def test_counts_are_exact_under_concurrent_calls() -> None:
    display = ProgressDisplay(800, 0, "train", stream=io.StringIO(), mode="plain", interval=3600)
    display.start()

    def worker(offset: int) -> None:
        for i in range(100):
            key = f"{offset}-{i}"
            display.submitted(key, key)
            display.progress(key, 1, 2)
            display.snapshot()
            display.finished(key, i % 10 != 0, 0.1)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = display.snapshot()
    display.stop()
    assert (snap.done, snap.failed, snap.running) == (720, 80, ())


def test_eta_from_runtimes_progress_and_workers() -> None:
    display = ProgressDisplay(10, 0, "train", workers=2, stream=io.StringIO(), mode="plain")
    assert display.snapshot().eta is None  # nothing finished: no estimate
    display.finished("a", True, 2.0)
    display.finished("b", True, 4.0)
    display.submitted("c", "c")
    display.progress("c", 1, 2)
    # 8 left, half of one already done, 3 s each on average, on 2 workers.
    assert display.snapshot().eta == pytest.approx(7.5 * 3 / 2)
    display.progress("c", 5, None)  # the total stays what it was; fractions clamp at 1
    assert display.snapshot().running[0][1] == 1.0


def test_rich_rendering_shows_counts_bars_and_literal_labels() -> None:
    from rich.console import Console

    snap = Snapshot(
        experiment="mod:train",
        total=10,
        done=3,
        failed=1,
        cached=5,
        workers=2,
        elapsed=75.0,
        eta=130.0,
        running=(("lr=[bold]0.1[/bold]", 0.3, 12.0), ("lr=0.2", None, 3.0)),
    )
    console = Console(record=True, width=120, force_terminal=True)
    console.print(render(snap))
    text = console.export_text()
    assert "mod:train" in text and "4/10" in text
    assert "3 done" in text and "1 failed" in text and "5 cached" in text
    assert "2 running on 2 workers" in text and "elapsed 1:15" in text and "ETA 2:10" in text
    assert "lr=[bold]0.1[/bold]" in text  # a label is text, never markup
    assert "30%" in text


def test_live_mode_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = TTYBuffer()
    display = ProgressDisplay(2, 0, "mod:train", stream=out)
    display.start()
    assert display.mode == "live"
    display.submitted("k", "a=1")
    display.finished("k", True, 1.0)
    display.stop()
    text = out.getvalue()
    assert "\x1b[" in text  # drawn with terminal control sequences
    assert "mod:train" in text and "1 done" in text


def test_a_broken_stream_never_breaks_the_run() -> None:
    class Broken(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError("gone")

        def isatty(self) -> bool:
            raise ValueError("closed")

    display = ProgressDisplay(1, 0, "train", stream=Broken())
    display.start()
    display.finished("k", True, 1.0)
    display.stop()


def test_rich_is_not_imported_by_import_memento() -> None:
    code = "import sys, memento, memento.run.progress; print('rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"


# -- with real runs -------------------------------------------------------------------------------
def counting(context: Any, config: Any) -> int:
    for _ in range(3):
        context.progress(1, total=3)
    print(f"experiment output {config.a}")  # goes to stderr, prefixed
    return int(config.a)


def test_the_runner_reports_to_the_display(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import memento.run.progress

    calls: list[tuple[Any, ...]] = []
    lock = threading.Lock()

    class Recording(ProgressDisplay):
        def submitted(self, key: str, label: str) -> None:
            with lock:
                calls.append(("submitted", key, label))
            super().submitted(key, label)

        def progress(self, key: str, done: float, total: float | None) -> None:
            with lock:
                calls.append(("progress", key, done, total))
            super().progress(key, done, total)

        def finished(self, key: str, ok: bool, runtime: float, kind: str | None = None) -> None:
            with lock:
                calls.append(("finished", key, ok))
            super().finished(key, ok, runtime, kind)

    monkeypatch.setattr(memento.run.progress, "ProgressDisplay", Recording)
    results = Memento(counting, executor="thread", num_workers=2).run(
        {"parameters": {"a": [1, 2, 3]}}, cache_path=tmp_path / "s.sqlite"
    )
    assert results is not None
    keys = {r.key for r in results}
    assert {c[1] for c in calls if c[0] == "submitted"} == keys
    assert {c[1] for c in calls if c[0] == "finished"} == keys
    # The last report of each experiment (done == total) always gets through the throttle.
    assert {c[1] for c in calls if c[0] == "progress" and c[2:] == (3.0, 3.0)} == keys


def test_progress_goes_to_stderr_and_stdout_is_the_same_when_cached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.sqlite"
    outputs = []
    for _ in range(2):
        results = Memento(counting, executor="thread", num_workers=2).run(
            {"parameters": {"a": [1, 2, 3]}}, cache_path=store
        )
        assert results is not None
        print([r.inner for r in results])
        outputs.append(capsys.readouterr())
    assert outputs[0].out == outputs[1].out == "[1, 2, 3]\n"
    assert "memento: " in outputs[0].err and "3/3 finished (3 done, 0 failed)" in outputs[0].err
    assert not CONTROL.search(outputs[0].err)
    assert "memento: " not in outputs[1].err  # all cached: nothing to show


def test_progress_false_shows_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Memento(counting, executor="thread", progress=False).run(
        {"parameters": {"a": [1]}}, cache_path=tmp_path / "s.sqlite"
    )
    assert "memento: " not in capsys.readouterr().err


DRIVER = textwrap.dedent(
    """
    import sys
    from memento import Memento

    def experiment(context, config):
        context.progress(1, total=1)
        return config.a * 2

    results = Memento(experiment, executor=sys.argv[2], num_workers=2).run(
        {"parameters": {"a": list(range(6))}}, cache_path=sys.argv[1])
    print("results", [r.inner for r in results])
    """
)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("executor", ["process", "thread"])
def test_subprocess_stdout_is_identical_for_a_first_and_a_cached_run(
    tmp_path: Path, executor: str
) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    store = str(tmp_path / "s.sqlite")
    runs = [
        subprocess.run(
            [sys.executable, str(script), store, executor],
            capture_output=True,
            timeout=150,
            check=True,
        )
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout == b"results [0, 2, 4, 6, 8, 10]\n"
    err = runs[0].stderr.decode()
    assert "memento: driver:experiment 6/6 finished (6 done, 0 failed)" in err
    assert not CONTROL.search(err)


@pytest.mark.timeout(180)
def test_live_display_on_a_terminal_stderr_leaves_stdout_clean(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("TTY_COMPATIBLE", None)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "s.sqlite"), "thread"],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks = []
    while True:  # read the terminal until the child closes it
        ready, _, _ = select.select([master], [], [], 5)
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
    stdout = proc.stdout.read() if proc.stdout else b""
    assert proc.wait(timeout=150) == 0
    os.close(master)
    terminal = b"".join(chunks).decode(errors="replace")
    assert stdout == b"results [0, 2, 4, 6, 8, 10]\n"
    assert "\x1b[" in terminal and "6 done" in terminal and "driver:experiment" in terminal


@pytest.mark.timeout(300)
def test_no_crash_in_jupyter(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = [
        "import sys\nfrom memento import Memento\n"
        "def experiment(context, config):\n"
        "    context.progress(1, total=1)\n"
        "    return config.a\n"
        f"store = {str(tmp_path / 'nb.sqlite')!r}",
        "print(type(sys.stderr).__module__)\n"
        "results = Memento(experiment, executor='thread').run("
        "{'parameters': {'a': [1, 2, 3]}}, cache_path=store)\n"
        "print([r.inner for r in results])",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=240, kernel_name="python3").execute()
    outputs = nb.cells[1].outputs
    assert not [o for o in outputs if o.get("output_type") == "error"]
    stdout = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert stdout.splitlines() == ["ipykernel.iostream", "[1, 2, 3]"]
    widgets = [o for o in outputs if o.get("output_type") == "display_data"]
    assert "3/3 finished" in stderr or widgets  # plain lines, or rich's widget


def test_the_display_counts_what_other_drivers_run_and_store() -> None:
    display = ProgressDisplay(total=4, cached=0, experiment="train", workers=2, mode="plain")
    display.elsewhere(2, ["node7:4242", "node9:17", "node3:5"])
    display.landed(True)
    display.landed(False)
    snap = display.snapshot()
    assert (snap.done, snap.failed, snap.elsewhere) == (1, 1, 2)
    assert "2 running elsewhere (node7:4242, node9:17, ...)" in snap.line()
    display.elsewhere(0, [])
    assert "elsewhere" not in display.snapshot().line()
