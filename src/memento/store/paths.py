"""Where a store may read, write and delete: its side directory only, and only where the
file system lets it write.

A store's rows are data from its file, which may come from someone else: a value file named
``../../victim``, or a symbolic link leading out of ``<file>.d/``, must never be read or
deleted. And a store in a read-only place (an archive, a read-only mount) can be read but
not written: opening it for writing must fail before anything runs, saying why.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from memento._util.files import atomic_write
from memento.exceptions import StoreError

#: Values whose stored form is larger than this go to a file in the side directory
#: (``values/<key>.<ext>``), written by the worker itself when it can reach the directory.
INLINE_LIMIT = 512 * 1024


def value_file_name(key: str, extension: str) -> str:
    """The side file of a large value of ``key`` with the format's ``extension``, relative to
    the side directory: ``values/<key>.npy``, ``.parquet``, ``.pkl`` (a pickle)..."""
    return f"values/{key}.{extension}"


def side_directory(path: Path) -> Path:
    """The directory beside the store file ``path`` that holds its large values and
    checkpoints (``runs/grid.sqlite`` -> ``runs/grid.sqlite.d``)."""
    return path.with_name(path.name + ".d")


def side_file(store: Path, name: str) -> Path:
    """The file ``name`` (as a row stores it) inside the side directory of ``store``, checked."""
    return file_inside(side_directory(store), name, store)


def side_file_mode(store: Path) -> int | None:
    """The permissions of the files in the side directory of ``store``: the store file's own,
    so that whoever can read the store can read its values and checkpoints (``None`` when
    there is no store file to copy them from)."""
    try:
        return store.stat().st_mode & 0o777
    except OSError:
        return None


def write_side_file(store: Path, name: str, data: bytes | Sequence[bytes | memoryview]) -> None:
    """Write a value too large to keep in a row to ``name`` in the side directory of ``store``
    (an existing file), before the row that names it is committed: a committed row never
    points to a missing or half-written file (a crash in between leaves a harmless orphan).

    The file gets the store file's permissions, so whoever can read the store can read its
    values (never looser: mkstemp's 0600 until the rename).
    """
    atomic_write(side_directory(store) / name, data, mode=side_file_mode(store))


def remove_side_file(store: Path, name: str) -> None:
    """Delete ``name`` from the side directory of ``store`` (checked; gone already is fine)."""
    try:
        side_file(store, name).unlink()
    except FileNotFoundError:
        pass


def file_inside(root: Path, name: str, store: Path) -> Path:
    """``root / name`` resolved (symbolic links followed), refused unless it is in ``root``."""
    base = root.resolve()
    target = (base / name).resolve()
    if target == base or not target.is_relative_to(base):
        raise StoreError(
            f"{store} has a result whose value file {name!r} is outside the store's "
            f"directory {base}; memento refuses to read or delete it (the store may have "
            "been tampered with)"
        )
    return target


def writable_place(path: str | os.PathLike[str]) -> bool:
    """Whether files can be created beside ``path``. ``os.access`` is not enough: it says
    yes to root, and knows nothing of read-only mounts."""
    try:
        with tempfile.TemporaryFile(dir=Path(path).absolute().parent):
            return True
    except OSError:
        return False


def check_writable_place(path: Path) -> None:
    """Fail before anything runs when a store cannot be written at ``path``."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"Cannot create the store's directory {parent} ({exc.strerror or exc}); "
            "choose a cache_path in a writable directory"
        ) from None
    if not writable_place(path):
        what = "write to the store" if path.is_file() else "create a new store"
        raise StoreError(
            f"Cannot {what} at {path}: its directory {parent} is read-only (no file can be "
            "created in it, and SQLite needs its -wal and -shm files there). Choose a "
            "cache_path in a writable directory; a store in a read-only place can still be "
            "read (memento status, open_results)."
        )


__all__ = [
    "INLINE_LIMIT",
    "check_writable_place",
    "file_inside",
    "remove_side_file",
    "side_directory",
    "side_file",
    "value_file_name",
    "writable_place",
    "write_side_file",
]
