"""Finding a path's filesystem in mountinfo texts, crafted ones and this machine's own."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memento.store import mounts
from memento.store.mounts import filesystem_type, network_filesystem

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

#: Paths under a root that does not exist here, so that resolving them changes nothing.
ROOT = "/memento-test-mounts"

MOUNTINFO = f"""\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 27 0:40 / {ROOT}/cluster rw,relatime shared:12 master:3 - nfs4 fs:/export rw,vers=4.2
41 40 0:41 / {ROOT}/cluster/scratch rw,relatime - lustre 10.0.0.1@tcp:/scratch rw
42 27 0:42 / {ROOT}/my\\040share rw - cifs //server/share rw
43 27 0:43 / {ROOT}/tmp rw - tmpfs tmpfs rw
44 43 0:44 / {ROOT}/tmp rw - nfs fs:/tmp rw
45 27 0:45 / {ROOT}/wsl rw - 9p drvfs rw
not a mountinfo line
46 27 0:46 / {ROOT}/broken rw no-separator here
"""


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        (f"{ROOT}/cluster/home/me/grid.sqlite", "nfs4"),  # optional fields before "-"
        (f"{ROOT}/cluster/scratch/run/grid.sqlite", "lustre"),  # the longest mount point wins
        (f"{ROOT}/cluster", "nfs4"),  # the mount point itself
        (f"{ROOT}/clusterfs/grid.sqlite", "ext4"),  # a prefix of the name is not a parent
        (f"{ROOT}/my share/grid.sqlite", "cifs"),  # \040 is a space
        (f"{ROOT}/tmp/grid.sqlite", "nfs"),  # the later of two stacked mounts is on top
        (f"{ROOT}/broken/grid.sqlite", "ext4"),  # malformed lines are skipped
        ("/elsewhere/grid.sqlite", "ext4"),
    ],
)
def test_the_mount_with_the_longest_mount_point_holds_the_path(path: str, fstype: str) -> None:
    assert filesystem_type(path, MOUNTINFO) == fstype


def test_network_filesystems_are_named_and_local_ones_are_not() -> None:
    assert network_filesystem(f"{ROOT}/cluster/home/x", MOUNTINFO) == "nfs4"
    assert network_filesystem(f"{ROOT}/cluster/scratch/x", MOUNTINFO) == "lustre"
    assert network_filesystem(f"{ROOT}/my share/x", MOUNTINFO) == "cifs"
    assert network_filesystem("/elsewhere/x", MOUNTINFO) is None  # ext4
    assert network_filesystem(f"{ROOT}/wsl/x", MOUNTINFO) is None  # 9p: one host and its VM


@pytest.mark.parametrize(
    "fstype",
    ["nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "beegfs", "ceph", "fuse.glusterfs"],
)
def test_cluster_filesystems_count_as_network(fstype: str) -> None:
    text = f"1 0 0:1 / / rw - ext4 /dev/vda rw\n2 1 0:2 / {ROOT} rw - {fstype} src rw\n"
    assert network_filesystem(f"{ROOT}/grid.sqlite", text) == fstype


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "9p", "virtiofs"])
def test_local_filesystems_do_not(fstype: str) -> None:
    text = f"1 0 0:1 / / rw - {fstype} src rw\n"
    assert network_filesystem(f"{ROOT}/grid.sqlite", text) is None
    assert filesystem_type(f"{ROOT}/grid.sqlite", text) == fstype


def test_a_symbolic_link_is_on_the_filesystem_of_its_target(tmp_path: Path) -> None:
    link = tmp_path / "runs"
    link.symlink_to(f"{ROOT}/cluster/home/me")  # need not exist: the link is still followed
    assert filesystem_type(link / "grid.sqlite", MOUNTINFO) == "nfs4"


def test_no_mount_holds_the_path() -> None:
    assert filesystem_type("/elsewhere", f"2 1 0:2 / {ROOT} rw - nfs src rw\n") is None
    assert filesystem_type("/elsewhere", "") is None


@linux_only
def test_this_machine_tmp_path_is_on_a_local_filesystem(tmp_path: Path) -> None:
    fstype = filesystem_type(tmp_path)
    assert fstype is not None
    assert network_filesystem(tmp_path) is None
    assert network_filesystem(tmp_path / "not" / "there" / "yet.sqlite") is None
    if shutil.which("findmnt"):
        seen = subprocess.run(
            ["findmnt", "-n", "-o", "FSTYPE", "--target", str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert fstype == seen[-1]


def test_unknown_off_linux_or_without_a_mountinfo_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mounts, "MOUNTINFO", tmp_path / "missing")
    assert filesystem_type(tmp_path) is None
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(mounts, "MOUNTINFO", Path("/proc/self/mountinfo"))
    assert filesystem_type(tmp_path) is None
    assert network_filesystem(tmp_path) is None


# -- the warning a SQLite store on a network filesystem gives -----------------------------------
def test_a_sqlite_store_on_a_network_filesystem_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # No NFS server can run here: the real code reads a mountinfo file that says the store's
    # directory is an NFS mount.
    import memento.store.mounts as mounts
    import memento.store.sqlite as sqlite_store

    shared = tmp_path / "shared"
    shared.mkdir()
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"98 22 0:51 / {shared} rw,relatime shared:40 - nfs4 server:/export rw,vers=4.2\n"
    )
    monkeypatch.setattr(mounts, "MOUNTINFO", table)
    monkeypatch.setattr(sqlite_store, "_WARNED", set())
    from memento import Memento

    def double(context: object, config: object) -> int:
        return 2 * config.x  # type: ignore[attr-defined]

    with caplog.at_level(logging.WARNING, logger="memento"):
        for _ in range(2):
            Memento(double, executor="thread", progress=False).run(
                {"parameters": {"x": [1, 2]}}, cache_path=shared / "grid.sqlite"
            )
    warned = [r.getMessage() for r in caplog.records if "network filesystem" in r.getMessage()]
    assert len(warned) == 1
    assert "(nfs4)" in warned[0] and "postgresql://" in warned[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="memento"):
        Memento(double, executor="thread", progress=False).run(
            {"parameters": {"x": [1]}}, cache_path=tmp_path / "local.sqlite"
        )
    assert not [r for r in caplog.records if "network filesystem" in r.getMessage()]
