"""What experiments print: every line reaches the terminal (above the live display, prefixed
with its config), and each experiment's output is stored with its outcome."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from memento import Memento
from memento.view.cli import cli
from memento.worker.output import OUTPUT_LIMIT

LIVE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from memento import Memento

    def experiment(context, config):
        time.sleep(0.2)  # the live display redraws while the lines arrive
        print(f"distinct line {config.n:02d}")
        time.sleep(0.2)
        return config.n

    if __name__ == "__main__":
        results = Memento(experiment, num_workers=2).run(
            {"parameters": {"n": list(range(12))}}, cache_path=sys.argv[1])
        print("FINISHED", len(results))
    """
)


def _stored_outputs(store: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT params, status, output FROM results").fetchall()
    return {params: (status, output) for params, status, output in rows}


@pytest.mark.timeout(180)
def test_lines_show_above_the_live_display_in_a_real_terminal(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/run installs it): no terminal to run in")
    script = tmp_path / "live.py"
    script.write_text(LIVE_SCRIPT)
    store = tmp_path / "s.sqlite"
    socket = f"memento-test-{uuid.uuid4().hex[:8]}"  # a server of our own, never the user's
    env = {**subprocess_env, "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    command = f"{sys.executable} {script} {store}; echo EXIT-CODE:$?; sleep 600"

    def tmux(*args: str) -> str:
        done = subprocess.run(["tmux", "-L", socket, *args], env=env, capture_output=True,
                              text=True, timeout=30, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    tmux("new-session", "-d", "-x", "200", "-y", "50", "-s", "run", command)
    try:
        deadline = time.monotonic() + 150
        pane = ""
        while time.monotonic() < deadline:
            # -J joins lines the terminal wrapped; -S - includes what scrolled off.
            pane = tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "run")
            if "EXIT-CODE:" in pane:
                break
            time.sleep(0.2)
        assert "EXIT-CODE:0" in pane, pane
        assert "FINISHED 12" in pane
        missing = [n for n in range(12) if f"[n={n}] distinct line {n:02d}" not in pane]
        assert not missing, f"lines of n={missing} vanished from the terminal:\n{pane}"
        assert "12/12" in pane  # the live display was on
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], env=env, capture_output=True,
                       timeout=30)  # fmt: skip
    outputs = _stored_outputs(store)
    assert sorted(o for _, o in outputs.values()) == [f"distinct line {n:02d}\n" for n in range(12)]


def talkative(context: Any, config: Any) -> int:
    print(f"to stdout {config.a}")
    print(f"to stderr {config.a}", file=sys.stderr)
    print("colour \x1b[31mred\x1b[0m and [bold]markup[/bold]")
    if config.a == 2:
        raise ValueError("it failed")
    return int(config.a)


