"""S3-compatible store (boto3): streaming multipart writes that complete or abort.

Credentials come from the standard AWS chain (env, profile, instance role); an
``endpoint_url`` points at any S3-compatible service. Transient failures (timeouts,
5xx, throttling, dropped connections) are retried by botocore's "standard" mode with
bounded exponential backoff; anything left after that becomes one StoreError sentence.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterator

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ResponseStreamingError,
)

from dumpsafe.config import S3StoreConfig
from dumpsafe.errors import ObjectMissing, StoreError
from dumpsafe.failpoints import failpoint
from dumpsafe.storage.base import BucketStore, ObjectInfo, Unfinished, commit_or_abort

log = logging.getLogger(__name__)

MiB = 1 << 20
# S3's smallest part, and the default (as rclone's): each part is held in memory while it is
# filled and while it is in flight, so 8 MiB parts cost 9 MiB more peak RSS than 5 MiB ones
# (1 filling + 2 in flight) for one more request per 5 MiB sent.
MIN_PART = 5 * MiB
MAX_PART = 5 * 1024 * MiB  # S3 limit per part
MAX_PARTS = 10_000  # S3 limit per upload

_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
}
_WRONG_REGION = {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"}
_DENIED = {"AccessDenied", "AllAccessDisabled", "403", "Forbidden"}


def part_size_at(index: int, base: int, steady_parts: int) -> int:
    """Size of the 0-based part ``index``: ``base`` for the first ``steady_parts`` parts,
    then doubling every 1,000 parts (capped at 5 GiB), so an upload whose size was not
    known up front still fits S3's 10,000-part limit (5 MiB base: ~4.9 TiB, S3's object limit
    being 5 TiB) while memory
    stays one part for ordinary sizes."""
    if index < steady_parts:
        return base
    return min(MAX_PART, base << ((index - steady_parts) // 1000 + 1))


def choose_part_size(size_hint: int | None, configured_mb: int = 0) -> tuple[int, int]:
    """(base part size, parts before growth) for an upload of about ``size_hint`` bytes."""
    base = max(MIN_PART, configured_mb * MiB)
    if size_hint:
        # fit the expected size in 9,000 parts (headroom for an estimate that was low)
        need = -(-size_hint // 9000)
        base = max(base, -(-need // MiB) * MiB)
        return min(base, MAX_PART), 9000
    return base, 1000


class _Body:
    """A streaming GET body whose network errors read as StoreError."""

    def __init__(self, store: "S3Store", key: str, body: Any):
        self._store, self._key, self._body = store, key, body

    def read(self, n: int = -1) -> bytes:
        try:
            return self._body.read(None if n is None or n < 0 else n)
        except (BotoCoreError, ResponseStreamingError, OSError) as e:
            raise self._store._error(e, f"reading {self._key}") from None


_LIVE_UPLOADS: set[str] = set()  # upload ids of writers running in this process (sweep spares them)
_LIVE_LOCK = threading.Lock()


class _MultipartWriter:
    """Buffers one part while up to ``upload_concurrency`` earlier parts are in flight;
    an object smaller than one part becomes a single PUT at commit."""

    def __init__(self, store: "S3Store", key: str, size_hint: int | None):
        self.store = store
        self.key = key
        self.full_key = store._full(key)
        self.base, self.steady = choose_part_size(size_hint, store.cfg.part_size_mb)
        self.concurrency = store.cfg.upload_concurrency
        self.buf = bytearray()
        self.upload_id: str | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.pending: deque[Future] = deque()
        self.etags: dict[int, str] = {}
        self.next_number = 1
        self.written = 0

    def _part_size(self) -> int:
        return part_size_at(self.next_number - 1, self.base, self.steady)

    def write(self, data: bytes) -> int:
        n = len(data)
        self.buf += data
        self.written += n
        while len(self.buf) >= self._part_size():
            size = self._part_size()
            # the filled buffer becomes the part (only the tail past it is copied): one part's
            # bytes live once, not twice (peak RSS)
            part, self.buf = self.buf, self.buf[size:]
            del part[size:]
            self._queue(part)
        return n

    def _fail(self, e: Exception) -> StoreError:
        return self.store._error(e, f"writing {self.key}")

    def _send(self, number: int, data: bytes) -> tuple[int, str]:
        r = self.store.client.upload_part(
            Bucket=self.store.bucket, Key=self.full_key, UploadId=self.upload_id, PartNumber=number, Body=data
        )
        return number, r["ETag"]

    def _collect(self, fut: Future) -> None:
        try:
            number, etag = fut.result()
        except (BotoCoreError, ClientError) as e:
            raise self._fail(e) from None
        self.etags[number] = etag

    def _queue(self, data: bytes) -> None:
        if self.next_number > MAX_PARTS:
            raise StoreError(
                f"store {self.store.name!r}: {self.key} exceeds {MAX_PARTS} parts "
                f"(raise stores.{self.store.name}.part_size_mb)"
            )
        if self.upload_id is None:
            try:
                r = self.store.client.create_multipart_upload(Bucket=self.store.bucket, Key=self.full_key)
            except (BotoCoreError, ClientError) as e:
                raise self._fail(e) from None
            self.upload_id = r["UploadId"]
            with _LIVE_LOCK:
                _LIVE_UPLOADS.add(self.upload_id)
            failpoint("store.after_multipart_start")
            if self.concurrency > 1:
                self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3-part")
        number = self.next_number
        self.next_number += 1
        if self.pool is None:
            try:
                self.etags.update([self._send(number, data)])
            except (BotoCoreError, ClientError) as e:
                raise self._fail(e) from None
            return
        while len(self.pending) >= self.concurrency:  # backpressure: memory stays bounded
            self._collect(self.pending.popleft())
        self.pending.append(self.pool.submit(self._send, number, data))

    def commit(self) -> None:
        c = self.store.client
        if self.upload_id is None:
            try:
                c.put_object(Bucket=self.store.bucket, Key=self.full_key, Body=bytes(self.buf))
            except (BotoCoreError, ClientError) as e:
                raise self._fail(e) from None
            self.buf = bytearray()
            return
        if self.buf:
            part, self.buf = self.buf, bytearray()
            self._queue(part)
        while self.pending:
            self._collect(self.pending.popleft())
        parts = [{"PartNumber": n, "ETag": self.etags[n]} for n in sorted(self.etags)]
        try:
            c.complete_multipart_upload(
                Bucket=self.store.bucket, Key=self.full_key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
            )
        except (BotoCoreError, ClientError) as e:
            raise self._fail(e) from None
        self._close()

    def _close(self) -> None:
        if self.pool is not None:
            for f in self.pending:
                f.cancel()
            self.pool.shutdown(wait=True)  # in-flight parts finish (or fail) before any abort
            self.pool = None
        self.pending.clear()
        if self.upload_id is not None:
            with _LIVE_LOCK:
                _LIVE_UPLOADS.discard(self.upload_id)

    def abort(self) -> None:
        self.buf = bytearray()
        self._close()
        if self.upload_id is None:
            return
        try:
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.full_key, UploadId=self.upload_id
            )
        except (BotoCoreError, ClientError) as e:
            # nothing is visible under the key either way, and the error that made us abort
            # is the one the user sees; the parts stay until the next sweep (the pending
            # marker says this upload is dead) or a bucket lifecycle rule clears them
            log.debug("store %r: could not abort the upload of %s: %s", self.store.name, self.key, type(e).__name__)


class S3Store(BucketStore):
    kind = "s3"
    scheme = "s3"

    def __init__(self, name: str, cfg: S3StoreConfig):
        super().__init__(name, cfg.bucket, cfg.prefix)
        self.cfg = cfg
        self._client: Any = None

    # ---- plumbing ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            boto_cfg = BotoConfig(
                retries={"mode": "standard", "total_max_attempts": self.cfg.max_attempts},
                connect_timeout=self.cfg.connect_timeout_s,
                read_timeout=self.cfg.read_timeout_s,
                max_pool_connections=16 + self.cfg.upload_concurrency,
            )
            try:
                self._client = boto3.session.Session().client(
                    "s3", endpoint_url=self.cfg.endpoint_url, region_name=self.cfg.region, config=boto_cfg
                )
            except (BotoCoreError, ValueError) as e:
                raise self._error(e, "connecting") from None
        return self._client

    def _where(self) -> str:
        return self.cfg.endpoint_url or "S3"

    def _error(self, e: Exception, doing: str) -> StoreError:
        """One sentence naming the store and the fix; never echoes credentials."""
        n = self.name
        if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
            return StoreError(
                f"store {n!r}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or run with an instance role)"
            )
        if isinstance(e, ProfileNotFound):
            return StoreError(f"store {n!r}: AWS profile {e.kwargs.get('profile')!r} not found (check AWS_PROFILE)")
        if isinstance(e, ParamValidationError):
            first = str(e).splitlines()[-1].strip() if str(e) else "invalid parameter"
            return StoreError(f"store {n!r}: invalid request while {doing}: {first} (check stores.{n})")
        if isinstance(e, (BotoConnectionError, HTTPClientError)):
            fix = f"stores.{n}.endpoint_url" if self.cfg.endpoint_url else f"the network and stores.{n}.region"
            return StoreError(
                f"store {n!r}: cannot reach {self._where()} while {doing} (check {fix} and that the service is up)",
                transient=True,
            )
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code == "NoSuchBucket":
                return StoreError(f"store {n!r}: bucket {self.bucket} not found (check stores.{n}.bucket)")
            if code == "NoSuchUpload":
                return StoreError(f"store {n!r}: the service dropped the upload while {doing}; try again", transient=True)
            if code in _WRONG_REGION:
                return StoreError(
                    f"store {n!r}: bucket {self.bucket} is not in region {self.cfg.region or 'us-east-1'} "
                    f"(set stores.{n}.region to the bucket's region)"
                )
            if code in _BAD_CREDENTIALS:
                return StoreError(
                    f"store {n!r}: {self._where()} rejected the AWS credentials ({code}); "
                    "check the access key and secret, or AWS_PROFILE"
                )
            if code in _DENIED or status == 403:
                return StoreError(
                    f"store {n!r}: access denied to bucket {self.bucket} while {doing} "
                    "(grant these credentials s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on it)"
                )
            if status >= 500 or code in ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"):
                return StoreError(
                    f"store {n!r}: {self._where()} kept failing ({code or status}) while {doing} "
                    f"after {self.cfg.max_attempts} attempts; try again later",
                    transient=True,
                )
            return StoreError(f"store {n!r}: {code or status} while {doing}: {err.get('Message', '')}".rstrip(": "))
        if isinstance(e, StoreError):
            return e
        return StoreError(f"store {n!r}: {type(e).__name__} while {doing}", transient=True)

    # ---- the Store contract ----------------------------------------------------------------
    @contextmanager
    def open_write(self, key: str, *, size_hint: int | None = None) -> Iterator[_MultipartWriter]:
        w = _MultipartWriter(self, key, size_hint)
        self.client  # fail before the caller starts producing bytes
        with commit_or_abort(w):
            yield w

    def create_if_absent(self, key: str, data: bytes) -> bool:
        """PUT with ``If-None-Match: *``: S3 answers 412 (or 409 on a concurrent race) when the key exists."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, IfNoneMatch="*")
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status in (409, 412) or e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise self._error(e, f"writing {key}") from None
        except BotoCoreError as e:
            raise self._error(e, f"writing {key}") from None
        return True

    @contextmanager
    def open_read(self, key: str) -> Iterator[_Body]:
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in _MISSING_KEY:
                raise ObjectMissing(f"store {self.name!r}: object {key} is missing") from None
            raise self._error(e, f"reading {key}") from None
        except BotoCoreError as e:
            raise self._error(e, f"reading {key}") from None
        body = r["Body"]
        try:
            yield _Body(self, key, body)
        finally:
            body.close()

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in _MISSING_KEY:
                return None
            raise self._error(e, f"checking {key}") from None
        except BotoCoreError as e:
            raise self._error(e, f"checking {key}") from None
        return ObjectInfo(key, r["ContentLength"], r["LastModified"], r.get("ETag", "").strip('"') or None)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = self.prefix + prefix
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                for o in page.get("Contents", ()):
                    yield ObjectInfo(
                        o["Key"][len(self.prefix) :], o["Size"], o["LastModified"], o.get("ETag", "").strip('"') or None
                    )
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, f"listing {prefix or '/'}") from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in _MISSING_KEY:
                return
            raise self._error(e, f"deleting {key}") from None
        except BotoCoreError as e:
            raise self._error(e, f"deleting {key}") from None

    def unfinished(self, prefix: str = "") -> Iterator[Unfinished]:
        """Multipart uploads under ``prefix`` not started by a writer of this process."""
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                for u in page.get("Uploads", ()):
                    with _LIVE_LOCK:
                        if u["UploadId"] in _LIVE_UPLOADS:
                            continue
                    yield Unfinished(u["Key"][len(self.prefix) :], u["UploadId"])
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, "listing unfinished uploads") from None

    def abort_unfinished(self, upload: Unfinished) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._full(upload.key), UploadId=upload.handle)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise self._error(e, f"aborting an unfinished upload of {upload.key}") from None
        except BotoCoreError as e:
            raise self._error(e, f"aborting an unfinished upload of {upload.key}") from None
