"""Read a backup's stored objects back: one pass that hashes the stored bytes and yields plain ones.

Every restore path reads each remote object exactly once:
- an atomic/new restore with one pg_restore job streams the dump (``Streamed``) into
  pg_restore restoring a staging database while the stored bytes are hashed; the hash and
  size are checked when the stream ends, before the staging database is swapped in (the
  table of contents is read first from the object's head, a second short read).
- clean mode (which restores into the live database) and ``pg_restore -j N`` (parallel
  restore needs a seekable file) spool the dump (decompressed) to a local 0600 file while
  its stored bytes are hashed; only after the hash and size match does anything touch a
  database. The file then feeds ``pg_restore --list`` and pg_restore, so no whole dump is
  read twice from the store or spooled twice.
- the uploads archive is extracted into a staging directory beside the live tree while it
  is hashed; a mismatch removes the staging directory before the live tree is touched.
- verify without a drill streams each object through the checks and keeps nothing.

Read side: stored bytes -> hash -> [age decrypt, in a thread feeding a pipe] -> zstd -> consumer.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pyrage
import zstandard

from dumpsafe.errors import DumpsafeError, IntegrityError, RestoreFailed, UsageError, WrongKey, first_line
from dumpsafe.models import BackupRecord, ObjectRef
from dumpsafe.pipeline import CHUNK, Advance, HashingReader
from dumpsafe.storage import Store

T = TypeVar("T")


class LocalFailure(RestoreFailed):
    """Our own side failed (spool disk full, staging not writable): not the object's fault."""


class PlainStream:
    """The decompressed bytes of one object (``read``); ``finish`` drains and checks the hash."""

    def __init__(self, record: BackupRecord, ref: ObjectRef, hashed: HashingReader, identities: list[Any] | None):
        self.record, self.ref = record, ref
        self._hashed = hashed
        self._decrypt = _Decrypting(record, hashed, identities) if record.encryption else None
        self._plain = _decompressor(record, self._decrypt or hashed)
        self.plain_bytes = 0

    def close(self) -> None:
        if self._decrypt is not None:
            self._decrypt.close()

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
        except (zstandard.ZstdError, WrongKey) as e:
            decode_error = e
        self.close()  # the decrypting thread is done with the stored stream before we drain it
        while self._hashed.read(CHUNK):
            pass
        check_digest(self.record, self.ref, self._hashed.hexdigest, self._hashed.count)
        if isinstance(decode_error, WrongKey):
            raise decode_error
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


def _decompressor(record: BackupRecord, source):
    if record.compression != "zstd":
        raise RestoreFailed(f"backup {record.id}: unknown compression {record.compression!r}")
    return zstandard.ZstdDecompressor().stream_reader(source, read_size=CHUNK, read_across_frames=True)


class _Decrypting:
    """age decryption as a pull reader: pyrage pushes into a pipe from a thread, we read the other end."""

    def __init__(self, record: BackupRecord, hashed: HashingReader, identities: list[Any] | None):
        if record.encryption != "age":
            raise RestoreFailed(f"backup {record.id}: unknown encryption {record.encryption!r}")
        if not identities:
            raise UsageError(
                f"backup {record.id} is encrypted: pass --identity FILE (or set identity_file for the tenant, "
                "or DUMPSAFE_AGE_IDENTITY); nothing was changed"
            )
        self._record = record
        rfd, wfd = os.pipe()
        self._reader = os.fdopen(rfd, "rb", buffering=CHUNK)
        writer = os.fdopen(wfd, "wb", buffering=CHUNK)
        self._error: BaseException | None = None

        def run() -> None:
            try:
                with writer:
                    pyrage.decrypt_io(hashed, writer, identities)
            except BrokenPipeError:
                pass  # the reader went away (its own error is what matters)
            except BaseException as e:  # re-raised on the reading side
                self._error = e

        self._thread = threading.Thread(target=run, name="age-decrypt", daemon=True)
        self._thread.start()

    def read(self, n: int = -1) -> bytes:
        data = self._reader.read(n)
        if not data:
            self._thread.join()
            if self._error is not None:  # sticky: every later read says the same
                e = self._error
                raise WrongKey(
                    f"backup {self._record.id} cannot be decrypted with the identity given ({first_line(e)}); "
                    "is it one of the tenant's keys? Nothing was changed"
                )
        return data

    def close(self) -> None:
        if not self._reader.closed:
            self._reader.close()  # unblocks a writer still pushing
        self._thread.join()


