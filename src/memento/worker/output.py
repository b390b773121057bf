"""Output routing: what an experiment writes to stdout and stderr is kept (the tail goes on
its outcome) and forwarded line by line, prefixed with its config, to the driver: through the
output pipe from a worker process, to the run's display in the driver's own process.
"""

from __future__ import annotations

import os
import re
import select
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: Characters of an experiment's output kept on its outcome (the tail; at least 1 MiB).
OUTPUT_LIMIT = 1 << 20
#: A line longer than this is forwarded in pieces (each shown as a line of its own).
_LINE_CAP = 1 << 16
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: One piece of an experiment's output on its way to the driver: (key, label, text, first).
#: ``text`` holds whole lines, except from an interactive (inline) experiment that flushed a
#: partial one (a prompt); ``first`` marks the first piece of an attempt.
OutputRecord = tuple[str, str, str, bool]
OutputSink = Callable[[str, str, str, bool], None]


class OutputTail:
    """The last :data:`OUTPUT_LIMIT` characters written, and how many came before them."""

    __slots__ = ("_chunks", "_size", "cut", "limit")

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.limit = limit
        self._chunks: list[str] = []
        self._size = 0
        self.cut = 0

    def add(self, text: str) -> None:
        if text:
            self._chunks.append(text)
            self._size += len(text)
            if self._size > 2 * self.limit:  # trimming at twice the limit keeps add() O(1)
                self._trim()

    def _trim(self) -> None:
        joined = "".join(self._chunks)
        kept = joined[-self.limit :]
        self.cut += len(joined) - len(kept)
        self._chunks, self._size = [kept], len(kept)

    @property
    def open_line(self) -> bool:
        """Whether the text ends inside a line (an interactive prompt)."""
        return bool(self._chunks) and not self._chunks[-1].endswith("\n")

    def text(self) -> str:
        if self._size > self.limit:
            self._trim()
        body = "".join(self._chunks)
        if self.cut:
            return f"[memento: {self.cut} earlier characters of output were cut]\n{body}"
        return body


def prefix_lines(label: str, text: str, continued: bool = False) -> str:
    """``text`` with ``[label] `` before each line (not before the first when ``continued``:
    it goes on a line an interactive experiment left open)."""
    prefix = f"[{label}] "
    lines = text.split("\n")
    last = lines.pop()  # "" when text ends with a newline
    out = [line if (i == 0 and continued) else prefix + line for i, line in enumerate(lines)]
    shown = "\n".join(out) + "\n" if out else ""
    if last:
        shown += last if (continued and not out) else prefix + last
    return shown


class _Capture:
    """The output of one running experiment: its tail, and the line being written."""

    __slots__ = ("first", "interactive", "key", "label", "lock", "pending", "sink", "size", "tail")

    def __init__(self, key: str, label: str, sink: OutputSink | None, interactive: bool) -> None:
        self.key = key
        self.label = _CONTROL.sub(" ", label)
        self.sink = sink
        self.interactive = interactive
        self.tail = OutputTail()
        self.pending: list[str] = []
        self.size = 0
        self.first = True
        # Threads the experiment starts write here too (in a worker process).
        self.lock = threading.Lock()

    def write(self, text: str, original: Any) -> None:
        with self.lock:
            self.tail.add(text)
            if self.sink is None:  # nobody to forward to (a cluster worker): pass it through
                if original is not None:
                    original.write(text)
                return
            self.pending.append(text)
            self.size += len(text)
            if "\n" not in text and self.size < _LINE_CAP:
                return
            joined = "".join(self.pending)
            head, newline, rest = joined.rpartition("\n")
            self.pending, self.size = ([rest], len(rest)) if rest else ([], 0)
            if newline:
                self._send(head + "\n")
            if self.size >= _LINE_CAP:
                self.pending, self.size = [], 0
                self._send(rest + "\n")

    def flush(self, final: bool = False) -> None:
        """Forward the partial line: always at the end, on ``flush()`` when interactive (so
        that a debugger's or ``input()``'s prompt shows)."""
        with self.lock:
            if self.pending and self.sink is not None and (final or self.interactive):
                text = "".join(self.pending)
                self.pending, self.size = [], 0
                self._send(text if self.interactive and not final else text + "\n")

    def _send(self, text: str) -> None:
        assert self.sink is not None
        first, self.first = self.first, False
        try:
            self.sink(self.key, self.label, text, first)
        except Exception:  # a closed channel must not fail the experiment
            pass


