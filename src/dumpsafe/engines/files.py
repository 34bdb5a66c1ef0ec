"""The uploads tree: archived as a tar stream (backup) and extracted safely (restore)."""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dumpsafe.errors import BackupFailed
from dumpsafe.storage.base import Writer

TAR_BUFSIZE = 1 << 20


@dataclass(frozen=True)
class TreeStats:
    files: int
    bytes: int


def check_tree(root: Path, tenant: str) -> None:
    if not root.exists():
        raise BackupFailed(
            f"tenant {tenant!r}: uploads directory {root} does not exist (fix tenants.{tenant}.uploads or pass --no-uploads)"
        )
    if not root.is_dir():
        raise BackupFailed(f"tenant {tenant!r}: uploads path {root} is not a directory (fix tenants.{tenant}.uploads)")


def archive_tree(root: Path, sink: Writer, tenant: str, on_file: Callable[[int], None] | None = None) -> TreeStats:
    """Write ``root`` as a tar stream into ``sink``: regular files, directories and symlinks.

    Members are relative to root and sorted, so the same tree gives the same archive.
    Sockets, FIFOs and devices are skipped: they are not uploads.
    """
    check_tree(root, tenant)
    files = 0
    nbytes = 0

    def onerror(e: OSError) -> None:
        raise e

    try:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=TAR_BUFSIZE) as tar:
            for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
                dirnames.sort()
                rel_dir = os.path.relpath(dirpath, root)
                for name in sorted(dirnames) + sorted(filenames):
                    full = os.path.join(dirpath, name)
                    arc = name if rel_dir == "." else os.path.join(rel_dir, name)
                    st = os.lstat(full)
                    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                        continue
                    info = tar.gettarinfo(full, arcname=arc)
                    info.uname = info.gname = ""
                    if info.isreg():
                        with open(full, "rb") as fh:
                            tar.addfile(info, fh)
                        files += 1
                        nbytes += info.size
                        if on_file:
                            on_file(info.size)
                    else:
                        tar.addfile(info)
    except OSError as e:
        where = getattr(e, "filename", None) or root
        raise BackupFailed(f"tenant {tenant!r}: cannot read uploads at {where} ({e.strerror or e})") from None
    return TreeStats(files, nbytes)
