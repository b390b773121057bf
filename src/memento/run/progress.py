"""Live progress of a run, on stderr.

The runner creates one :class:`ProgressDisplay` per ``Memento.run`` that has experiments to
run (unless ``Memento(..., progress=False)``) and calls ``start()``, then ``submitted``,
``progress`` and ``finished`` (with the failure's kind) as experiments move along (from
several threads), ``warn`` when something needs the user's eye at once (a systematic failure,
``max_failures`` reached), then ``stop()``.

Two renderings, chosen in :meth:`ProgressDisplay.start`:

- **live**: in a terminal or a Jupyter notebook, a ``rich.live.Live`` display redrawn twice
  a second: counts, elapsed time, ETA, an overall bar, and one bar per running experiment
  (the fraction it reported through ``context.progress``).
- **plain**: when stderr is not a terminal (CI logs, files, pipes), one line of plain ASCII
  every ``interval`` seconds and one at the end, with no control characters (wrapped here)::

      memento: train 18/40 finished (15 done, 3 failed: 2 oom, 1 error), 10 cached,
      4 running, elapsed 1:23, ETA 2:10
      memento: warning: 3 of 3 failures: ValueError at train.py:42

(failures are counted by kind once one of them is not a plain ``error``).

Nothing is ever written to stdout. ``rich`` is imported only in ``start()``, so that
``import memento`` stays fast.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from memento._util.text import format_seconds, truncate

Mode = Literal["auto", "live", "plain"]

#: Running experiments shown individually in the live display; the rest are counted.
MAX_ROWS = 8
#: The longest warning line shown (a long error message is cut, ending in "...").
WARNING_CHARS = 500
#: Characters of experiments' output waiting to be shown before their threads wait.
OUTPUT_BACKLOG = 1 << 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass
class _Running:
    label: str
    submitted: float
    done: float = 0.0
    total: float | None = None
    #: When the worker reported that it began (None while the job waits in a queue).
    started: float | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total or self.total <= 0:
            return None
        return max(0.0, min(1.0, self.done / self.total))


@dataclass(frozen=True)
class Snapshot:
    """The state of a run at one instant, as the display shows it."""

    experiment: str
    total: int
    done: int
    failed: int
    cached: int
    workers: int | None
    elapsed: float
    eta: float | None
    #: (label, fraction or None, seconds since started), oldest first.
    running: tuple[tuple[str, float | None, float], ...]
    #: Experiments handed to the executor that have not started yet.
    queued: int = 0
    #: Experiments of this grid that other drivers run now, and who they are (``host:pid``).
    elsewhere: int = 0
    holders: tuple[str, ...] = ()
    #: Failures by kind (those whose kind was given), most first: ``(("oom", 2), ...)``.
    kinds: tuple[tuple[str, int], ...] = ()

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def kinds_text(self) -> str:
        """``"2 oom, 1 crash"``: the failures by kind, or ``""`` when every failure is a plain
        ``error`` (the usual case, which needs no breakdown) or none has a kind."""
        if all(kind == "error" for kind, _ in self.kinds):
            return ""
        return ", ".join(f"{n} {kind}" for kind, n in self.kinds)

    def failed_text(self) -> str:
        """``"3 failed"``, or ``"3 failed: 2 oom, 1 crash"``."""
        kinds = self.kinds_text()
        return f"{self.failed} failed: {kinds}" if kinds else f"{self.failed} failed"

    def _queued(self) -> str:
        return f", {self.queued} queued" if self.queued else ""

    def elsewhere_text(self) -> str:
        """``", 3 running elsewhere (node2:4242)"``, or nothing."""
        if not self.elsewhere:
            return ""
        shown = ", ".join(self.holders[:2]) + (", ..." if len(self.holders) > 2 else "")
        return f", {self.elsewhere} running elsewhere ({shown})"

    def line(self) -> str:
        """The one-line summary of the plain rendering (ASCII, no control characters)."""
        eta = _timer(self.eta)
        workers = f" on {self.workers} workers" if self.workers else ""
        return _clean(
            f"memento: {self.experiment} {self.finished}/{self.total} finished "
            f"({self.done} done, {self.failed_text()}), {self.cached} cached, "
            f"{len(self.running)} running{workers}{self._queued()}{self.elsewhere_text()}, "
            f"elapsed {_timer(self.elapsed)}, ETA {eta}"
        )


class ProgressDisplay:
    """Shows the progress of one run on stderr; every method is safe to call from any thread.

    Example::

        display = ProgressDisplay(total=40, cached=10, experiment="train", workers=4)
        display.start()
        display.submitted(key, "model=SVC, dataset='mnist'")
        display.progress(key, 3, 10)        # 30 % of that experiment
        display.finished(key, True, 12.5)  # ok, 12.5 s
        display.finished(other, False, 3.0, kind="oom")  # a failure, counted by kind
        display.warn("3 of 3 failures: ValueError at train.py:42")  # shown at once, kept
        display.stop()

    :param total: experiments this run will execute (not counting cached ones).
    :param cached: results read from the store instead of running.
    :param experiment: the experiment's name, shown in the header.
    :param workers: how many experiments run at once, for the ETA and the header.
    :param stream: where to draw; defaults to ``sys.stderr`` as it is when ``start()`` runs.
    :param mode: ``"live"`` (rich), ``"plain"`` (a periodic line) or ``"auto"``: live in a
        terminal or Jupyter, plain otherwise.
    :param interval: seconds between two lines of the plain rendering.
    """

    def __init__(
        self,
        total: int,
        cached: int,
        experiment: str,
        *,
        workers: int | None = None,
        stream: TextIO | None = None,
        mode: Mode = "auto",
        interval: float = 10.0,
    ) -> None:
        if mode not in ("auto", "live", "plain"):
            raise ValueError(f"mode must be 'auto', 'live' or 'plain', got {mode!r}")
        self.total = total
        self.cached = cached
        self.experiment = experiment
        self.workers = workers
        self.mode: Mode = mode
        self.interval = interval
        self._stream = stream
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._done = 0
        self._failed = 0
        self._kinds: Counter[str] = Counter()
        self._elsewhere: tuple[int, tuple[str, ...]] = (0, ())
        self._runtime_sum = 0.0
        self._runtime_count = 0
        self._started: float | None = None
        self._stopped = False
        self._live: Any = None
        self._ticker: threading.Thread | None = None
        self._wake = threading.Event()
        # Output waiting to be shown by the printer thread (see output()).
        self._output: list[str] = []
        self._backlog = 0
        self._printing = False
        self._printer: threading.Thread | None = None
        self._printed = threading.Condition()

    # -- the runner's calls ------------------------------------------------------------------
    def start(self) -> None:
        """Begin drawing. Never raises for a stream rich cannot drive: falls back to plain."""
        with self._lock:
            if self._started is not None:
                return
            self._started = time.monotonic()
        stream = self._stream if self._stream is not None else sys.stderr
        self._stream = stream
        mode = self.mode if self.mode != "auto" else _choose_mode(stream)
        if mode == "live":
            try:
                self._live = self._start_live(stream)
            except Exception:
                self._live = None
                mode = "plain"
        self.mode = mode
        if mode == "plain":
            self._write(self.snapshot().line())
            self._ticker = threading.Thread(target=self._tick, name="memento-progress", daemon=True)
            self._ticker.start()

    def submitted(self, key: str, label: str) -> None:
        """An experiment was handed to the executor."""
        with self._lock:
            self._running[key] = _Running(_clean(label), time.monotonic())

    def progress(self, key: str, done: float, total: float | None) -> None:
        """The experiment ``key`` reported ``done`` units of work out of ``total``."""
        with self._lock:
            entry = self._running.get(key)
            if entry is not None:
                if entry.started is None:  # the first report: the worker has begun
                    entry.started = time.monotonic()
                entry.done = done
                if total is not None:
                    entry.total = total

    def finished(self, key: str, ok: bool, runtime: float, kind: str | None = None) -> None:
        """An experiment's outcome was stored (``ok`` false for a failure, whose ``kind``,
        one of :data:`memento.exceptions.FAILURE_KINDS`, is counted when given)."""
        with self._lock:
            self._running.pop(key, None)
            self._count(ok, kind)
            if runtime >= 0:
                self._runtime_sum += runtime
                self._runtime_count += 1

    def landed(self, ok: bool, kind: str | None = None) -> None:
        """An experiment another driver ran has its outcome stored (no runtime of ours)."""
        with self._lock:
            self._count(ok, kind)

    def _count(self, ok: bool, kind: str | None) -> None:
        if ok:
            self._done += 1
        else:
            self._failed += 1
            if kind:
                self._kinds[_clean(kind)] += 1

    def warn(self, text: str) -> None:
        """Show ``text`` at once as a warning that stays: a line printed above the live
        display (styled as a warning, so it stands out of the experiments' output), or, off a
        terminal, ``memento: warning: <text>`` on the stream; on one line (newlines become
        spaces), cut to :data:`WARNING_CHARS`. Before ``start()`` or after
        ``stop()`` it is written to the stream (stderr) as in plain mode.

        Example::

            display.warn("3 of 3 failures: ValueError at train.py:42")
            display.warn("max_failures=10 reached: stopped submitting; 37 experiments not run")
        """
        line = truncate(f"memento: warning: {' '.join(_clean(text).split())}", WARNING_CHARS)
        live = self._live
        if live is not None:
            try:
                from rich.text import Text

                live.console.print(Text(line, style="bold yellow"), soft_wrap=True)
                live.refresh()  # the frame under the warning shows the counts that led to it
                return
            except Exception:  # a broken console: fall back to a plain line
                pass
        self._write(line, self._stream if self._stream is not None else sys.stderr)

    def elsewhere(self, count: int, holders: list[str]) -> None:
        """``count`` experiments of this run are held by other drivers (``host:pid``)."""
        with self._lock:
            self._elsewhere = (count, tuple(_clean(h) for h in holders))

    def output(self, text: str) -> None:
        """Show ``text``, lines an experiment printed (prefixed already): above the live
        display, or on the stream. Shown as written: no markup, no highlighting (``[red]``
        stays ``[red]``); in the live display, ANSI colours are kept and other control
        sequences dropped, so that they cannot break it.

        A thread of the display shows them, in batches: a flood of output costs one redraw
        per batch, not per line, and the experiment's thread never waits for a redraw (unless
        more than :data:`OUTPUT_BACKLOG` characters wait already).
        """
        with self._printed:
            if self._stopped and not self._output and not self._printing:
                self._show(text)  # after the last frame: in order, nothing is pending
                return
            while self._backlog > OUTPUT_BACKLOG and self._printer_alive():
                self._printed.wait(0.5)
            self._output.append(text)
            self._backlog += len(text)
            if not self._printer_alive():
                self._printer = threading.Thread(
                    target=self._print_output, name="memento-output-display", daemon=True
                )
                self._printer.start()
            self._printed.notify_all()

    def _printer_alive(self) -> bool:
        return self._printer is not None and self._printer.is_alive()

    def _print_output(self) -> None:
        while True:
            with self._printed:
                if not self._output:
                    self._printed.wait_for(lambda: bool(self._output), timeout=1.0)
                if not self._output:
                    if self._stopped:
                        return
                    continue
                batch = "".join(self._output)
                self._output.clear()
                self._backlog = 0
                self._printing = True
                self._printed.notify_all()
            try:
                self._show(batch)
            finally:
                with self._printed:
                    self._printing = False
                    self._printed.notify_all()

    def _show(self, text: str) -> None:
        live = self._live
        if live is not None:
            try:
                from rich.text import Text

                end = "\n" if text.endswith("\n") else ""
                live.console.print(
                    Text.from_ansi(text[: len(text) - len(end)], no_wrap=True),
                    end=end,
                    soft_wrap=True,
                    markup=False,
                    highlight=False,
                )
                return
            except Exception:
                pass
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except Exception:  # a closed or broken stream must not break the run
            pass

    def stop(self) -> None:
        """Draw the final state and stop; calling it twice is harmless."""
        with self._lock:
            if self._stopped or self._started is None:
                self._stopped = True
                return
            self._stopped = True
        with self._printed:  # output still to show goes above the last frame
            self._printed.wait_for(lambda: not self._output and not self._printing, timeout=10)
            self._printed.notify_all()
        self._wake.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        live, self._live = self._live, None
        if live is not None:
            try:
                live.stop()
            except Exception:
                pass
        elif self.mode == "plain":
            self._write(self.snapshot().line())

    # -- state -------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The current counts, timings and running experiments."""
        now = time.monotonic()
        with self._lock:
            elapsed = now - self._started if self._started is not None else 0.0
            running = sorted(
                (r for r in self._running.values() if r.started is not None),
                key=lambda r: r.started or 0.0,
            )
            rows = tuple((r.label, r.fraction, now - (r.started or now)) for r in running)
            queued = len(self._running) - len(running)
            eta = self._eta(running)
            return Snapshot(
                experiment=_clean(self.experiment),
                total=self.total,
                done=self._done,
                failed=self._failed,
                cached=self.cached,
                workers=self.workers,
                elapsed=elapsed,
                eta=eta,
                running=rows,
                queued=queued,
                elsewhere=self._elsewhere[0],
                holders=self._elsewhere[1],
                kinds=tuple(self._kinds.most_common()),
            )

    def _eta(self, running: list[_Running]) -> float | None:
        """Seconds left: the work not yet done, at the mean runtime of finished experiments,
        shared among the workers (or among the running experiments when workers is unknown)."""
        remaining = self.total - self._done - self._failed
        if remaining <= 0:
            return 0.0
        if not self._runtime_count:
            return None
        mean = self._runtime_sum / self._runtime_count
        progressed = sum(r.fraction or 0.0 for r in running)
        work = max(0.0, remaining - progressed) * mean
        parallel = self.workers or max(1, len(running))
        return work / max(1, min(parallel, remaining))

    # -- plain rendering ---------------------------------------------------------------------
    def _tick(self) -> None:
        while not self._wake.wait(self.interval):
            self._write(self.snapshot().line())

    def _write(self, line: str, stream: TextIO | None = None) -> None:
        stream = stream if stream is not None else self._stream
        if stream is None:
            return
        try:
            stream.write(line + "\n")
            stream.flush()
        except Exception:  # a closed or broken stream must not break the run
            pass

    # -- live rendering ----------------------------------------------------------------------
    def _start_live(self, stream: TextIO) -> Any:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=stream, highlight=False)
        # stdout is not redirected: it belongs to the user's program and must stay unchanged.
        live = Live(
            get_renderable=self._renderable,
            console=console,
            refresh_per_second=2,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=True,
        )
        live.start(refresh=True)
        return live

    def _renderable(self) -> Any:
        return render(self.snapshot())


