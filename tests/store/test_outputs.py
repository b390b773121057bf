"""The rules of output folders, on a real file system: where a folder goes, what is refused,
and that memento empties or deletes only a real folder whose marker names its key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from memento.exceptions import StoreError
from memento.store.outputs import (
    MARKER,
    ensure_folder,
    folder_files,
    folder_mode,
    output_folder,
    output_folder_name,
    prepare_attempt,
    remove_folder,
    sqlite_output_root,
)

KEY = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize(
    "key", ["", "k", "../etc", "/home", "ABCDEF", "ab/cd", "a" * 129, "ab\x00", ".", ".."]
)
def test_a_key_that_is_not_lowercase_hex_is_refused(key: str, tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    with pytest.raises(ValueError, match="not an experiment key"):
        output_folder(root, key)
    for call in (ensure_folder, folder_files, remove_folder):
        with pytest.raises(ValueError):
            call(root, key)
    with pytest.raises(ValueError):
        prepare_attempt(root, key, has_checkpoint=True)
    assert not root.exists()  # refused before anything was made


def test_the_folder_of_a_key_is_a_direct_child_of_the_root(tmp_path: Path) -> None:
    assert output_folder(tmp_path / "out", KEY) == tmp_path / "out" / KEY
    assert output_folder(str(tmp_path), "0") == tmp_path / "0"
    store = tmp_path / "runs" / "grid.sqlite"
    assert sqlite_output_root(store) == tmp_path / "runs" / "grid.sqlite.d" / "outputs"
    assert sqlite_output_root(str(store)) == sqlite_output_root(store)


def test_ensure_folder_creates_the_root_the_folder_and_the_marker(tmp_path: Path) -> None:
    root = tmp_path / "side.d" / "outputs"
    folder = ensure_folder(root, KEY)
    assert folder == root / KEY and folder.is_dir()
    assert (folder / MARKER).read_text() == f"{KEY}\n"
    assert _mode(root) == 0o700 and _mode(folder) == 0o700
    assert _mode(folder / MARKER) == 0o600
    (folder / "model.bin").write_bytes(b"weights")
    assert ensure_folder(root, KEY) == folder  # again: nothing lost
    assert (folder / "model.bin").read_bytes() == b"weights"
    (folder / MARKER).unlink()  # the experiment emptied its folder
    ensure_folder(root, KEY)
    assert (folder / MARKER).read_text() == f"{KEY}\n"


@pytest.mark.parametrize(
    ("files", "dirs"), [(0o600, 0o700), (0o640, 0o750), (0o644, 0o755), (0o660, 0o770)]
)
def test_folders_mirror_the_store_files_mode(files: int, dirs: int, tmp_path: Path) -> None:
    assert folder_mode(files) == dirs
    root = tmp_path / "outputs"
    folder = ensure_folder(root, KEY, files)
    assert _mode(root) == dirs and _mode(folder) == dirs
    assert _mode(folder / MARKER) == files


def test_the_owner_always_keeps_rwx(tmp_path: Path) -> None:
    assert folder_mode(None) == 0o700
    assert folder_mode(0o444) == 0o755
    assert folder_mode(0o004) == 0o705


def test_an_existing_root_keeps_its_mode(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    os.chmod(root, 0o751)
    ensure_folder(root, KEY)
    assert _mode(root) == 0o751


def test_a_folder_that_is_a_link_or_a_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / KEY).symlink_to(elsewhere)
    with pytest.raises(StoreError, match="symbolic link"):
        ensure_folder(root, KEY)
    assert list(elsewhere.iterdir()) == []  # no marker written through the link
    (root / OTHER).write_text("a file")
    with pytest.raises(StoreError, match="not a directory"):
        ensure_folder(root, OTHER)


def test_a_root_that_is_a_link_is_followed(tmp_path: Path) -> None:
    disk = tmp_path / "big-disk"
    disk.mkdir()
    (tmp_path / "outputs").symlink_to(disk)
    folder = ensure_folder(tmp_path / "outputs", KEY)
    assert (disk / KEY / MARKER).is_file()
    assert remove_folder(tmp_path / "outputs", KEY)
    assert not folder.exists() and disk.is_dir()


def test_folder_files_lists_sizes_links_not_followed_marker_left_out(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    assert folder_files(root, KEY) == []
    folder = ensure_folder(root, KEY)
    assert folder_files(root, KEY) == []
    (folder / "plots").mkdir()
    (folder / "plots" / "loss.png").write_bytes(b"x" * 10)
    (folder / "empty").mkdir()
    (folder / "log.txt").write_text("abc")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "big").write_bytes(b"y" * 1000)
    (folder / "to-secret").symlink_to(secret)
    (folder / "plots" / MARKER).write_text("not the top marker")
    listed = folder_files(root, KEY)
    names = [name for name, _ in listed]
    assert names == ["log.txt", f"plots/{MARKER}", "plots/loss.png", "to-secret"]
    sizes = dict(listed)
    assert sizes["log.txt"] == 3 and sizes["plots/loss.png"] == 10
    assert sizes["to-secret"] == os.lstat(folder / "to-secret").st_size  # the link's own size


def test_folder_files_of_a_linked_folder_is_empty(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "file").write_text("x")
    (root / KEY).symlink_to(elsewhere)
    assert folder_files(root, KEY) == []


def test_remove_folder_removes_only_a_marked_folder_of_that_key(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    assert remove_folder(root, KEY) is False  # nothing there
    folder = ensure_folder(root, KEY)
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "precious").write_text("keep me")
    (folder / "link").symlink_to(kept)
    (folder / "sub").mkdir()
    (folder / "sub" / "f").write_text("1")
    assert remove_folder(root, KEY) is True
    assert not folder.exists() and root.is_dir()
    assert (kept / "precious").read_text() == "keep me"  # a link inside is removed as a link


def test_remove_folder_refuses_without_marker_or_with_another_key(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    unmarked = root / KEY
    unmarked.mkdir(parents=True)
    (unmarked / "data").write_text("user's")
    assert remove_folder(root, KEY) is False
    assert (unmarked / "data").exists()
    (unmarked / MARKER).write_text(f"{OTHER}\n")
    assert remove_folder(root, KEY) is False
    assert (unmarked / "data").exists()
    (unmarked / MARKER).unlink()
    (unmarked / MARKER).mkdir()  # a directory is no marker
    assert remove_folder(root, KEY) is False
    assert (unmarked / "data").exists()


def test_remove_folder_refuses_a_linked_folder_or_a_linked_marker(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    (home / MARKER).write_text(f"{KEY}\n")  # crafted: a marker naming the key, behind a link
    (home / "thesis.tex").write_text("years of work")
    (root / KEY).symlink_to(home)
    assert remove_folder(root, KEY) is False
    assert (home / "thesis.tex").exists() and (root / KEY).is_symlink()
    (root / KEY).unlink()
    folder = root / KEY
    folder.mkdir()
    (folder / MARKER).symlink_to(home / MARKER)
    assert remove_folder(root, KEY) is False
    assert folder.is_dir()


def test_prepare_attempt_without_checkpoint_empties_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    prepare_attempt(root, KEY, has_checkpoint=False)  # no folder: nothing happens
    assert not root.exists()
    folder = ensure_folder(root, KEY)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    (folder / "partial.ckpt").write_text("half")
    (folder / "logs").mkdir()
    (folder / "logs" / "1.txt").write_text("log")
    (folder / "out").symlink_to(outside)
    prepare_attempt(root, KEY, has_checkpoint=True)  # a resume keeps it all
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, "logs", "out", "partial.ckpt"]
    prepare_attempt(root, KEY, has_checkpoint=False)  # a fresh start
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert (outside / "keep").read_text() == "k"
    ensure_folder(root, KEY)
    assert [p.name for p in folder.iterdir()] == [MARKER]


def test_prepare_attempt_leaves_a_folder_memento_did_not_make(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    folder = root / KEY
    folder.mkdir(parents=True)
    (folder / "mine").write_text("x")
    prepare_attempt(root, KEY, has_checkpoint=False)
    assert (folder / "mine").exists()
    (folder / MARKER).write_text(OTHER)
    prepare_attempt(root, KEY, has_checkpoint=False)
    assert (folder / "mine").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / MARKER).write_text(OTHER)
    (elsewhere / "precious").write_text("p")
    (root / OTHER).symlink_to(elsewhere)
    prepare_attempt(root, OTHER, has_checkpoint=False)
    assert (elsewhere / "precious").exists()


def test_output_folder_name_is_the_folder_as_text(tmp_path: Path) -> None:
    """What a worker checks for every experiment: the same path, as a string, same refusals."""
    assert output_folder_name(tmp_path / "out", KEY) == str(output_folder(tmp_path / "out", KEY))
    assert output_folder_name(str(tmp_path), KEY) == os.path.join(str(tmp_path), KEY)
    with pytest.raises(ValueError, match="not an experiment key"):
        output_folder_name(tmp_path, "../etc")