@contextmanager
def open_plain(store: Store, record: BackupRecord, ref: ObjectRef, advance: Advance | None = None,
               identities: list[Any] | None = None) -> Iterator[PlainStream]:
    with store.open_read(ref.key) as raw:
        stream = PlainStream(record, ref, HashingReader(raw, advance), identities)
        try:
            yield stream
        finally:
            stream.close()


def consume(store: Store, record: BackupRecord, ref: ObjectRef, fn: Callable[[PlainStream], T],
            advance: Advance | None = None, identities: list[Any] | None = None) -> T:
    """Run ``fn`` over an object's plain bytes, then check its integrity (also when ``fn`` failed)."""
    with open_plain(store, record, ref, advance, identities) as stream:
        try:
            result = fn(stream)
        except LocalFailure:
            raise  # our side failed (disk full): reading the rest to hash it would only waste time
        except DumpsafeError:
            stream.finish()
            raise
        except Exception as e:
            stream.finish()  # a tampered object explains the failure better than the symptom
            raise RestoreFailed(f"backup {record.id}: {ref.key} is not a readable archive ({first_line(e)})") from None
        stream.finish()
        return result


def check_whole(store: Store, record: BackupRecord, refs: list[ObjectRef], advance: Advance | None = None,
                identities: list[Any] | None = None) -> None:
    """Read objects end to end (hash, size, decoding) keeping nothing: for objects no step consumes."""
    for ref in refs:
        consume(store, record, ref, lambda _stream: None, advance, identities)


def other_objects(record: BackupRecord) -> list[ObjectRef]:
    """Objects besides the dump and the uploads archive (e.g. globals): checked, not restored here."""
    return [o for o in record.objects if o.role not in ("database", "uploads")]


def head(store: Store, record: BackupRecord, ref: ObjectRef, fn: Callable[[Callable[[int], bytes]], T],
         identities: list[Any] | None = None) -> T:
    """Run ``fn`` over the head of an object's plain bytes (it reads only what it needs, e.g.
    pg_restore reading the table of contents). Not hash-checked here: a full hashed pass must
    follow before anything is trusted. When ``fn`` fails, the whole object is checked, so a
    tampered object is reported as such rather than by its symptom."""
    try:
        with open_plain(store, record, ref, identities=identities) as stream:
            return fn(stream.read)
    except LocalFailure:
        raise
    except Exception as e:
        check_whole(store, record, [ref], identities=identities)
        if isinstance(e, DumpsafeError):
            raise
        raise RestoreFailed(f"backup {record.id}: {ref.key} is not a readable archive ({first_line(e)})") from None


class Streamed:
    """An object read straight from the store (no spool): ``feed`` gives a consumer its plain
    bytes (a read function), then drains and checks the stored bytes' hash and size
    (IntegrityError), also when the consumer failed."""

    def __init__(self, store: Store, record: BackupRecord, ref: ObjectRef, identities: list[Any] | None):
        self.store, self.record, self.ref, self.identities = store, record, ref, identities

    def feed(self, consumer: Callable[[Callable[[int], bytes]], T]) -> T:
        return consume(self.store, self.record, self.ref, lambda stream: consumer(stream.read), identities=self.identities)


def spool(store: Store, record: BackupRecord, ref: ObjectRef, path: Path, advance: Advance | None = None,
          identities: list[Any] | None = None) -> int:
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

            n = consume(store, record, ref, copy, advance, identities)
        ok = True
        return n
    finally:
        if not ok:
            path.unlink(missing_ok=True)
