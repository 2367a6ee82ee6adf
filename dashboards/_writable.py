"""Whether a file can be created in a folder, asking the kernel only (nothing is written).

``os.access`` answers for the permissions and a read-only mount; it says yes to root for
kernel file systems such as ``/proc``, where no file can be created, so those are looked up
in the mount table as well.

Example:
    >>> unwritable_folder(Path("/proc"))
    "it is on the kernel's proc file system"
    >>> import tempfile
    >>> unwritable_folder(Path(tempfile.mkdtemp())) is None
    True
"""

from __future__ import annotations

import os
from pathlib import Path

PSEUDO_FILESYSTEMS = frozenset(
    {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs"}
    | {"pstore", "bpf", "configfs", "fusectl", "mqueue", "binfmt_misc", "efivarfs", "hugetlbfs"}
)
"""Kernel filesystems a file cannot be created in, even by root (who passes ``os.access``)."""


def unwritable_folder(folder: Path) -> str | None:
    """Why no file can be created in the folder (``None``: it can), asking the kernel only."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        return "read-only file system"
    fs_type = _filesystem_type(folder)
    if fs_type in PSEUDO_FILESYSTEMS:
        return f"it is on the kernel's {fs_type} file system"
    return None


def _filesystem_type(folder: Path) -> str | None:
    """The type of the file system holding ``folder``, from ``/proc/self/mountinfo`` (Linux)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    target = str(folder.resolve())
    best, best_type = "", None
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = fields[4].encode().decode("unicode_escape")
        fs_type = line.split(" - ", 1)[1].split()[0]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type
