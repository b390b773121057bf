"""Files written so that a reader sees the old content or the new, never half of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path


def atomic_write(
    path: Path, data: bytes | Sequence[bytes | memoryview], mode: int | None = None
) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    Temp file in the same directory, fsync, then rename: a crash at any point leaves either the
    previous content or the complete new content. The file gets the permissions ``mode``
    (``0o644``...), else mkstemp's ``0o600``; set before the rename, so it never appears with
    others. ``data`` may be a sequence of chunks (an ``.npy`` header and the array's own
    memory, say), written in order without joining them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            for chunk in [data] if isinstance(data, bytes) else data:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


__all__ = ["atomic_write"]
