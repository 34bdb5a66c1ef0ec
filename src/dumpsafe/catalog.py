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

Listing (see ``manifest`` for the store side, ``catalog_cache`` for the local side): one
listing of ``catalog/``, the newest catalog manifest (read once per host), and a read of
each record a change note names since; without a manifest, one listing of ``records/``
and a read of each record not already cached (keyed by the listing's etag). The cache is
SQLite, updated row by row, holding only the records read since the manifest; the manifest's
records are streamed from its checked local copy (written in listing order), merged with
those (``catalog_order``). ``Catalog.compact`` writes a manifest when enough changes are
not in one yet (after a create or prune) and ``index rebuild`` always writes one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from pydantic import TypeAdapter, ValidationError

from dumpsafe import manifest as manifest_mod
from dumpsafe.catalog_cache import CatalogCache, Row
from dumpsafe.errors import DamagedRecord, ObjectMissing
from dumpsafe.catalog_order import entries, merged, newest_by_sequence, newest_first, time_order_holds
from dumpsafe.manifest import (CatalogListing, Entry, ManifestError, check, fetch, list_catalog, note_id,
                               open_checked, record_lines, remove_superseded, write_manifest, write_note)
from dumpsafe.models import ID_RE, BackupRecord, encode_db, rfc3339
from dumpsafe.storage.base import Store

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


COMPACT_EVERY = 100  # changes not yet in a manifest before a create/prune writes a new one
_RECORDS = TypeAdapter(list[BackupRecord])
log = logging.getLogger(__name__)


def _row(store: str, rec: BackupRecord, etag: str | None) -> Row:
    return Row(store, rec.id, rec.tenant, rec.database, rfc3339(rec.created_at), rec.sequence,
               getattr(rec, "copy_of", None), etag)


class Catalog:
    """Reads records from one store: its newest manifest plus the records changed since
    (see ``manifest``), else one listing of ``records/``; through the SQLite cache."""

    def __init__(self, store: Store, cache_dir: Path | None, *, clock: Callable[[], datetime] | None = None):
        self.store = store
        self.cache = CatalogCache(cache_dir)
        if self.cache.path is not None:  # the checked local copies of the store's manifests
            self._mdir = self.cache.path.parent / "manifests"
        else:
            self._mdir = Path(tempfile.mkdtemp(prefix="dumpsafe-manifests-"))
            weakref.finalize(self, shutil.rmtree, self._mdir, True)
        self.clock = clock or (lambda: datetime.now(timezone.utc))  # compared with the store's own times
        self._lock = threading.Lock()
        self.damaged: list[Damaged] = []
        self.uncovered = 0  # changes the newest manifest does not hold (or records, without one)
        self._listing = CatalogListing()
        self._copy = None  # the checked local manifest copy, open, for the next read after a sync

    # ---- reading from the store ---------------------------------------------------------------
    def _fetch(self, keys: list[tuple[str, str | None]]) -> Iterator[tuple[str, str | None, bytes | None]]:
        """(id, etag, bytes or None when gone) for each (id, etag) in ``keys``, 16 GETs at a time."""
        def one(item: tuple[str, str | None]) -> tuple[str, str | None, bytes | None]:
            bid, etag = item
            try:
                return bid, etag, self.store.get_bytes(record_key(bid))
            except ObjectMissing:
                return bid, etag, None

        if not keys:
            return
        pool = ThreadPoolExecutor(max_workers=min(16, len(keys)))
        window: deque = deque()  # at most 64 reads ahead of the caller: memory stays flat
        try:
            for item in keys:
                window.append(pool.submit(one, item))
                if len(window) >= 64:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for f in window:
                f.cancel()
            pool.shutdown()

    def _ingest(self, bid: str, etag: str | None, data: bytes | None) -> None:
        if data is None:
            self.cache.drop(self.store.name, bid)
            return
        try:
            rec = check_record(data, bid)
        except ValueError as e:
            self.cache.mark_damaged(self.store.name, bid, str(e), etag)
            return
        self.cache.put(_row(self.store.name, rec, etag), rec.model_dump_json().encode())

    def _sync_listing(self, id_prefix: str) -> None:
        """No manifest: one listing of ``records/`` (under ``id_prefix``), reads of what changed."""
        listed = {bid: o.etag for o in self.store.list(RECORDS_PREFIX + id_prefix) if (bid := id_from_record_key(o.key))}
        cached = self.cache.etags(self.store.name, id_prefix)
        for bid in cached.keys() - listed.keys():
            self.cache.drop(self.store.name, bid)
        todo = [(bid, etag) for bid, etag in listed.items() if bid not in cached or cached[bid] != etag or etag is None]
        for bid, etag, data in self._fetch(todo):
            self._ingest(bid, etag, data)
        self.uncovered = len(listed) if not id_prefix else self.uncovered

    def _local(self, key: str) -> Path:
        """Where this host keeps its checked copy of manifest ``key`` (one file per manifest)."""
        tag = hashlib.sha256(self.store.name.encode()).hexdigest()[:16]
        return self._mdir / f"{tag}-{key.rsplit('/', 1)[-1]}"

    def _load_manifest(self, key: str) -> bool:
        """Fetch a manifest to a local copy and check it whole (trailer, order); then this
        store's cache holds only its small facts (its records stay in the copy); False if unsound."""
        name = self.store.name
        old = self.cache.manifest(name)[0]
        path = self._local(key)
        try:
            from dumpsafe.fsutil import private_dir

            private_dir(self._mdir)
            sha = fetch(self.store, key, path)
            checked = check(path)
        except ManifestError as e:
            log.warning("store %r: catalog manifest %s is not used (%s); listing records/ instead", name, key, e)
            path.unlink(missing_ok=True)
            return False
        self.cache.clear(name)
        self.cache.set_manifest(name, key, sha)
        self.cache.add_damaged(name, checked.damaged)
        self.cache.add_groups(name, checked.groups.values())
        self.cache.add_notes(name, checked.covers)
        if old is not None and old != key:
            self._local(old).unlink(missing_ok=True)
        return True

    def sync(self, *, refresh: bool = False, id_prefix: str = "") -> None:
        """Bring the cache up to date with the store (see the module docstrings)."""
        name = self.store.name
        now = self.clock()
        listing = self._listing = list_catalog(self.store)  # listed BEFORE anything else is read
        with self.cache.db:
            loaded = self.cache.bind(name, self.store.url())
        newest = listing.newest
        use_manifest = newest is not None and not refresh
        self._set_copy(None)
        if use_manifest:
            copy = open_checked(self._local(loaded), self.cache.manifest(name)[1]) if newest.key == loaded else None
            if copy is None and newest.key == loaded:
                log.warning("store %r: the local copy of catalog manifest %s is gone or changed; fetching it again",
                            name, loaded)
            if copy is None:
                with self.cache.db:
                    use_manifest = self._load_manifest(newest.key)
                copy = open_checked(self._local(newest.key), self.cache.manifest(name)[1]) if use_manifest else None
                use_manifest = copy is not None
            self._set_copy(copy)
        with self.cache.db:
            if not use_manifest:
                if (was := self.cache.manifest(name)[0]) is not None:
                    self._local(was).unlink(missing_ok=True)
                if refresh or was is not None:  # rows since a manifest: not the whole store
                    self.cache.clear(name)
                self.cache.set_manifest(name, None)
                self._sync_listing("" if refresh else id_prefix)
                if refresh or not id_prefix:
                    # every change noted so far is in that listing; young ones are re-read below
                    self.cache.add_notes(name, (n.key for n in listing.notes))
            seen = self.cache.seen_notes(name)
            todo: dict[str, None] = {}
            for n in listing.notes:
                if n.key not in seen or manifest_mod.young(n, now):
                    todo[note_id(n.key) or ""] = None
            todo.pop("", None)
            for bid, etag, data in self._fetch([(b, None) for b in todo]):
                self._ingest(bid, etag, data)
            self.cache.add_notes(name, (n.key for n in listing.notes))
            if use_manifest:
                self.cache.forget_notes_except(name, {n.key for n in listing.notes})
                self.uncovered = sum(1 for n in listing.notes if n.modified >= newest.modified)
        self.damaged = [Damaged(bid, name, reason) for bid, reason in self.cache.damaged(name, id_prefix)]

    # ---- reads ----------------------------------------------------------------------------
    def rows(self, *, refresh: bool = False, id_prefix: str = "") -> list[Row]:
        """The listing columns of every sound record (whose ID starts with ``id_prefix``), newest first."""
        with self._lock:
            self.sync(refresh=refresh, id_prefix=id_prefix)
            return newest_first([Row(self.store.name, *m) for m, _ in self._entries(id_prefix=id_prefix)])

    def records(self, *, refresh: bool = False, id_prefix: str = "") -> list[BackupRecord]:
        """Every committed record in the store (whose ID starts with ``id_prefix``), newest first."""
        with self._lock:
            self.sync(refresh=refresh, id_prefix=id_prefix)
            found = list(self._entries(id_prefix=id_prefix))
        if not found:
            return []
        rows = newest_first([Row(self.store.name, *m) for m, _ in found])
        data = {m[0]: j for m, j in found}
        return _RECORDS.validate_json(b"[" + b",".join([data[r.id] for r in rows]) + b"]")

    def newest_of(self, tenant: str, database: str) -> tuple[int, datetime] | None:
        """(sequence or 0, created_at) of the tenant/database's newest record by ``order_key``,
        None without one (what a backup's next sequence needs): mostly from small facts."""
        prefix = f"{tenant}.{encode_db(database)}."
        with self._lock:
            self.sync(id_prefix=prefix)
            got = newest_by_sequence(self.cache, self.store.name, tenant, database,
                                     lambda: self._entries(id_prefix=prefix))
            self._set_copy(None)
        return None if got is None else (got[0], datetime.fromisoformat(got[1]))

    def _set_copy(self, copy) -> None:
        old, self._copy = self._copy, copy
        if old is not None and old is not copy:
            old.close()

    def _lines(self, id_prefix: str = "") -> Iterator[list[bytes]] | None:
        """After a sync: the record lines of the checked local manifest copy (the one the sync
        opened, else opened and re-hashed again), a region at a time, in listing order, minus
        those masked since (and those outside ``id_prefix``); None without a manifest."""
        name = self.store.name
        copy, self._copy = self._copy, None
        loaded, sha = self.cache.manifest(name)
        if copy is None and loaded is not None:
            copy = open_checked(self._local(loaded), sha)
            if copy is None:
                raise ManifestError(f"the local copy of catalog manifest {loaded} changed meanwhile; list again")
        if copy is None:
            return None
        return record_lines(copy, id_prefix, {m.encode() for m in self.cache.masked(name)})

    def _entries(self, tenant: str | None = None, database: str | None = None,
                 id_prefix: str = "") -> Iterator[tuple[list, bytes]]:
        """After a sync: (meta, JSON) of each sound record, newest first by (created_at, id):
        the manifest copy's lines (``_lines``) merged with the records read since."""
        extras = self.cache.newest_first(self.store.name, tenant, database, id_prefix)
        regions = self._lines(id_prefix)
        return extras if regions is None else entries(regions, extras, tenant, database)

    def _in_time_order(self, tenant: str | None, database: str | None) -> bool:
        """Sync; whether time order is the listing order (``catalog_order``)."""
        self.sync()
        if time_order_holds(self.cache, self.store.name, self._lines, tenant, database):
            return True
        self._set_copy(None)
        return False

    def stream(self, tenant: str | None = None, database: str | None = None) -> Iterator[tuple] | None:
        """After a sync: (created_at, id, copy_of, JSON) of each sound record, newest first,
        streamed from the manifest copy and the cache (``_entries``); None when a clock set
        back means time order is not the listing order (then use ``rows``: by sequence)."""
        with self._lock:
            if not self._in_time_order(tenant, database):
                return None
            found = self._entries(tenant, database)
        return ((m[3], m[0], m[5], j) for m, j in found)

    def batches(self, tenant: str | None = None, database: str | None = None) -> Iterator[list[bytes]] | None:
        """After a sync: the record JSON of each sound record, newest first, in lists (a region
        of the manifest copy each, merged with the records read since): ``stream`` for one
        store, without a meta decoded per line where nothing is filtered or merged in. None
        when time order is not the listing order (as ``stream``)."""
        with self._lock:
            if not self._in_time_order(tenant, database):
                return None
            extras = self.cache.newest_first(self.store.name, tenant, database)
            regions = self._lines()
        return merged(regions or iter(()), extras, tenant, database)

    def compact(self, *, force: bool = False, resync: bool = True) -> str | None:
        """Write a new manifest when ``COMPACT_EVERY`` changes are not in one yet (always when
        ``force``); returns its key. ``resync=False``: the cache was just synced by the caller."""
        with self._lock:
            if resync:
                self.sync()
            if not force and self.uncovered < COMPACT_EVERY:
                if self._listing.newest is None:  # listing mode: notes say nothing the listing does not
                    now = self.clock()
                    for n in self._listing.notes:
                        if now - n.modified > manifest_mod.KEEP:
                            self.store.delete(n.key)
                return None
            name = self.store.name
            damaged = self.cache.damaged(name)
            sound = self._entries()

            def entries() -> Iterator[Entry]:  # in listing order (manifest v2), the damaged after
                for meta, data in sound:
                    yield Entry(meta, data)  # [id, tenant, database, created_at, sequence, copy_of, etag]
                for bid, reason in damaged:
                    yield Entry({"id": bid, "damaged": reason})

            now = self.clock()
            listing = self._listing
            covers = [n.key for n in listing.notes]
            key = write_manifest(self.store, entries(), covers, now)  # this host loads it at its next sync
            remove_superseded(self.store, listing, set(covers), key, now)
            self.uncovered = 0
            return key

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
        """Write (or rewrite) a record atomically: a change note first (so manifests never
        hide the change), its copy beside the objects, then the record itself (the commit
        marker). Call only after its objects are committed. Returns the record as stored."""
        data = encode_record(record)
        write_note(self.store, record.id)
        self.store.put_bytes(record_copy_key(record.id), data)
        if after_copy is not None:
            after_copy()
        self.store.put_bytes(record_key(record.id), data)
        return BackupRecord.model_validate_json(data)

    def remove(self, backup_id: str, *, after_copy: Callable[[], None] | None = None) -> None:
        """Unlist a backup: a change note, the copy (a crash leaves it listed and whole), then the record."""
        write_note(self.store, backup_id)
        self.store.delete(record_copy_key(backup_id))
        if after_copy is not None:
            after_copy()
        self.store.delete(record_key(backup_id))
        with self._lock, self.cache.db:
            self.cache.drop(self.store.name, backup_id)
