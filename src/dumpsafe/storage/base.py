"""The one Store interface every backend implements (local, s3, gcs).

Contract (every backend, checked by tests/test_store_contract.py):
- ``open_write(key)`` returns a context manager yielding a writer with ``write(bytes)``.
  Leaving the block normally commits: the object appears whole, atomically. Leaving it
  by an exception aborts: no object, no partial bytes visible under ``key``.
- ``open_read(key)`` yields a reader with ``read(n)``; a missing key raises ObjectMissing.
- ``stat(key)`` returns ObjectInfo or None. ``list(prefix)`` yields ObjectInfo for every
  committed object under prefix, in one listing pass (no per-object round trip).
- ``delete(key)`` is idempotent: deleting a missing object succeeds.
Keys are relative, "/"-separated, never absolute and never containing "..".
"""

from __future__ import annotations

import abc
import re
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator, Protocol, TypeVar

from dumpsafe.errors import ObjectMissing, StoreError

W = TypeVar("W", bound="Committable")

_KEY_RE = re.compile(r"^(?!/)(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9._~/-]+$")


def check_key(key: str) -> str:
    if not _KEY_RE.match(key) or "//" in key:
        raise StoreError(f"refusing unsafe object key {key!r}")
    return key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime
    etag: str | None = None


@dataclass(frozen=True)
class Unfinished:
    """An upload the service holds open (an S3 multipart upload): no object yet."""

    key: str
    handle: str


class Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Committable(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


@contextmanager
def commit_or_abort(writer: "W") -> Iterator["W"]:
    """Yield ``writer``; commit it on a clean exit, abort it on any exception (also one
    raised by the commit itself). The shape of every object-store ``open_write``."""
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    try:
        writer.commit()
    except BaseException:
        writer.abort()
        raise


class Store(abc.ABC):
    """A named place backups live. Callers only ever pass store names from the config."""

    kind: str = "abstract"

    def __init__(self, name: str):
        self.name = name

    @abc.abstractmethod
    def open_write(self, key: str, *, size_hint: int | None = None) -> AbstractContextManager[Writer]:
        """Commit on clean exit, abort on exception (see module docstring)."""

    @abc.abstractmethod
    def open_read(self, key: str) -> AbstractContextManager[Reader]:
        """Stream an object's bytes; ObjectMissing when absent."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo | None: ...

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; succeeds when it is already gone."""

    @abc.abstractmethod
    def url(self, key: str = "") -> str:
        """A human-readable location (file:///..., s3://bucket/prefix/..., gs://...)."""

    def sweep(self) -> int:
        """Remove leftovers of crashed writers that the store itself can tell are dead
        (local: temp files of gone pids); returns how many. Backends without any: 0."""
        return 0

    def unfinished(self, prefix: str = "") -> Iterator[Unfinished]:
        """Uploads under ``prefix`` that were started and neither completed nor aborted.
        Which of them are dead is decided by the caller (pending markers), never by age."""
        return iter(())

    def abort_unfinished(self, upload: Unfinished) -> None:
        """Abort an upload listed by ``unfinished`` (idempotent)."""

    # ---- small helpers built on the contract --------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        with self.open_write(key, size_hint=len(data)) as w:
            w.write(data)

    def get_bytes(self, key: str) -> bytes:
        chunks = []
        with self.open_read(key) as r:
            while True:
                b = r.read(1 << 20)
                if not b:
                    break
                chunks.append(b)
        return b"".join(chunks)

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None


class BucketStore(Store):
    """A store inside a bucket under an optional prefix (S3, GCS): keys map to
    ``<prefix>/<key>`` and back, and locations read ``<scheme>://bucket/prefix/key``."""

    scheme = "bucket"

    def __init__(self, name: str, bucket: str, prefix: str):
        super().__init__(name)
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    def url(self, key: str = "") -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}{key}"


__all__ = ["Store", "BucketStore", "ObjectInfo", "Unfinished", "Writer", "Reader", "check_key", "ObjectMissing", "StoreError"]
