"""The catalog: records live in the store beside the data; a local cache only saves reads.

Layout inside every store (under its prefix):
    objects/<id>/database.dump.zst[.age]   the pg_dump custom-format stream
    objects/<id>/uploads.tar.zst[.age]     the uploads tree (when the tenant has one)
    objects/<id>/record.json               a copy of the record (written just before it)
    records/<id>.json                      the record, written LAST: the commit marker
    pending/<id>.json                      an in-flight create/copy/delete (see pending.py)

Every record carries ``record_sha256``, a SHA-256 of its own content; a record that does
not parse, does not match it, or whose ``sha256`` differs from its database object's
entry is *damaged*: listed by ``damaged`` (never silently dropped) and refused by ``get``
with a DamagedRecord naming ``dumpsafe backup repair ID``.

Listing is one store listing of ``records/`` plus a read of each record not already in
the cache (keyed by the listing's etag), so 10,000 records cost one paginated listing
on a warm cache. A fresh host with an empty state_dir simply reads them all once.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

from pydantic import ValidationError

from dumpsafe.errors import DamagedRecord, ObjectMissing
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


def record_copy_key(backup_id: str) -> str:
    return f"{OBJECTS_PREFIX}{backup_id}/record.json"


def id_from_record_key(key: str) -> str | None:
    if not key.startswith(RECORDS_PREFIX) or not key.endswith(".json"):
        return None
    bid = key[len(RECORDS_PREFIX) : -len(".json")]
    return bid if ID_RE.match(bid) else None


def _content_sha256(d: dict) -> str:
    body = {k: v for k, v in d.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def encode_record(record: BackupRecord) -> bytes:
    d = record.to_json_dict()
    d["record_sha256"] = _content_sha256(d)
    return (json.dumps(d, indent=2, sort_keys=True) + "\n").encode()


def check_record(data: bytes, backup_id: str | None = None) -> BackupRecord:
    """Parse and check a stored record; ValueError says why it is damaged."""
    try:
        d = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("it is not valid JSON") from None
    if not isinstance(d, dict):
        raise ValueError("it is not a JSON object")
    stored = d.get("record_sha256")
    if stored is not None and stored != _content_sha256(d):
        raise ValueError("its content does not match its record_sha256")
    try:
        rec = BackupRecord.model_validate(d)
    except ValidationError as e:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())) or "record"
        raise ValueError(f"{where}: {first.get('msg', 'invalid')}") from None
    if stored is None and rec.record_version >= 2:
        raise ValueError("its record_sha256 is missing")
    if backup_id is not None and rec.id != backup_id:
        raise ValueError(f"it names backup {rec.id!r}")
    db = rec.object("database")
    if db is not None and db.sha256 != rec.sha256:
        raise ValueError("its sha256 does not match its database object's")
    return rec


def decode_record(data: bytes) -> BackupRecord | None:
    try:
        return check_record(data)
    except ValueError:
        return None


def damaged_error(backup_id: str, store: str, reason: str) -> DamagedRecord:
    return DamagedRecord(
        f"integrity check failed: the record of backup {backup_id} in store {store!r} is damaged ({reason}); "
        f"run 'dumpsafe backup repair {backup_id}'"
    )


@dataclass(frozen=True)
class Damaged:
    """A record that is there but cannot be trusted."""

    id: str
    store: str
    reason: str

    def warning(self) -> str:
        return (f"warning: the record of backup {self.id} in store {self.store!r} is damaged ({self.reason}); "
                f"run 'dumpsafe backup repair {self.id}'")


def order_key(r: BackupRecord) -> tuple:
    return (r.sequence or 0, r.created_at, r.id)


def newest_first(records: list[BackupRecord]) -> list[BackupRecord]:
    """Newest first: by ``created_at`` across tenant/databases, but within each one by
    ``sequence`` (which only grows), so a clock set back never reorders its backups."""
    by_time = sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)
    groups: dict[tuple, list[BackupRecord]] = {}
    for r in records:
        groups.setdefault((r.store, r.tenant, r.database), []).append(r)
    for g in groups.values():
        g.sort(key=order_key)  # oldest first: pop() gives the newest
    return [groups[(r.store, r.tenant, r.database)].pop() for r in by_time]


class Catalog:
    """Reads records from one store, through a per-store JSON cache in state_dir."""

    def __init__(self, store: Store, cache_dir: Path | None):
        self.store = store
        self._cache_path = cache_dir / f"index-{store.name}.json" if cache_dir else None
        self._lock = threading.Lock()
        self.damaged: list[Damaged] = []

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
    def records(self, *, refresh: bool = False, id_prefix: str = "") -> list[BackupRecord]:
        """Every committed record in the store (whose ID starts with ``id_prefix``), newest first."""
        with self._lock:
            under = RECORDS_PREFIX + id_prefix
            listing = [o for o in self.store.list(under) if id_from_record_key(o.key)]
            cache = {} if refresh else self._load_cache()
            others = {k: v for k, v in cache.items() if not k.startswith(under)}
            cache = {k: v for k, v in cache.items() if k.startswith(under)}
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
            damaged: list[Damaged] = []
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for info, data in pool.map(fetch, missing):
                    if data is None:
                        continue
                    bid = id_from_record_key(info.key) or info.key
                    try:
                        rec = check_record(data, bid)
                    except ValueError as e:
                        damaged.append(Damaged(bid, self.store.name, str(e)))
                        continue
                    fresh[info.key] = {"etag": info.etag, "record": rec.to_json_dict()}
            self.damaged = sorted(damaged, key=lambda d: d.id)
            if fresh != cache:
                self._save_cache({**others, **fresh})
        return newest_first([BackupRecord.model_validate(v["record"]) for v in fresh.values()])

    def get(self, backup_id: str) -> BackupRecord | None:
        """The record, None when there is none; DamagedRecord when it cannot be trusted."""
        try:
            data = self.store.get_bytes(record_key(backup_id))
        except ObjectMissing:
            return None
        try:
            return check_record(data, backup_id)
        except ValueError as e:
            raise damaged_error(backup_id, self.store.name, str(e)) from None

    def get_copy(self, backup_id: str) -> BackupRecord | None:
        """The record copy beside the objects, if it is there and sound."""
        try:
            return check_record(self.store.get_bytes(record_copy_key(backup_id)), backup_id)
        except (ObjectMissing, ValueError):
            return None

    def put(self, record: BackupRecord, *, after_copy: Callable[[], None] | None = None) -> BackupRecord:
        """Write (or rewrite) a record atomically: its copy beside the objects first, then
        the record itself (the commit marker). Call only after its objects are committed.
        Returns the record as stored (with its ``record_sha256``)."""
        data = encode_record(record)
        self.store.put_bytes(record_copy_key(record.id), data)
        if after_copy is not None:
            after_copy()
        self.store.put_bytes(record_key(record.id), data)
        return BackupRecord.model_validate_json(data)

    def remove(self, backup_id: str, *, after_copy: Callable[[], None] | None = None) -> None:
        """Unlist a backup: the copy first (a crash leaves it listed and whole), then the record."""
        self.store.delete(record_copy_key(backup_id))
        if after_copy is not None:
            after_copy()
        self.store.delete(record_key(backup_id))


def filter_records(
    records: Iterable[BackupRecord], tenant: str | None = None, database: str | None = None
) -> list[BackupRecord]:
    return [r for r in records if (tenant is None or r.tenant == tenant) and (database is None or r.database == database)]
