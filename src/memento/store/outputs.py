"""The output folder of each experiment: ``<root>/<key>``, where it writes models, plots and logs.

An experiment's folder is created the first time it asks for it (``context.output_dir``), and
holds a marker file, :data:`MARKER`, with the key inside: memento empties or deletes only a
folder whose marker names its key, so that a crafted store row or a folder someone else made
is never removed. Keys are hex strings, so a folder is always a direct child of the root;
anything else is refused before a path is built from it.

For a SQLite store the root is ``<store>.d/outputs`` (:func:`sqlite_output_root`); a server
store keeps output folders only in a directory the user names.

A failed attempt's folder stays for inspection until the next attempt of the same experiment
starts (:func:`prepare_attempt`): without a checkpoint that attempt starts afresh and the
folder is emptied; with one it resumes, and the folder is kept with the checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

from memento._util.files import atomic_write
from memento.exceptions import StoreError
from memento.store.paths import side_directory

#: The file inside an output folder that says memento made it, and for which key.
MARKER = ".memento-output"

# memento's keys are lowercase hex (32 digits); a bound keeps a crafted key from being a path.
_KEY = re.compile(r"[0-9a-f]{1,128}")
# A marker holds a key and a newline; anything longer is not memento's.
_MARKER_LIMIT = 256


def sqlite_output_root(store_path: str | os.PathLike[str]) -> Path:
    """Where a SQLite store at ``store_path`` keeps its output folders: ``<store>.d/outputs``."""
    return side_directory(Path(store_path)) / "outputs"


def output_folder(root: str | os.PathLike[str], key: str) -> Path:
    """The folder of the experiment ``key`` under ``root`` (nothing is created).

    Only hex keys are accepted: a key such as ``../..`` or ``/home`` would otherwise name a
    folder outside ``root``, one that :func:`remove_folder` could be asked to delete.
    """
    return Path(output_folder_name(root, key))


def output_folder_name(root: str | os.PathLike[str], key: str) -> str:
    """:func:`output_folder` as a string (what a worker checks for every experiment: no
    ``Path`` made)."""
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        raise ValueError(
            f"{key!r} is not an experiment key (a lowercase hex string); memento builds no "
            "output folder path from it"
        )
    return os.path.join(os.fspath(root), key)


def folder_mode(mode: int | None) -> int:
    """The permissions of output directories, given those of the store's files (``mode``).

    Like checkpoint files: private (``0o700``) when ``mode`` is ``None``; else ``mode`` plus
    the search (x) bit for every class that may read or write, so that whoever can read the
    store's files can read the folders too. The owner always keeps ``rwx``: memento must be
    able to write, empty and remove what it made.
    """
    if mode is None:
        return 0o700
    result = (mode & 0o777) | 0o700
    for rw, x in ((0o060, 0o010), (0o006, 0o001)):
        if result & rw:
            result |= x
    return result


def ensure_folder(root: str | os.PathLike[str], key: str, mode: int | None = None) -> Path:
    """The folder of ``key`` under ``root``, created (parents too) with its marker if missing.

    ``mode`` is the permissions of the store's files (a checkpoint's ``checkpoint_mode``):
    the root and the folder get :func:`folder_mode` of it, the marker ``mode`` itself.
    A folder that is a symbolic link, or not a directory, is refused: memento would never be
    allowed to empty or remove it, and an experiment must not write through a planted link.
    """
    folder = output_folder(root, key)
    dir_mode = folder_mode(mode)
    _make_directory(Path(root), dir_mode, parents=True)
    _make_directory(folder, dir_mode, parents=False)
    _check_real_directory(folder)
    if not os.path.lexists(folder / MARKER):
        atomic_write(folder / MARKER, f"{key}\n".encode("ascii"), mode=mode)
    return folder


def prepare_attempt(root: str | os.PathLike[str], key: str, has_checkpoint: bool) -> None:
    """Apply the start-of-attempt rule to the folder of ``key``, before the experiment runs.

    The folder of a failed attempt is kept for inspection until now. With ``has_checkpoint``
    this attempt resumes, so the folder is kept: its files belong with the checkpoint. Else
    the attempt starts afresh and the folder is emptied (the marker too; it is written again
    on first use). Only a real folder whose marker names ``key`` is emptied; one memento did
    not make is left as it is. When there is no folder this costs one ``lstat``.
    """
    folder = output_folder(root, key)
    if has_checkpoint:
        return
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode) or not marker_holds(folder, key):
        return
    _empty(folder)


def folder_files(root: str | os.PathLike[str], key: str) -> list[tuple[str, int]]:
    """The files in the folder of ``key``: ``(relative path, size in bytes)``, sorted by path.

    Paths use ``/``; the marker is left out; a symbolic link is listed as itself (its own
    size), never followed; empty directories are not listed. ``[]`` when there is no folder
    (or when the folder itself is a symbolic link: it is not memento's).
    """
    folder = output_folder(root, key)
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(info.st_mode):
        return []
    found: list[tuple[str, int]] = []
    _walk(folder, "", found)
    return sorted(item for item in found if item[0] != MARKER)


def remove_folder(root: str | os.PathLike[str], key: str) -> bool:
    """Delete the folder of ``key`` with everything in it; ``True`` when it was removed.

    Refused (``False``) when there is no folder, when the folder is a symbolic link or not a
    directory, or when its marker is missing or names another key: whatever a store row
    says, memento deletes only what it made. Links inside the folder are removed as links;
    what they point to is never touched.
    """
    folder = output_folder(root, key)
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(info.st_mode) or not marker_holds(folder, key):
        return False
    shutil.rmtree(folder)
    return True


def remove_recorded(folders: dict[str, str | None]) -> int:
    """Remove the output folders that forgotten results name (key -> their ``output_dir``);
    how many were removed. A row naming a folder that is not ``<root>/<key>`` with memento's
    marker for that key (a crafted store) removes nothing."""
    removed = 0
    for key, folder in folders.items():
        if not folder or Path(folder).name != key:
            continue
        try:
            removed += remove_folder(Path(folder).parent, key)
        except (OSError, ValueError):
            continue
    return removed


def marker_holds(folder: Path, key: str) -> bool:
    """Whether ``folder`` has a marker (a regular file, not a link) that names ``key``."""
    marker = folder / MARKER
    try:
        if not stat.S_ISREG(os.lstat(marker).st_mode):
            return False
        fd = os.open(marker, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        data = os.read(fd, _MARKER_LIMIT)
    except OSError:
        return False
    finally:
        os.close(fd)
    return data.decode("ascii", "replace").strip() == key


def _make_directory(path: Path, dir_mode: int, *, parents: bool) -> None:
    """Create ``path`` with exactly ``dir_mode`` (the umask would narrow ``mkdir``'s), if it
    is missing; an existing directory keeps its permissions (the user may have chosen them)."""
    if os.path.lexists(path):
        return
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=dir_mode)
    except FileExistsError:  # another worker made it first
        return
    os.chmod(path, dir_mode)


def _check_real_directory(folder: Path) -> None:
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a directory"
        raise StoreError(
            f"The output folder {folder} is {what}; memento keeps each experiment's outputs "
            "in a real directory of its own. Move it away and run again."
        )


def _empty(folder: Path) -> None:
    """Remove everything inside ``folder`` (links as links), the marker last: if removing
    fails halfway, the folder is still known as memento's and the next attempt tries again."""
    with os.scandir(folder) as entries:
        names = sorted(entry.name for entry in entries)
    for name in [n for n in names if n != MARKER] + [n for n in names if n == MARKER]:
        path = folder / name
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            path.unlink()


def _walk(directory: Path, prefix: str, found: list[tuple[str, int]]) -> None:
    """Add the files under ``directory`` to ``found``, without following any link."""
    with os.scandir(directory) as entries:
        listed = list(entries)
    for entry in listed:
        name = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            _walk(Path(entry.path), f"{name}/", found)
        else:
            found.append((name, entry.stat(follow_symlinks=False).st_size))


__all__ = [
    "MARKER",
    "ensure_folder",
    "folder_files",
    "folder_mode",
    "marker_holds",
    "output_folder",
    "prepare_attempt",
    "remove_folder",
    "sqlite_output_root",
]
