"""The uploads tree: archived as a tar stream (backup) and extracted safely (restore)."""

from __future__ import annotations

import errno
import logging
import os
import stat
import tarfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from dumpsafe.errors import BackupFailed
from dumpsafe.fsutil import fsync_dir
from dumpsafe.storage.base import Writer

TAR_BUFSIZE = 1 << 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TreeStats:
    files: int
    bytes: int
    skipped: tuple[str, ...] = ()  # members that changed type while the tree was read (see archive_tree)


def check_tree(root: Path, tenant: str) -> None:
    if not root.exists():
        raise BackupFailed(
            f"tenant {tenant!r}: uploads directory {root} does not exist (fix tenants.{tenant}.uploads or pass --no-uploads)"
        )
    if not root.is_dir():
        raise BackupFailed(f"tenant {tenant!r}: uploads path {root} is not a directory (fix tenants.{tenant}.uploads)")


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHANGED = (errno.ELOOP, errno.ENOTDIR, errno.ENOENT, errno.ENXIO)


def archive_tree(root: Path, sink: Writer, tenant: str, on_file: Callable[[int], None] | None = None) -> TreeStats:
    """Write ``root`` as a tar stream into ``sink``: regular files, directories and symlinks.

    Members are relative to root and sorted, so the same tree gives the same archive.
    Sockets, FIFOs and devices are skipped: they are not uploads.

    The walk cannot be led outside the tree by a symlink swapped in while it runs (the
    tree's owner may be hostile): every directory is opened by a file descriptor relative
    to its parent's, and every file with O_NOFOLLOW relative to its directory's, so what is
    read is always the entry inside the tree. The opened file is checked with fstat: a name
    that is no longer a regular file (swapped for a symlink, a FIFO, ...) is skipped and named
    in ``skipped``; a name replaced by another regular file (an app's write-and-rename) is
    archived as it is now, its header taken from the opened file.
    """
    check_tree(root, tenant)
    files = 0
    nbytes = 0
    skipped: list[str] = []

    def open_at(dfd: int, name: str, flags: int, arc: str) -> int | None:
        """``name`` opened relative to its directory's fd; None (and named in ``skipped``) if it changed type meanwhile."""
        try:
            return os.open(name, flags, dir_fd=dfd)
        except OSError as e:
            if e.errno in _CHANGED:
                skipped.append(arc)
                return None
            raise

    def add_file(tar: tarfile.TarFile, dfd: int, name: str, arc: str) -> None:
        nonlocal files, nbytes
        fd = open_at(dfd, name, _FILE_FLAGS, arc)
        if fd is None:
            return
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                skipped.append(arc)
                return
            os.set_blocking(fd, True)
            info = tar.gettarinfo(arcname=arc, fileobj=fh)
            info.uname = info.gname = ""
            tar.addfile(info, fh)
        files += 1
        nbytes += info.size
        if on_file:
            on_file(info.size)

    def add_link(tar: tarfile.TarFile, dfd: int, name: str, arc: str, st: os.stat_result) -> None:
        try:
            target = os.readlink(name, dir_fd=dfd)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):  # no longer a symlink, or gone
                skipped.append(arc)
                return
            raise
        info = _info(arc, st, tarfile.SYMTYPE)
        info.linkname = target
        tar.addfile(info)

    def walk(tar: tarfile.TarFile, dfd: int, rel: str) -> None:
        entries = []
        with os.scandir(dfd) as it:
            for e in it:
                try:
                    entries.append((e.name, e.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue
        dirs = sorted((n, st) for n, st in entries if stat.S_ISDIR(st.st_mode))
        others = sorted((n, st) for n, st in entries if not stat.S_ISDIR(st.st_mode))
        def member(name: str) -> str:
            return f"{rel}/{name}" if rel else name

        for name, st in dirs:
            tar.addfile(_info(member(name), st, tarfile.DIRTYPE))
        for name, st in others:
            arc = member(name)
            if stat.S_ISREG(st.st_mode):
                add_file(tar, dfd, name, arc)
            elif stat.S_ISLNK(st.st_mode):
                add_link(tar, dfd, name, arc, st)
        for name, _st in dirs:  # then each subdirectory, depth first (os.walk's order); fds open: the depth
            sub = open_at(dfd, name, _DIR_FLAGS, member(name))
            if sub is None:
                continue
            try:
                walk(tar, sub, member(name))
            finally:
                os.close(sub)

    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the configured path may be a symlink
        try:
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=TAR_BUFSIZE) as tar:
                walk(tar, top, "")
        finally:
            os.close(top)
    except OSError as e:
        where = getattr(e, "filename", None) or root
        raise BackupFailed(f"tenant {tenant!r}: cannot read uploads at {where} ({e.strerror or e})") from None
    if skipped:
        log.warning("tenant %r: %d uploads entries changed type while being archived and were skipped: %s",
                    tenant, len(skipped), ", ".join(skipped[:10]))
    return TreeStats(files, nbytes, tuple(skipped))


def _info(arc: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arc)
    info.type = kind
    info.mode, info.uid, info.gid, info.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
    info.uname = info.gname = ""
    return info


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


# ---- restore: safe extraction, staging beside the live tree, swap ---------------------------
class UnsafeMember(Exception):
    """A tar member that would land outside the destination or is not a plain file, dir or link."""


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse absolute names, '..', links leaving the tree, devices and FIFOs."""
    name = member.name
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith("/") or os.path.isabs(name):
        raise UnsafeMember(f"member {name!r} has an absolute path")
    if ".." in parts or not parts:
        raise UnsafeMember(f"member {name!r} leaves the destination ('..')")
    if member.isreg() or member.isdir():
        return
    if member.issym():
        target = member.linkname
        if not target or os.path.isabs(target):
            raise UnsafeMember(f"symlink {name!r} points to an absolute path")
        resolved = os.path.normpath(os.path.join(os.path.dirname("/".join(parts)), target))
        if resolved == ".." or resolved.startswith("../") or os.path.isabs(resolved):
            raise UnsafeMember(f"symlink {name!r} points outside the tree ({target!r})")
        return
    if member.islnk():
        target = os.path.normpath(member.linkname)
        if os.path.isabs(member.linkname) or target == ".." or target.startswith("../"):
            raise UnsafeMember(f"hard link {name!r} points outside the tree ({member.linkname!r})")
        return
    raise UnsafeMember(f"member {name!r} is a device, FIFO or other special file")


def _restore_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """Our checks, then the stdlib 'data' filter as a second line (it also resolves symlinks
    already on disk); keep the archived mode and numeric owner the data filter would reset."""
    check_member(member)
    tarfile.data_filter(member, dest)
    return member.replace(mode=None if member.issym() else member.mode & 0o1777, uname="", gname="", deep=False)


def scan_tree_archive(source, on_member: Callable[[tarfile.TarInfo], None] | None = None) -> TreeStats:
    """Read a tar stream to its end without writing anything; every member must pass check_member."""
    files = nbytes = 0
    with tarfile.open(fileobj=source, mode="r|", bufsize=TAR_BUFSIZE) as tar:
        for m in tar:
            check_member(m)
            if m.isreg():
                files += 1
                nbytes += m.size
            if on_member:
                on_member(m)
    return TreeStats(files, nbytes)


def extract_tree(source, dest: Path) -> TreeStats:
    """Extract a tar stream into ``dest`` (which must exist and be empty), member by member."""
    files = nbytes = 0
    with tarfile.open(fileobj=source, mode="r|", bufsize=TAR_BUFSIZE) as tar:
        for m in tar:
            tar.extract(m, dest, filter=_restore_filter)
            if m.isreg():
                files += 1
                nbytes += m.size
    return TreeStats(files, nbytes)


STAGING_MARK = ".dumpsafe-staging-"


@contextmanager
def staging(live: Path) -> Iterator[Path]:
    """A fresh hidden directory beside ``live`` (same filesystem, so the swap is a rename).

    It is claimed by an flock on a sibling ``.lock`` file while we work; on leaving, whatever
    is still under its name (a tree never swapped in, or the old tree after the swap) is
    removed. Leftovers of a process that died are swept first (their lock is free).
    """
    import fcntl
    import secrets

    live.parent.mkdir(parents=True, exist_ok=True)
    sweep_staging(live)
    d = live.parent / f".{live.name}{STAGING_MARK}{secrets.token_hex(4)}"
    lock = Path(f"{d}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        d.mkdir(mode=0o700)  # owner-only while staged; swap_in gives it the live tree's mode and owner
        os.chmod(d, 0o700)
        yield d
    finally:
        remove_tree(d)
        lock.unlink(missing_ok=True)
        os.close(fd)


def sweep_staging(live: Path) -> list[Path]:
    """Remove staging trees beside ``live`` whose process is gone; put a live tree back if a
    dead process had moved it aside (two-rename fallback) before swapping the new one in."""
    import fcntl

    removed: list[Path] = []
    for lock in live.parent.glob(f".{glob_escape(live.name)}{STAGING_MARK}*.lock"):
        fd = os.open(lock, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a restore is working there now
            d = Path(str(lock)[: -len(".lock")])
            old = Path(f"{d}-old")
            if old.exists() and not os.path.lexists(live):
                os.rename(old, live)
            for p in (d, old):
                if os.path.lexists(p):
                    remove_tree(p)
                    removed.append(p)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return removed


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths with renameat2(RENAME_EXCHANGE); False when unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def swap_in(staged: Path, live: Path) -> None:
    """Put ``staged`` at ``live``; the previous tree is removed. Readers see the old or the new
    tree, never a mix (atomic exchange where the kernel has it, else two renames)."""
    if not os.path.lexists(live):
        os.rename(staged, live)
        return
    try:
        st = os.stat(live)
        os.chmod(staged, stat.S_IMODE(st.st_mode))
        if os.geteuid() == 0:
            os.chown(staged, st.st_uid, st.st_gid)
    except FileNotFoundError:
        pass
    if _exchange(staged, live):
        old = staged  # after the exchange the staging name holds the old tree
    else:
        old = Path(f"{staged}-old")
        os.rename(live, old)
        try:
            os.rename(staged, live)
        except OSError:
            os.rename(old, live)
            raise
    fsync_dir(live.parent)
    remove_tree(old)


def remove_tree(path: Path) -> None:
    import shutil

    if os.path.islink(path) or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