class _LineRouter:
    """Replaces ``sys.stdout``/``sys.stderr``: what an experiment writes while it runs is kept
    (the tail of it goes on its outcome) and forwarded line by line to a sink: in a worker
    process the output pipe to the driver, in the driver the run's display. Output written
    when no experiment runs passes through unchanged.

    In a worker process one experiment runs at a time, so threads it starts are captured too;
    with the thread executor each thread captures its own experiment.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self.installed = False
        self._originals: tuple[Any, Any] | None = None
        self._holds = 0
        self._hold_lock = threading.Lock()
        #: The process's default sink (a worker process: the pipe to the driver).
        self.sink: OutputSink | None = None
        #: Attribute every thread's output to the running experiment (worker processes).
        self.process_wide = False
        self._shared: _Capture | None = None

    def install(self) -> None:
        if self.installed:
            return
        self._originals = (sys.stdout, sys.stderr)
        sys.stdout = _RoutedStream(self, 0)  # type: ignore[assignment]
        sys.stderr = _RoutedStream(self, 1)  # type: ignore[assignment]
        self.installed = True

    def uninstall(self) -> None:
        if self.installed and self._originals is not None:
            # Streams the program set since are its own: leave them.
            if isinstance(sys.stdout, _RoutedStream):
                sys.stdout = self._originals[0]
            if isinstance(sys.stderr, _RoutedStream):
                sys.stderr = self._originals[1]
            self.installed = False

    def hold(self) -> bool:
        """Install for the length of a job, unless installed already; say whether to release."""
        with self._hold_lock:
            if self.installed and not self._holds:
                return False
            self._holds += 1
            self.install()
            return True

    def release(self) -> None:
        with self._hold_lock:
            self._holds -= 1
            if not self._holds:
                self.uninstall()

    def original(self, index: int) -> Any:
        """The stream this router stands in for (``index`` 0: stdout, 1: stderr)."""
        if self._originals is not None and self.installed:
            return self._originals[index]
        return sys.stdout if index == 0 else sys.stderr

    def begin(
        self,
        label: str,
        key: str = "",
        *,
        sink: OutputSink | None = None,
        interactive: bool = False,
    ) -> None:
        capture = _Capture(key, label, sink or self.sink, interactive)
        self._local.capture = capture
        if self.process_wide:
            self._shared = capture

    def end(self) -> str:
        """Stop capturing in this thread; return what the experiment wrote (its tail)."""
        capture = self._current()
        self._local.capture = None
        self._shared = None
        if capture is None:
            return ""
        capture.flush(final=True)
        return capture.tail.text()

    def _current(self) -> _Capture | None:
        capture: _Capture | None = getattr(self._local, "capture", None)
        return capture if capture is not None else self._shared

    def write(self, index: int, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        capture = self._current()
        original = self.original(index)
        if capture is None:
            return int(original.write(text)) if original is not None else len(text)
        capture.write(text, original)
        return len(text)

    def flush(self, index: int) -> None:
        capture = self._current()
        if capture is not None:
            capture.flush()
        if capture is None or capture.sink is None:
            try:
                self.original(index).flush()
            except Exception:
                pass

    def isatty(self, index: int) -> bool:
        if self._current() is not None:
            return False
        try:
            return bool(self.original(index).isatty())
        except Exception:
            return False

    def fileno(self, index: int) -> int:
        capture = self._current()
        if capture is not None and capture.sink is not None:
            return 2  # what bypasses the router still never lands on the driver's stdout
        return int(self.original(index).fileno())


class _RoutedStream:
    encoding = "utf-8"
    errors = "replace"

    def __init__(self, router: _LineRouter, index: int) -> None:
        self._router = router
        self._index = index

    def write(self, text: str) -> int:
        return self._router.write(self._index, text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._router.flush(self._index)

    def isatty(self) -> bool:
        return self._router.isatty(self._index)

    def fileno(self) -> int:
        return self._router.fileno(self._index)

    @property
    def buffer(self) -> Any:
        return sys.__stderr__.buffer if sys.__stderr__ is not None else None


#: The one router of this process (public: `compat.parallel` routes `TaskManager` output with it).
output_router = _LineRouter()


def install_output_router() -> None:
    """Route experiment output in this process (see :class:`_LineRouter`).

    Logging handlers created before (``logging.basicConfig`` in the user's script, inherited
    by a forked worker) write to the old stream objects; they are pointed at the router too,
    so that log records are captured and prefixed like prints.
    """
    import logging

    old_out, old_err = sys.stdout, sys.stderr
    output_router.install()
    handlers = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handlers.extend(getattr(logger, "handlers", ()))
    for handler in handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (old_out, old_err):
            handler.setStream(sys.stderr)


def uninstall_output_router() -> None:
    output_router.uninstall()


def driver_stderr() -> Any:
    """Where the driver shows forwarded output without a display: its stderr, never the router
    (a thread experiment's line would be captured again)."""
    return output_router.original(1)


# The output pipe: records cut into chunks of at most PIPE_BUF bytes, each written in one
# blocking os.write, which POSIX makes atomic: chunks of concurrent workers never mix, none is
# ever dropped, and a worker that outruns the driver waits. A chunk's header says which
# process sent it, so the reader puts each record back together.
_PIPE_BUF = getattr(select, "PIPE_BUF", 512)
_HEADER = struct.Struct("<IBH")  # pid (or a marker's number), flags, payload length
_START, _END, _MARK, _STOP = 1, 2, 4, 8
_output_fd: int | None = None
_output_conn: Any = None
_send_lock = threading.Lock()


def encode_record(pid: int, key: str, label: str, text: str, first: bool) -> list[bytes]:
    """A record as the chunks that carry it on the output pipe."""
    data = b"".join(
        (
            b"\1" if first else b"\0",
            key.encode(),
            b"\0",
            label.encode("utf-8", "replace"),
            b"\0",
            text.encode("utf-8", "replace"),
        )
    )
    size = _PIPE_BUF - _HEADER.size
    chunks = []
    for start in range(0, len(data), size):
        flags = (_START if start == 0 else 0) | (_END if start + size >= len(data) else 0)
        piece = data[start : start + size]
        chunks.append(_HEADER.pack(pid, flags, len(piece)) + piece)
    return chunks


def encode_marker(number: int, *, stop: bool = False) -> bytes:
    """A chunk the driver writes itself: a drain marker, or the reader's stop signal."""
    return _HEADER.pack(number, _STOP if stop else _MARK, 0)


class OutputFrames:
    """The driver's side of the output pipe: bytes in, records (and markers) out."""

    def __init__(self) -> None:
        self._buffer = b""
        self._partial: dict[int, list[bytes]] = {}

    def feed(self, data: bytes) -> Iterator[OutputRecord | int | None]:
        """Records completed by ``data``; a marker as its number; ``None`` for stop."""
        buffer = self._buffer + data
        offset = 0
        while len(buffer) - offset >= _HEADER.size:
            pid, flags, length = _HEADER.unpack_from(buffer, offset)
            end = offset + _HEADER.size + length
            if end > len(buffer):
                break
            payload = buffer[offset + _HEADER.size : end]
            offset = end
            if flags & _STOP:
                yield None
                continue
            if flags & _MARK:
                yield pid
                continue
            if flags & _START:  # a worker killed mid-record left the rest behind: drop it
                self._partial[pid] = []
            parts = self._partial.setdefault(pid, [])
            parts.append(payload)
            if flags & _END:
                del self._partial[pid]
                record = _decode_record(b"".join(parts))
                if record is not None:
                    yield record
        self._buffer = buffer[offset:]


def _decode_record(data: bytes) -> OutputRecord | None:
    try:
        key, label, text = data[1:].split(b"\0", 2)
    except ValueError:
        return None
    return (
        key.decode(),
        label.decode("utf-8", "replace"),
        text.decode("utf-8", "replace"),
        data[:1] == b"\1",
    )


def _send_output(key: str, label: str, text: str, first: bool) -> None:
    if _output_fd is None:
        return
    chunks = encode_record(os.getpid(), key, label, text, first)
    # One record at a time per process: the reader joins chunks by process id.
    with _send_lock:
        for chunk in chunks:
            try:
                os.write(_output_fd, chunk)  # blocking: never dropped, whole or not at all
            except OSError:  # the driver is gone
                return


def connect_output(conn: Any) -> None:
    """In a worker process: send every experiment's output to the driver through ``conn``,
    the write end of the output pipe (a ``multiprocessing`` connection)."""
    global _output_fd, _output_conn
    _output_conn = conn  # keeps the descriptor open
    _output_fd = conn.fileno()
    output_router.sink = _send_output
    output_router.process_wide = True


def _reset_send_lock() -> None:
    # A child forked while another thread held the lock would wait forever.
    global _send_lock
    _send_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_send_lock)


__all__ = [
    "OUTPUT_LIMIT",
    "OutputFrames",
    "OutputRecord",
    "OutputSink",
    "OutputTail",
    "connect_output",
    "driver_stderr",
    "encode_marker",
    "encode_record",
    "install_output_router",
    "output_router",
    "prefix_lines",
    "uninstall_output_router",
]
