"""The uploads tree: archived as a tar stream (backup) and extracted safely (restore)."""

from __future__ import annotations

import os
import stat
import tarfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

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


class TarStream:
    """The reading end of a tar archive being written by a producer thread."""

    def __init__(self, reader: BinaryIO):
        self.reader = reader
        self.stats: TreeStats | None = None
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        return self.reader.read(n)


@contextmanager
def tar_stream(root: Path, tenant: str) -> Iterator[TarStream]:
    """Archive ``root`` in a thread and yield a reader of the tar bytes (pull-style, so the
    same pipeline serves pg_dump's stdout and the uploads tree). On leaving the block the
    producer's failure, if any, is raised, so the caller's store writer aborts."""
    check_tree(root, tenant)
    rfd, wfd = os.pipe()
    stream = TarStream(os.fdopen(rfd, "rb", buffering=TAR_BUFSIZE))
    sink = os.fdopen(wfd, "wb", buffering=TAR_BUFSIZE)

    def produce() -> None:
        try:
            with sink:
                stream.stats = archive_tree(root, sink, tenant)
        except BrokenPipeError:
            pass  # the consumer stopped early; its own error is what matters
        except BaseException as e:  # re-raised in the caller's thread below
            stream.error = e

    producer = threading.Thread(target=produce, name="uploads-tar", daemon=True)
    producer.start()
    try:
        yield stream
    finally:
        stream.reader.close()  # unblocks a producer still writing
        producer.join()
    if stream.error is not None:
        raise stream.error
    if stream.stats is None:
        raise BackupFailed(f"tenant {tenant!r}: archiving the uploads tree did not complete")
