"""Which filesystem a path is on, and whether it is a network or cluster filesystem.

SQLite's locks are POSIX advisory locks, which NFS, Lustre, GPFS, SMB and their kin implement
loosely or not at all across hosts: two machines writing one SQLite file there can corrupt it,
silently. A store that knows it sits on such a filesystem can say so before anything runs
(and point to a server store such as PostgreSQL instead), so this module only answers the
question; deciding what to do about it is the store's business.

Linux only: the answer comes from ``/proc/self/mountinfo`` (see proc(5)), which names every
mount of this process's mount namespace with its filesystem type. Elsewhere the functions
return ``None`` ("don't know"), as they do when that file cannot be read.

Which types count as network filesystems (:data:`NETWORK_FILESYSTEMS`): those where several
hosts see one tree - NFS, SMB/CIFS, Lustre, GPFS (Spectrum Scale), BeeGFS, CephFS, GlusterFS,
AFS, OCFS2 and GFS2, Panasas, WekaFS, OrangeFS, and FUSE mounts of remote trees (sshfs,
JuiceFS, s3fs, gcsfuse...). ``9p`` and ``virtiofs`` are left out on purpose: they share a
directory of one host with a VM or sandbox on that same host (WSL2's ``/mnt/c``, gVisor,
QEMU), not one tree between cluster nodes, and flagging them would warn every such user
about a risk they do not have.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

#: Where Linux lists this process's mounts.
MOUNTINFO = Path("/proc/self/mountinfo")

#: Filesystem types (as mountinfo spells them) that several hosts share.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "lustre",
        "gpfs",
        "beegfs",
        "ceph",
        "glusterfs",
        "afs",
        "ocfs2",
        "gfs2",
        "panfs",
        "wekafs",
        "pvfs2",
        "fuse.ceph-fuse",
        "fuse.ceph",
        "fuse.glusterfs",
        "fuse.sshfs",
        "fuse.juicefs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.rclone",
    }
)

_OCTAL = re.compile(r"\\([0-7]{3})")


def filesystem_type(path: str | os.PathLike[str], mountinfo: str | None = None) -> str | None:
    """The type of the filesystem that ``path`` is on (``"ext4"``, ``"nfs4"``...), or ``None``.

    Example::

        filesystem_type("/home/me/runs/grid.sqlite")  # 'nfs4' on a cluster's home directory

    ``path`` need not exist yet: it is on the filesystem of its nearest existing parent (a
    mount point always exists, so none can lie in the missing part). Symbolic links are
    resolved first. ``mountinfo`` is the text of a mountinfo file, for tests; by default
    :data:`MOUNTINFO` is read, and ``None`` is returned off Linux or when it cannot be read.
    """
    if mountinfo is None:
        mountinfo = _read_mountinfo()
        if mountinfo is None:
            return None
    target = Path(path).resolve()  # keeps a missing tail as written
    best: tuple[int, str] | None = None
    for mount_point, fstype in _mounts(mountinfo):
        if _contains(mount_point, target):
            depth = len(mount_point.parts)
            if best is None or depth >= best[0]:  # later lines are stacked on top
                best = (depth, fstype)
    return best[1] if best else None


def network_filesystem(path: str | os.PathLike[str], mountinfo: str | None = None) -> str | None:
    """The filesystem type of ``path`` when several hosts may share it (NFS, Lustre...), else
    ``None`` (a local filesystem, or not known).

    Example::

        if (fstype := network_filesystem(store_path)) is not None:
            print(f"{store_path} is on {fstype}: use one writer host, or a PostgreSQL store")

    See :data:`NETWORK_FILESYSTEMS` and the module's docstring for which types count.
    """
    fstype = filesystem_type(path, mountinfo)
    return fstype if fstype in NETWORK_FILESYSTEMS else None


def _read_mountinfo() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Mount points are bytes: decode them the way paths are, so that they compare equal.
        return os.fsdecode(MOUNTINFO.read_bytes())
    except OSError:
        return None


def _mounts(mountinfo: str) -> list[tuple[Path, str]]:
    """(mount point, filesystem type) for each well-formed line of a mountinfo text.

    A line is ``id parent major:minor root mount-point options [optional...] - type source
    super-options``: the optional fields vary in number, so the type is found after the
    lone ``-`` field.
    """
    mounts = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)
        except ValueError:
            continue
        if separator + 1 >= len(fields) or not fields[4].startswith("/"):
            continue
        mounts.append((Path(_unescape(fields[4])), fields[separator + 1]))
    return mounts


def _unescape(field: str) -> str:
    """Undo the kernel's octal escapes of space, tab, newline and backslash (``\\040``...)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _contains(mount_point: Path, path: Path) -> bool:
    return path == mount_point or mount_point in path.parents


__all__ = ["MOUNTINFO", "NETWORK_FILESYSTEMS", "filesystem_type", "network_filesystem"]