def render(snap: Snapshot) -> Any:
    """The rich renderable of a snapshot: a header with an overall bar, then running rows."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    header = Table.grid(padding=(0, 1))
    header.add_column(no_wrap=True)
    header.add_column(width=30)
    header.add_column(no_wrap=True)
    header.add_row(
        Text(snap.experiment, style="bold", overflow="ellipsis"),
        ProgressBar(total=max(1, snap.total), completed=snap.finished, width=30),
        Text(f"{snap.finished}/{snap.total}"),
    )
    counts = Text()
    counts.append(f"{snap.done} done", style="green")
    counts.append("  ")
    kinds = snap.kinds_text()
    failed = f"{snap.failed} failed" + (f" ({kinds})" if kinds else "")
    counts.append(failed, style="red" if snap.failed else "")
    counts.append(f"  {snap.cached} cached  {len(snap.running)} running")
    if snap.workers:
        counts.append(f" on {snap.workers} workers")
    if snap.queued:
        counts.append(f", {snap.queued} queued")
    counts.append(snap.elsewhere_text())
    eta = _timer(snap.eta)
    counts.append(f"  elapsed {_timer(snap.elapsed)}  ETA {eta}", style="dim")
    parts: list[Any] = [header, counts]
    if snap.running:
        rows = Table.grid(padding=(0, 1))
        rows.add_column(max_width=60, no_wrap=True, overflow="ellipsis")
        rows.add_column(width=20)
        rows.add_column(no_wrap=True, justify="right")
        for label, fraction, age in snap.running[:MAX_ROWS]:
            bar = ProgressBar(
                total=1.0 if fraction is not None else None, completed=fraction or 0.0, width=20
            )
            pct = f"{fraction:4.0%}" if fraction is not None else "    "
            rows.add_row(Text(f"  {label}"), bar, Text(f"{pct} {_timer(age)}", style="dim"))
        parts.append(rows)
        more = len(snap.running) - MAX_ROWS
        if more > 0:
            parts.append(Text(f"  ... and {more} more running", style="dim"))
    return Group(*parts)


def _choose_mode(stream: Any) -> Mode:
    """Live in a real terminal or a Jupyter notebook (with ipywidgets), plain otherwise."""
    if _in_jupyter():
        import importlib.util

        # rich's Live needs ipywidgets in Jupyter; without it, print lines to the cell.
        return "live" if importlib.util.find_spec("ipywidgets") is not None else "plain"
    if os.environ.get("TERM", "") in ("dumb", "unknown"):
        return "plain"
    try:
        return "live" if stream.isatty() else "plain"
    except Exception:  # streams without isatty, or closed ones
        return "plain"


def _in_jupyter() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ipython = shell.get_ipython()
    except Exception:
        return False
    return type(ipython).__name__ == "ZMQInteractiveShell" or "google.colab" in str(type(ipython))


def _timer(seconds: float | None) -> str:
    """``2:05`` or ``1:02:05``; ``unknown`` for an ETA not known yet."""
    return format_seconds(seconds, style="timer") if seconds is not None else "unknown"


def _clean(text: str) -> str:
    """Text without control characters (newlines and escapes would break one-line logs)."""
    return _CONTROL.sub(" ", text)


__all__ = ["ProgressDisplay", "Snapshot", "render"]