@pytest.mark.timeout(120)
def test_output_is_stored_for_done_and_failed_and_shown(
    store_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    results = Memento(talkative, num_workers=2, progress=False).run(
        {"parameters": {"a": [1, 2]}}, cache_path=store_path, raise_on_failure=False
    )
    assert results is not None
    by_a = {r.config.a: r for r in results}
    outputs = _stored_outputs(store_path)
    for a, status in ((1, "done"), (2, "failed")):
        assert outputs[f'{{"a": {a}}}'] == (
            status,
            f"to stdout {a}\nto stderr {a}\ncolour \x1b[31mred\x1b[0m and [bold]markup[/bold]\n",
        )
        shown = CliRunner().invoke(cli, ["show", str(store_path), by_a[a].key])
        assert shown.exit_code == 0, shown.output
        output = shown.output.split("Output (stdout and stderr", 1)[1]
        assert f"  to stdout {a}\n  to stderr {a}\n" in output
        # Escape sequences are shown, not obeyed; markup stays text.
        assert "  colour \\x1b[31mred\\x1b[0m and [bold]markup[/bold]\n" in output
    err = capfd.readouterr().err
    assert "[a=2] to stderr 2" in err and "[a=1] to stdout 1" in err


FLOOD_LINES = int(1.5 * OUTPUT_LIMIT) // 100


def floods(context: Any, config: Any) -> None:
    line = "x" * 99
    for _ in range(FLOOD_LINES):
        print(line)
    print("the very last line")


@pytest.mark.timeout(120)
def test_the_last_mebibyte_is_kept(store_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    Memento(floods, num_workers=1, progress=False).run({"parameters": {"a": [1]}},
                                                       cache_path=store_path)  # fmt: skip
    ((status, output),) = _stored_outputs(store_path).values()
    assert status == "done" and output is not None
    assert output.endswith("x" * 99 + "\nthe very last line\n")
    assert output.startswith("[memento: ") and "earlier characters of output were cut]" in output
    kept = output.split("\n", 1)[1]
    assert len(kept) == OUTPUT_LIMIT
    # Every line reached the terminal all the same.
    assert capfd.readouterr().err.count("[a=1] " + "x" * 99 + "\n") == FLOOD_LINES


FORWARD_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from memento import Memento
    from memento.executors import ProcessExecutor

    def experiment(context, config):
        print(f"printed by {config.a}")
        print(f"warned by {config.a}", file=sys.stderr)
        # Longer than PIPE_BUF: must not mix with the other worker's long line.
        print(str(config.a) * 20000)
        if config.a == 3:
            sys.stdout.flush()
            os._exit(3)  # a crash: what it printed before is stored all the same
        return config.a

    if __name__ == "__main__":
        executors = {"spawn": ProcessExecutor(2, start_method="spawn"),
                     "fork": ProcessExecutor(2, start_method="fork")}
        executor = executors.get(sys.argv[2], sys.argv[2])
        Memento(experiment, executor=executor, num_workers=2, progress=False).run(
            {"parameters": {"a": [1, 2, 3]}}, cache_path=sys.argv[1], raise_on_failure=False)
        print("done")
    """
)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("executor", ["spawn", "fork", "thread", "inline"])
def test_every_executor_forwards_lines(
    tmp_path: Path, subprocess_env: dict[str, str], executor: str
) -> None:
    script = tmp_path / "forward.py"
    script.write_text(FORWARD_SCRIPT if executor in ("spawn", "fork") else
                      FORWARD_SCRIPT.replace("os._exit(3)", "pass"))  # fmt: skip
    store = tmp_path / "s.sqlite"
    done = subprocess.run([sys.executable, str(script), str(store), executor], env=subprocess_env,
                          capture_output=True, text=True, timeout=150, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"  # stdout stays the program's own
    err = done.stderr.splitlines()
    for a in (1, 2, 3):
        assert f"[a={a}] printed by {a}" in err
        assert f"[a={a}] warned by {a}" in err
        assert f"[a={a}] " + str(a) * 20000 in err
    outputs = _stored_outputs(store)
    for a in (1, 2, 3):
        status, output = outputs[f'{{"a": {a}}}']
        assert output == f"printed by {a}\nwarned by {a}\n{str(a) * 20000}\n"
        assert status == ("failed" if a == 3 and executor in ("spawn", "fork") else "done")


def test_an_interactive_prompt_shows_before_the_line_ends(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """The inline executor forwards a flushed partial line, so that input() and breakpoints
    show their prompt."""
    script = textwrap.dedent(
        f"""
        from memento import Memento

        def experiment(context, config):
            answer = input("your answer? ")
            print("got", answer)

        Memento(experiment, executor="inline", progress=False).run(
            {{"parameters": {{"a": [1]}}}}, cache_path={str(tmp_path / "s.sqlite")!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=subprocess_env,
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    seen = b""
    deadline = time.monotonic() + 60
    while b"your answer? " not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stderr.read() or b""
        time.sleep(0.05)
    assert seen.endswith(b"[a=1] your answer? "), seen  # shown before any newline came
    proc.stdin.write(b"42\n")
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    os.set_blocking(proc.stderr.fileno(), True)
    rest = proc.stderr.read()
    assert (seen + rest).endswith(b"[a=1] your answer? got 42\n")
