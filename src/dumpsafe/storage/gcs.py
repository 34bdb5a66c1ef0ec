"""Google Cloud Storage store: resumable uploads that are finalized only on a clean exit.

Credentials are the standard Google ones (GOOGLE_APPLICATION_CREDENTIALS, gcloud
application-default login, the metadata server). When STORAGE_EMULATOR_HOST is set the
client library talks to that emulator with anonymous credentials.

A resumable upload creates no object until its last chunk is sent, so an aborted writer
never finalizes; it also cancels the session (DELETE on the session URL) so the service
drops the bytes already received. Transient failures are retried with bounded backoff
until ``retry_deadline_s``; what is left becomes one StoreError sentence.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import storage
from google.cloud.storage import exceptions as storage_exc
from google.cloud.storage.fileio import BlobWriter
from google.cloud.storage.retry import DEFAULT_RETRY

from dumpsafe.config import GCSStoreConfig
from dumpsafe.errors import ObjectMissing, StoreError
from dumpsafe.storage.base import BucketStore, ObjectInfo, commit_or_abort

log = logging.getLogger(__name__)

MiB = 1 << 20

_ERRORS = (
    gexc.GoogleAPIError,
    storage_exc.InvalidResponse,
    storage_exc.DataCorruption,
    auth_exc.GoogleAuthError,
    requests.exceptions.RequestException,
    ConnectionError,
    TimeoutError,
)


def _status(e: Exception) -> int:
    code = getattr(e, "code", None)
    if isinstance(code, int):
        return code
    resp = getattr(e, "response", None)
    return int(getattr(resp, "status_code", 0) or 0)


class _Writer:
    """Small objects go up in one request at commit; larger ones through a resumable session."""

    def __init__(self, store: "GCSStore", key: str):
        self.store = store
        self.key = key
        self.blob = store._bucket.blob(store._full(key), chunk_size=store.chunk_size)
        self.buf = bytearray()
        self.resumable: BlobWriter | None = None
        self.written = 0

    def write(self, data: bytes) -> int:
        n = len(data)
        self.written += n
        try:
            if self.resumable is not None:
                self.resumable.write(data)
                return n
            self.buf += data
            if len(self.buf) >= self.store.chunk_size:
                self.resumable = BlobWriter(
                    self.blob,
                    chunk_size=self.store.chunk_size,
                    retry=self.store.retry,
                    timeout=self.store.cfg.timeout_s,
                    content_type="application/octet-stream",
                )
                pending, self.buf = self.buf, bytearray()
                # all but the last byte first (the writer buffers it, no upload yet), then let our
                # copy go before the last byte makes it read a chunk out to send: one chunk fewer
                # in memory at the peak than handing it over whole
                view = memoryview(pending)
                self.resumable.write(view[:-1])
                last = bytes(view[-1:])
                view.release()
                del view, pending
                self.resumable.write(last)
        except _ERRORS as e:
            raise self.store._error(e, f"writing {self.key}") from None
        return n

    def commit(self) -> None:
        try:
            if self.resumable is None:
                self.blob.upload_from_string(
                    bytes(self.buf),
                    content_type="application/octet-stream",
                    retry=self.store.retry,
                    timeout=self.store.cfg.timeout_s,
                )
            else:
                self.resumable.close()
        except _ERRORS as e:
            raise self.store._error(e, f"writing {self.key}") from None
        finally:
            self.buf = bytearray()

    def abort(self) -> None:
        self.buf = bytearray()
        if self.resumable is None:
            return
        # Never close() here: closing finalizes the object. terminate() cancels the session.
        try:
            self.resumable.terminate()
        except Exception as e:  # the session expires by itself within a week either way
            log.debug("store %r: could not cancel the upload of %s: %s", self.store.name, self.key, type(e).__name__)


class _Chunk:
    """Where one ranged GET's body lands, as it arrives: one copy of the chunk in memory
    (``download_as_bytes`` holds a BytesIO and then its value: two)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> int:
        self.data += b
        return len(b)

    def seek(self, pos: int, whence: int = 0) -> int:  # the client rewinds only to start over
        if (pos, whence) != (0, 0):
            raise OSError("a chunk is only rewound to its start")
        del self.data[:]
        return 0


