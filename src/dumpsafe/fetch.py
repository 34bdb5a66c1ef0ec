"""Read a backup's stored objects back: one pass that hashes the stored bytes and yields plain ones.

Every restore path reads each remote object exactly once:
- the database dump is spooled (decompressed) to a local 0600 file while its stored bytes
  are hashed; only after the hash and size match does anything touch a database. The local
  file then feeds ``pg_restore --list`` and ``pg_restore -j N`` (parallel restore needs a
  seekable file), so no whole dump is read twice from the store or spooled twice.
- the uploads archive is extracted into a staging directory beside the live tree while it
  is hashed; a mismatch removes the staging directory before the live tree is touched.
- verify without a drill streams each object through the checks and keeps nothing.

Encryption (issue 7) slots in at ``_plain_reader``: stored bytes -> hash -> decrypt -> zstd.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import zstandard

from dumpsafe.errors import DumpsafeError, IntegrityError, RestoreFailed, UsageError
from dumpsafe.models import BackupRecord, ObjectRef
from dumpsafe.pipeline import CHUNK, Advance, HashingReader
from dumpsafe.storage import Store

T = TypeVar("T")


class LocalFailure(RestoreFailed):
    """Our own side failed (spool disk full, staging not writable): not the object's fault."""


class PlainStream:
    """The decompressed bytes of one object (``read``); ``finish`` drains and checks the hash."""

    def __init__(self, record: BackupRecord, ref: ObjectRef, hashed: HashingReader, plain):
        self.record, self.ref = record, ref
        self._hashed = hashed
        self._plain = plain
        self.plain_bytes = 0

    def read(self, n: int = -1) -> bytes:
        data = self._plain.read(CHUNK if n is None or n < 0 else n)
        self.plain_bytes += len(data)
        return data

    def finish(self) -> None:
        """Read what is left, then raise IntegrityError if the stored bytes are not the recorded ones.

        A decoding error is reported only after the hash: tampered bytes are an integrity
        failure, whatever symptom they caused first.
        """
        decode_error: Exception | None = None
        try:
            while self.read(CHUNK):
                pass
        except zstandard.ZstdError as e:
            decode_error = e
        while self._hashed.read(CHUNK):
            pass
        check_digest(self.record, self.ref, self._hashed.hexdigest, self._hashed.count)
        if decode_error is not None:
            raise RestoreFailed(
                f"backup {self.record.id}: {self.ref.key} matches its checksum but does not decompress ({decode_error}); "
                "the backup was written damaged"
            )
        if self.ref.raw_bytes is not None and self.plain_bytes != self.ref.raw_bytes:
            raise RestoreFailed(
                f"backup {self.record.id}: {self.ref.key} decompresses to {self.plain_bytes} bytes, "
                f"the record says {self.ref.raw_bytes}"
            )


def check_digest(record: BackupRecord, ref: ObjectRef, sha256: str, size: int) -> None:
    if sha256 != ref.sha256 or size != ref.size_bytes:
        raise IntegrityError(
            f"backup {record.id}: integrity check failed for {ref.key} (read {size} bytes with sha256 {sha256[:16]}..., "
            f"recorded {ref.size_bytes} bytes with sha256 {ref.sha256[:16]}...); nothing was changed"
        )


def check_sizes(store: Store, record: BackupRecord, refs: list[ObjectRef]) -> None:
    """Cheap first look (one stat per object) so a truncated or missing object fails before any download."""
    from dumpsafe.errors import ObjectMissing

    for ref in refs:
        info = store.stat(ref.key)
        if info is None:
            raise ObjectMissing(f"backup {record.id}: object {ref.key} is missing from store {store.name!r}; nothing was changed")
        if info.size != ref.size_bytes:
            raise IntegrityError(
                f"backup {record.id}: integrity check failed for {ref.key} (stored size {info.size} bytes, "
                f"recorded {ref.size_bytes}); nothing was changed"
            )


def _plain_reader(record: BackupRecord, hashed: HashingReader):
    if record.encryption:
        raise UsageError(
            f"backup {record.id} is encrypted ({record.encryption}); this version of dumpsafe cannot decrypt it yet"
        )
    if record.compression != "zstd":
        raise RestoreFailed(f"backup {record.id}: unknown compression {record.compression!r}")
    return zstandard.ZstdDecompressor().stream_reader(hashed, read_size=CHUNK, read_across_frames=True)


@contextmanager
def open_plain(store: Store, record: BackupRecord, ref: ObjectRef, advance: Advance | None = None) -> Iterator[PlainStream]:
    with store.open_read(ref.key) as raw:
        hashed = HashingReader(raw, advance)
        yield PlainStream(record, ref, hashed, _plain_reader(record, hashed))


def consume(store: Store, record: BackupRecord, ref: ObjectRef, fn: Callable[[PlainStream], T],
            advance: Advance | None = None) -> T:
    """Run ``fn`` over an object's plain bytes, then check its integrity (also when ``fn`` failed)."""
    with open_plain(store, record, ref, advance) as stream:
        try:
            result = fn(stream)
        except LocalFailure:
            raise  # our side failed (disk full): reading the rest to hash it would only waste time
        except DumpsafeError:
            stream.finish()
            raise
        except Exception as e:
            stream.finish()  # a tampered object explains the failure better than the symptom
            raise RestoreFailed(f"backup {record.id}: {ref.key} is not a readable archive ({_first_line(e)})") from None
        stream.finish()
        return result


def spool(store: Store, record: BackupRecord, ref: ObjectRef, path: Path, advance: Advance | None = None) -> int:
    """Write an object's plain bytes to ``path`` (0600), verified; return its size. Removed on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    ok = False
    try:
        with os.fdopen(fd, "wb") as out:

            def copy(stream: PlainStream) -> int:
                n = 0
                while chunk := stream.read(CHUNK):
                    try:
                        out.write(chunk)
                    except OSError as e:
                        raise LocalFailure(
                            f"cannot spool {ref.key} to {path.parent} ({e.strerror}); free space there or set spool_dir"
                        ) from None
                    n += len(chunk)
                return n

            n = consume(store, record, ref, copy, advance)
        ok = True
        return n
    finally:
        if not ok:
            path.unlink(missing_ok=True)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
