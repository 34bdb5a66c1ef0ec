"""Local directory store: temp name, fsync, atomic rename, fsync the directory."""

from __future__ import annotations

import errno
import os
import secrets
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

from dumpsafe.errors import ObjectMissing, StoreError
from dumpsafe.fsutil import fsync_dir, open_private, pid_alive, private_dir
from dumpsafe.storage.base import ObjectInfo, Store, check_key

_TMP_MARK = ".tmp-"


def _discard(fh: BinaryIO) -> None:
    """Close without raising: bytes still buffered are dropped (the file is deleted anyway;
    the descriptor is closed even when the final flush fails)."""
    try:
        fh.close()
    except OSError:
        pass


class _Writer:
    def __init__(self, fh: BinaryIO):
        self._fh = fh
        self.written = 0

    def write(self, data: bytes) -> int:
        n = self._fh.write(data)
        self.written += len(data)
        return n


class LocalStore(Store):
    kind = "local"

    def __init__(self, name: str, path: Path):
        super().__init__(name)
        self.root = Path(path)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _oserror(self, e: OSError, what: str) -> StoreError:
        if e.errno == errno.ENOSPC:
            return StoreError(f"store {self.name!r}: no space left on device while writing {what} (free space under {self.root})")
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StoreError(f"store {self.name!r}: permission denied writing {what} (check that {self.root} is writable)")
        return StoreError(f"store {self.name!r}: {e.strerror or e} while writing {what}")

    @contextmanager
    def open_write(self, key: str, *, size_hint: int | None = None) -> Iterator[_Writer]:
        final = self._path(key)
        try:
            private_dir(final.parent)  # 0700 (issue 12)
        except OSError as e:
            raise self._oserror(e, key) from None
        tmp = final.with_name(f".{final.name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        try:
            fh = open_private(tmp)  # 0600 (issue 12)
        except OSError as e:
            raise self._oserror(e, key) from None
        committed = False
        try:
            writer = _Writer(fh)
            try:
                yield writer
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
            except BaseException:
                _discard(fh)  # a failing close must not replace the error that got us here
                raise
            if tmp.stat().st_size != writer.written:
                raise StoreError(f"store {self.name!r}: short write for {key} (disk full?)")
            os.replace(tmp, final)
            committed = True
            fsync_dir(final.parent)
        except OSError as e:
            raise self._oserror(e, key) from None
        finally:
            if not committed:
                try:
                    tmp.unlink()
                except FileNotFoundError:
                    pass

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        try:
            fh = open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectMissing(f"store {self.name!r}: object {key} is missing") from None
        except OSError as e:
            raise StoreError(f"store {self.name!r}: cannot read {key} ({e.strerror})") from None
        with fh:
            yield fh

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc), f"{st.st_mtime_ns}-{st.st_size}")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        start = self.root
        # walk only the directory the prefix names (if any), filter the rest by string prefix
        if "/" in prefix:
            start = self.root / prefix.rsplit("/", 1)[0]
            if not start.is_dir():
                return
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for fn in sorted(filenames):
                if _TMP_MARK in fn:
                    continue
                key = fn if rel_dir == "." else f"{rel_dir}/{fn}"
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, fn))
                except FileNotFoundError:
                    continue
                yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc), f"{st.st_mtime_ns}-{st.st_size}")

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as e:
            raise StoreError(f"store {self.name!r}: cannot delete {key} ({e.strerror})") from None
        # remove now-empty parent directories up to the root
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def url(self, key: str = "") -> str:
        return (self.root / key).resolve().as_uri() if key else self.root.resolve().as_uri()

    def sweep(self, older_than_s: float = 86400) -> int:
        """Remove temp files of writers that died (pid gone, or older than a day)."""
        removed = 0
        if not self.root.is_dir():
            return 0
        now = time.time()
        for dirpath, _dirs, filenames in os.walk(self.root):
            for fn in filenames:
                if _TMP_MARK not in fn:
                    continue
                p = Path(dirpath) / fn
                try:
                    pid = int(fn.rsplit(_TMP_MARK, 1)[1].split("-")[0])
                except (ValueError, IndexError):
                    pid = -1
                try:
                    stale = (pid > 0 and not pid_alive(pid)) or now - p.stat().st_mtime > older_than_s
                    if stale:
                        p.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed
