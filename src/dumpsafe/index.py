"""The catalog: records live in the store beside the data; a local cache only saves reads.

Layout inside every store (under its prefix):
    objects/<id>/database.dump.zst[.age]   the pg_dump custom-format stream
    objects/<id>/uploads.tar.zst[.age]     the uploads tree (when the tenant has one)
    records/<id>.json                      the record, written LAST: the commit marker

Listing is one store listing of ``records/`` plus a read of each record not already in
the cache (keyed by the listing's etag), so 10,000 records cost one paginated listing
on a warm cache. A fresh host with an empty state_dir simply reads them all once.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from pydantic import ValidationError

from dumpsafe.errors import ObjectMissing
from dumpsafe.fsutil import write_private
from dumpsafe.models import ID_RE, BackupRecord
from dumpsafe.storage.base import ObjectInfo, Store

RECORDS_PREFIX = "records/"
OBJECTS_PREFIX = "objects/"


def record_key(backup_id: str) -> str:
    return f"{RECORDS_PREFIX}{backup_id}.json"


def objects_prefix(backup_id: str) -> str:
    return f"{OBJECTS_PREFIX}{backup_id}/"


def object_key(backup_id: str, name: str) -> str:
    return f"{OBJECTS_PREFIX}{backup_id}/{name}"


def id_from_record_key(key: str) -> str | None:
    if not key.startswith(RECORDS_PREFIX) or not key.endswith(".json"):
        return None
    bid = key[len(RECORDS_PREFIX) : -len(".json")]
    return bid if ID_RE.match(bid) else None


def encode_record(record: BackupRecord) -> bytes:
    return (json.dumps(record.to_json_dict(), indent=2, sort_keys=True) + "\n").encode()


def decode_record(data: bytes) -> BackupRecord | None:
    try:
        return BackupRecord.model_validate_json(data)
    except ValidationError:
        return None


class Catalog:
    """Reads records from one store, through a per-store JSON cache in state_dir."""

    def __init__(self, store: Store, cache_dir: Path | None):
        self.store = store
        self._cache_path = cache_dir / f"index-{store.name}.json" if cache_dir else None
        self._lock = threading.Lock()

    # ---- cache ----------------------------------------------------------------------------
    def _load_cache(self) -> dict[str, dict]:
        if not self._cache_path:
            return {}
        try:
            return json.loads(self._cache_path.read_text())
        except (OSError, ValueError):
            return {}

    def _save_cache(self, cache: dict[str, dict]) -> None:
        if not self._cache_path:
            return
        write_private(self._cache_path, json.dumps(cache).encode())  # 0600 in 0700 (issue 12)

    # ---- reads ----------------------------------------------------------------------------
    def records(self, *, refresh: bool = False) -> list[BackupRecord]:
        """Every committed record in the store, newest first."""
        with self._lock:
            listing = [o for o in self.store.list(RECORDS_PREFIX) if id_from_record_key(o.key)]
            cache = {} if refresh else self._load_cache()
            fresh: dict[str, dict] = {}
            missing: list[ObjectInfo] = []
            for info in listing:
                hit = cache.get(info.key)
                if hit and hit.get("etag") == info.etag:
                    fresh[info.key] = hit
                else:
                    missing.append(info)

            def fetch(info: ObjectInfo) -> tuple[ObjectInfo, bytes | None]:
                try:
                    return info, self.store.get_bytes(info.key)
                except ObjectMissing:
                    return info, None

            workers = 16 if len(missing) > 16 else max(1, len(missing))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for info, data in pool.map(fetch, missing):
                    if data is None:
                        continue
                    rec = decode_record(data)
                    if rec is not None:
                        fresh[info.key] = {"etag": info.etag, "record": rec.to_json_dict()}
            if fresh != cache:
                self._save_cache(fresh)
        out = [BackupRecord.model_validate(v["record"]) for v in fresh.values()]
        out.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return out

    def get(self, backup_id: str) -> BackupRecord | None:
        try:
            data = self.store.get_bytes(record_key(backup_id))
        except ObjectMissing:
            return None
        return decode_record(data)

    def put(self, record: BackupRecord) -> None:
        """Write (or rewrite) a record atomically. Call only after its objects are committed."""
        self.store.put_bytes(record_key(record.id), encode_record(record))

    def remove(self, backup_id: str) -> None:
        self.store.delete(record_key(backup_id))


def filter_records(
    records: Iterable[BackupRecord], tenant: str | None = None, database: str | None = None
) -> list[BackupRecord]:
    return [r for r in records if (tenant is None or r.tenant == tenant) and (database is None or r.database == database)]