class _Reader:
    """Ranged GETs of one chunk each. The first is made at open (a missing object fails
    there) and usually is the whole read for small objects like records. When the service
    reports the object's generation, later chunks are pinned to it, so an overwrite during
    the read fails instead of mixing two versions."""

    def __init__(self, store: "GCSStore", key: str, blob: Any):
        self._store, self._key, self._blob = store, key, blob
        self._pos = 0
        self._generation: int | None = None
        self._eof = False
        self._off = 0
        self._buf = self._fetch()
        self._generation = int(blob.generation) if blob.generation else None

    def _fetch(self) -> bytes:
        if self._eof:
            return b""
        want = self._store.chunk_size
        kw = {"if_generation_match": self._generation} if self._generation else {}
        sink = _Chunk()
        try:
            self._blob.download_to_file(
                sink, start=self._pos, end=self._pos + want - 1, checksum=None,
                retry=self._store.retry, timeout=self._store.cfg.timeout_s, **kw,
            )
            data = sink.data
        except gexc.RequestRangeNotSatisfiable:  # at (or past) the end, e.g. an empty object
            data = b""
        self._pos += len(data)
        if len(data) < want:
            self._eof = True
        return data

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (fewer at a chunk boundary); b"" only at the end."""
        try:
            if n is None or n < 0:
                parts = [self._buf[self._off :]]
                while chunk := self._fetch():
                    parts.append(chunk)
                self._buf, self._off = b"", 0
                return b"".join(parts)
            if self._off >= len(self._buf):
                self._buf, self._off = b"", 0  # let the spent chunk go before the next one arrives
                self._buf = self._fetch()
        except _ERRORS as e:
            raise self._store._error(e, f"reading {self._key}") from None
        out = bytes(memoryview(self._buf)[self._off : self._off + n])  # one copy of what is asked for
        self._off += len(out)
        return out


class GCSStore(BucketStore):
    kind = "gcs"
    scheme = "gs"

    def __init__(self, name: str, cfg: GCSStoreConfig):
        super().__init__(name, cfg.bucket, cfg.prefix)
        self.cfg = cfg
        self.chunk_size = cfg.chunk_size_mb * MiB
        self.retry = DEFAULT_RETRY.with_deadline(cfg.retry_deadline_s)
        self._client: Any = None
        self._bucket_obj: Any = None

    # ---- plumbing ---------------------------------------------------------------------------
    @property
    def _bucket(self) -> Any:
        if self._bucket_obj is None:
            try:
                self._client = storage.Client(project=self.cfg.project)
            except _ERRORS as e:
                raise self._error(e, "connecting") from None
            self._bucket_obj = self._client.bucket(self.bucket)
        return self._bucket_obj

    def _where(self) -> str:
        return os.environ.get("STORAGE_EMULATOR_HOST") or "storage.googleapis.com"

    def _error(self, e: Exception, doing: str) -> StoreError:
        """One sentence naming the store and the fix; never echoes credentials."""
        n = self.name
        if isinstance(e, StoreError):
            return e
        if isinstance(e, auth_exc.DefaultCredentialsError):
            return StoreError(
                f"store {n!r}: no Google credentials found (set GOOGLE_APPLICATION_CREDENTIALS to a "
                "service-account key file or run 'gcloud auth application-default login')"
            )
        if isinstance(e, (auth_exc.RefreshError, auth_exc.UserAccessTokenError)):
            return StoreError(
                f"store {n!r}: the Google credentials were rejected (check GOOGLE_APPLICATION_CREDENTIALS "
                "or run 'gcloud auth application-default login')"
            )
        if isinstance(e, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, auth_exc.TransportError,
                          ConnectionError, TimeoutError)) or (
            isinstance(e, gexc.RetryError) and isinstance(e.cause, (requests.exceptions.RequestException, ConnectionError))
        ):
            return StoreError(
                f"store {n!r}: cannot reach {self._where()} while {doing} "
                "(check the network, STORAGE_EMULATOR_HOST and that the service is up)",
                transient=True,
            )
        status = _status(e)
        if status == 404:
            return StoreError(f"store {n!r}: bucket {self.bucket} not found (check stores.{n}.bucket)")
        if status == 401:
            return StoreError(
                f"store {n!r}: the Google credentials were rejected (check GOOGLE_APPLICATION_CREDENTIALS "
                "or run 'gcloud auth application-default login')"
            )
        if status == 403:
            return StoreError(
                f"store {n!r}: access denied to bucket {self.bucket} while {doing} "
                "(grant these credentials roles/storage.objectAdmin on it)"
            )
        if status == 429 or status >= 500 or isinstance(e, gexc.RetryError):
            return StoreError(
                f"store {n!r}: {self._where()} kept failing ({status or type(e).__name__}) while {doing} "
                f"for {self.cfg.retry_deadline_s:g}s; try again later",
                transient=True,
            )
        return StoreError(f"store {n!r}: {type(e).__name__} ({status or 'no status'}) while {doing}")

    def _missing_or_error(self, e: Exception, key: str, doing: str) -> StoreError:
        """A 404 on an object is ObjectMissing unless the bucket itself is gone."""
        if _status(e) == 404:
            try:
                bucket_there = self._bucket.exists(retry=self.retry, timeout=self.cfg.timeout_s)
            except _ERRORS:
                bucket_there = True
            if bucket_there:
                return ObjectMissing(f"store {self.name!r}: object {key} is missing")
        return self._error(e, doing)

    # ---- the Store contract ----------------------------------------------------------------
    @contextmanager
    def open_write(self, key: str, *, size_hint: int | None = None) -> Iterator[_Writer]:
        with commit_or_abort(_Writer(self, key)) as w:
            yield w

    @contextmanager
    def open_read(self, key: str) -> Iterator[_Reader]:
        try:
            reader = _Reader(self, key, self._bucket.blob(self._full(key)))
        except _ERRORS as e:
            raise self._missing_or_error(e, key, f"reading {key}") from None
        yield reader

    def stat(self, key: str) -> ObjectInfo | None:
        blob = self._bucket.blob(self._full(key))
        try:
            blob.reload(retry=self.retry, timeout=self.cfg.timeout_s)
        except _ERRORS as e:
            err = self._missing_or_error(e, key, f"checking {key}")
            if isinstance(err, ObjectMissing):
                return None
            raise err from None
        return self._info(blob)

    def _info(self, blob: Any) -> ObjectInfo:
        modified = blob.updated or blob.time_created or datetime.now(timezone.utc)
        etag = blob.etag or (f"{blob.generation}-{blob.metageneration}" if blob.generation else None)
        return ObjectInfo(blob.name[len(self.prefix) :], int(blob.size or 0), modified, etag)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        try:
            blobs = self._client_list(self.prefix + prefix)
            for blob in blobs:
                yield self._info(blob)
        except _ERRORS as e:
            raise self._error(e, f"listing {prefix or '/'}") from None

    def _client_list(self, full_prefix: str) -> Iterator[Any]:
        bucket = self._bucket
        return self._client.list_blobs(
            bucket, prefix=full_prefix, retry=self.retry, timeout=self.cfg.timeout_s,
            fields="items(name,size,updated,timeCreated,etag,generation,metageneration),nextPageToken",
        )

    def create_if_absent(self, key: str, data: bytes) -> bool:
        """Upload with ``ifGenerationMatch=0``: GCS answers 412 when the object exists."""
        blob = self._bucket.blob(self._full(key))
        try:
            blob.upload_from_string(data, if_generation_match=0, retry=self.retry, timeout=self.cfg.timeout_s)
        except _ERRORS as e:
            if _status(e) == 412:
                return False
            raise self._error(e, f"writing {key}") from None
        return True

    def delete(self, key: str) -> None:
        blob = self._bucket.blob(self._full(key))
        try:
            blob.delete(retry=self.retry, timeout=self.cfg.timeout_s)
        except _ERRORS as e:
            err = self._missing_or_error(e, key, f"deleting {key}")
            if isinstance(err, ObjectMissing):
                return
            raise err from None
