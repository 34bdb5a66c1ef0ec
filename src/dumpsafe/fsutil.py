"""Small filesystem helpers shared by the local store, the state directory and the uploads tree.

Everything dumpsafe writes at rest is owner-only whatever the umask: files 0600,
directories 0700 (``private_dir``, ``open_private``, ``write_private``); trees written by
older versions are tightened once (``tighten_tree``).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o600
DIR_MODE = 0o700
log = logging.getLogger(__name__)


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """``mkdir -p`` whose new directories are 0700 (exactly, whatever the umask)."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(d, DIR_MODE)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_EXCL) -> BinaryIO:
    """A new file opened for binary writing with mode 0600 (exactly, whatever the umask)."""
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data`` (temp file 0600 beside it, then rename),
    creating its missing parent directories 0700."""
    path = Path(path)
    private_dir(path.parent)
    replace_private(path, data)


def replace_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data`` (temp file 0600 beside it, then rename); its
    directory must exist (a user's output directory is never created or changed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open_private(tmp) as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def tighten_tree(root: Path, skip: frozenset[str] = frozenset()) -> int:
    """Make every file under ``root`` 0600 and every directory 0700 (symlinks are not followed);
    return how many were changed. Only what the current user owns is touched, and nothing
    under a directory in ``skip`` (an application's uploads tree that happens to lie inside)."""
    root = Path(root)
    if not root.is_dir() or root.is_symlink():
        return 0
    changed = 0
    uid = os.geteuid()

    def fix(path: str, want: int) -> None:
        nonlocal changed
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode) or st.st_uid != uid and uid != 0:
            return
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, want)
            changed += 1

    fix(str(root), DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for d in dirnames:
            fix(os.path.join(dirpath, d), DIR_MODE)
        for f in filenames:
            fix(os.path.join(dirpath, f), FILE_MODE)
    return changed


def is_private(path: Path) -> bool:
    """Whether ``path`` grants nothing to group or others."""
    try:
        return not (stat.S_IMODE(os.stat(path).st_mode) & 0o077)
    except FileNotFoundError:
        return True


def secure_roots(roots: list[Path], skip: frozenset[str] = frozenset()) -> int:
    """Create or tighten dumpsafe's directories on start: each root 0700, and a root an older
    version left open is walked once (one log line saying how many entries were fixed)."""
    total, where = 0, []
    for root in roots:
        root = Path(root)
        if not root.exists():
            private_dir(root)
            continue
        if is_private(root):
            continue
        total += tighten_tree(root, skip)
        where.append(str(root))
    if where:
        log.warning("tightened %d files and directories to owner-only (0600/0700) under %s", total, ", ".join(where))
    return total


def private_roots(config: object) -> list[Path]:
    """dumpsafe's own directories for ``secure_roots``: the state directory, and the spool
    directory and local store roots where they exist (a missing store root may be an
    unmounted disk: it is not created here)."""
    roots = [Path(config.state_dir)]  # type: ignore[attr-defined]
    spool = getattr(config, "spool_dir", None)
    stores = [getattr(s, "path", None) for s in getattr(config, "stores", {}).values()]
    roots += [Path(p) for p in [spool, *stores] if p is not None and Path(p).is_dir()]
    return roots


def secure_config_roots(config: object) -> int:
    """``secure_roots`` for a config's own directories, never touching a tenant's uploads tree."""
    uploads = [getattr(t, "uploads", None) for t in getattr(config, "tenants", {}).values()]
    skip = frozenset(os.path.realpath(p) for p in uploads if p is not None) | frozenset(str(p) for p in uploads if p)
    return secure_roots(private_roots(config), skip)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists here (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
