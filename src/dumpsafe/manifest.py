"""Catalog manifests and change notes: what lets a cold host list 100,000 records fast.

Inside every store, beside ``records/``:
    catalog/changes/<stamp>-<rand>-<id>          a change note: "record <id> may have changed"
    catalog/manifests/<stamp>-<rand>.jsonl.zst   every record up to a point (zstd JSON lines)

A change note is an empty object written BEFORE a record is written, rewritten or removed
(Catalog.put / remove, the sweep finishing a dead delete), so whatever happens to the record
afterwards, a note newer than it exists. A manifest is written whole under a new name
(atomically, like any object) and never edited; it names the change notes it already
covers. A reader takes the newest manifest, then re-reads the record of every note the
manifest does not cover, and of every note younger than ``SETTLE`` (its write may have
been running while the manifest was made). Two hosts writing manifests at once lose
nothing: notes are only removed long after a manifest covering them was written.

A manifest line is ``<meta JSON>\\t<record JSON>``, the meta an array [id, tenant, database,
created_at, sequence, copy_of, etag] (a damaged record: an object with its ``id`` and
``damaged`` reason and no record, so it stays reported); the first line is a header, the last a trailer
holding the SHA-256 of every line before it. A manifest that fails any check is not
used (the reader falls back to listing ``records/``), never half-trusted.

Version 2 (this one) writes the sound records in listing order: newest first by
(created_at, id), the order of ``catalog_cache.newest_first``; the damaged entries follow
them. The reader refuses a line out of that order. So ``backup list`` streams the records'
JSON straight out of the manifest (merged with the few records changed since), and the
local cache holds only their columns. A version-1 manifest (any order) is not used: the
reader lists ``records/`` as if there were none, and the next compaction (``index
rebuild``, or a create/prune once ``COMPACT_EVERY`` changes are uncovered) writes a v2 one.

Trust: a host fetches the manifest once (``fetch``) into its cache directory, hashing the
compressed bytes as they arrive, then reads that local copy whole, checking the trailer
and the order, before anything from it is used; the cache keeps the copy's SHA-256. Every
later listing re-hashes the local copy (~7 MB at 100,000 records: milliseconds) and only
streams from it when the digest still matches (else it is fetched and checked again).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterable, Iterator

import zstandard

from dumpsafe.storage.base import ObjectInfo, Store

if TYPE_CHECKING:
    from dumpsafe.catalog_cache import CatalogCache

CATALOG_PREFIX = "catalog/"
MANIFESTS_PREFIX = "catalog/manifests/"
NOTES_PREFIX = "catalog/changes/"
MANIFEST_SUFFIX = ".jsonl.zst"
FORMAT = "dumpsafe-catalog-manifest"
VERSION = 2  # 2: sound records in listing order (newest first), damaged ones after
SETTLE = timedelta(minutes=10)  # a note this young is re-checked even when a manifest covers it
KEEP = timedelta(hours=1)  # covered notes and superseded manifests older than this are removed


def _stamp(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def note_key(backup_id: str, now: datetime | None = None) -> str:
    return f"{NOTES_PREFIX}{_stamp(now or datetime.now(timezone.utc))}-{secrets.token_hex(4)}-{backup_id}"


def note_id(key: str) -> str | None:
    if not key.startswith(NOTES_PREFIX):
        return None
    parts = key[len(NOTES_PREFIX) :].split("-", 2)
    return parts[2] if len(parts) == 3 and parts[2] else None


def write_note(store: Store, backup_id: str) -> None:
    """Say "record <id> may change": call BEFORE writing, rewriting or removing the record."""
    store.put_bytes(note_key(backup_id), b"")


def is_manifest(key: str) -> bool:
    return key.startswith(MANIFESTS_PREFIX) and key.endswith(MANIFEST_SUFFIX)


@dataclass
class CatalogListing:
    """One listing of ``catalog/``: the manifests (oldest first) and the change notes."""

    manifests: list[ObjectInfo] = field(default_factory=list)
    notes: list[ObjectInfo] = field(default_factory=list)

    @property
    def newest(self) -> ObjectInfo | None:
        return self.manifests[-1] if self.manifests else None


def list_catalog(store: Store) -> CatalogListing:
    out = CatalogListing()
    for o in store.list(CATALOG_PREFIX):
        if is_manifest(o.key):
            out.manifests.append(o)
        elif note_id(o.key):
            out.notes.append(o)
    out.manifests.sort(key=lambda o: o.key)
    return out


def young(note: ObjectInfo, now: datetime) -> bool:
    return now - note.modified < SETTLE


# ---- writing -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One line: a sound record (its meta and normalized JSON) or a damaged one (its reason)."""

    meta: list | dict
    record_json: bytes | None = None


def write_manifest(store: Store, entries: Iterable[Entry], covers: list[str], now: datetime) -> str:
    """Write a new manifest (atomically, under a new name); returns its key."""
    key = f"{MANIFESTS_PREFIX}{_stamp(now)}-{secrets.token_hex(4)}{MANIFEST_SUFFIX}"
    h = hashlib.sha256()
    comp = zstandard.ZstdCompressor(level=3, write_checksum=True).compressobj()
    count = 0
    with store.open_write(key) as w:
        def line(data: bytes) -> None:
            h.update(data)
            if out := comp.compress(data):
                w.write(out)

        header = {"format": FORMAT, "version": VERSION, "store": store.name, "created_at": now.isoformat(), "covers": covers}
        line(json.dumps(header, separators=(",", ":")).encode() + b"\n")
        for e in entries:
            meta = json.dumps(e.meta, separators=(",", ":")).encode()
            line(meta + (b"\t" + e.record_json if e.record_json is not None else b"") + b"\n")
            count += 1
        trailer = {"end": True, "lines": count, "sha256": h.hexdigest()}
        w.write(comp.compress(json.dumps(trailer, separators=(",", ":")).encode() + b"\n"))
        w.write(comp.flush())
    return key


def remove_superseded(store: Store, listing: CatalogListing, covered: set[str], written: str, now: datetime) -> int:
    """After writing manifest ``written``: remove notes it covers and older manifests, once
    they are older than ``KEEP`` (a reader or writer that listed them a moment ago is done)."""
    removed = 0
    for o in listing.notes:
        if o.key in covered and now - o.modified > KEEP:
            store.delete(o.key)
            removed += 1
    for o in listing.manifests:
        if o.key < written and now - o.modified > KEEP:
            store.delete(o.key)
            removed += 1
    return removed


# ---- reading -----------------------------------------------------------------------------
_decode = json.JSONDecoder().decode


class ManifestError(ValueError):
    """The manifest cannot be trusted (damaged, truncated, another format)."""


@dataclass
class Manifest:
    key: str
    covers: set[str]
    entries: Iterator[tuple[list | dict, bytes | None]]  # consumed once; raises ManifestError at the end if unsound


def _chunks(store: Store | None, key: str | Path) -> Iterator[list[bytes]]:
    """The manifest's lines, a decompressed chunk (~1 MiB) of them at a time (from the store,
    or from a local file when ``store`` is None)."""
    dec = zstandard.ZstdDecompressor()
    if store is not None:
        source = store.open_read(key)
    else:  # a local copy: its path, or a file already open (and hashed) by the caller
        source = open(key, "rb") if isinstance(key, (str, Path)) else contextlib.nullcontext(key)
    with source as r:
        reader = dec.stream_reader(r, read_across_frames=True)
        rest = b""
        while True:
            try:
                chunk = reader.read(1 << 20)
            except zstandard.ZstdError as e:
                raise ManifestError(f"it does not decompress ({e})") from None
            if not chunk:
                break
            *lines, rest = (rest + chunk).split(b"\n")
            if lines:
                yield lines
        if rest:
            raise ManifestError("its last line is cut short")


def _metas(lines: list[bytes]) -> tuple[list, list[bytes]]:
    """The meta of each line and its record JSON (b"" when none): the metas decoded as ONE
    JSON array per chunk (100,000 small decodes cost more than the bytes they parse)."""
    split = [ln.split(b"\t", 1) for ln in lines]
    try:
        metas = _decode("[" + ",".join(s[0].decode() for s in split) + "]")
    except (ValueError, UnicodeDecodeError):
        raise ManifestError("a line is not JSON") from None
    if len(metas) != len(lines):  # a line holding "a,b" (or half a value): not one meta per line
        raise ManifestError("a line is not one JSON value")
    return metas, [s[1] if len(s) == 2 else b"" for s in split]


def _check_order(metas: list, last: tuple) -> tuple:
    """Sound records newest first by (created_at, id), strictly; damaged entries (dicts) after them."""
    for m in metas:
        if isinstance(m, list):
            if last is None:
                raise ManifestError("a record follows its damaged entries")
            try:
                key = (m[3], m[0])
            except IndexError:
                raise ManifestError("an entry lacks a field") from None
            if not key < last:
                raise ManifestError("its records are not in listing order")
            last = key
        elif not (isinstance(m, dict) and m.get("end") is True):
            last = None
    return last


def fetch(store: Store, key: str, dest: Path) -> str:
    """Copy manifest ``key`` to the local file ``dest`` (written whole, then renamed; 0600);
    returns the SHA-256 of its bytes. The caller checks the copy (``read_manifest(None, dest)``)."""
    from dumpsafe.fsutil import open_private

    tmp = dest.with_name(dest.name + f".{secrets.token_hex(4)}.tmp")
    h = hashlib.sha256()
    try:
        with store.open_read(key) as r, open_private(tmp) as w:
            while chunk := r.read(1 << 20):
                h.update(chunk)
                w.write(chunk)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return h.hexdigest()


def open_checked(path: Path, sha256: str | None) -> BinaryIO | None:
    """The local manifest copy, open at its start, if its bytes still have the SHA-256 they
    had when it was fetched and checked; None when it is gone or differs (fetch it again).
    Hashed and then read through the same descriptor: a copy replaced meanwhile is not mixed in."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    if sha256 is None or hashlib.file_digest(f, "sha256").hexdigest() != sha256:
        f.close()
        return None
    f.seek(0)
    return f


def read_manifest(store: Store | None, key: str | Path | BinaryIO, *, checked: bool = False) -> Manifest:
    """Open a manifest (``store`` None: a local copy, its path or open file): the header now
    (ManifestError if it is not one), entries lazily. The entries' iterator checks the order
    as it goes and the trailer (count and SHA-256) when it is exhausted, so a caller applies
    them in one transaction and rolls back on ManifestError. ``checked``: a local copy whose
    digest ``open_checked`` just matched (it was checked whole when fetched): not re-hashed."""
    chunks = _chunks(store, key)
    try:
        lines = next(chunks)
        first = lines.pop(0)
        header = json.loads(first)
    except (StopIteration, IndexError, ValueError):
        raise ManifestError("its header is missing or not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ManifestError(f"it is not a version-{VERSION} dumpsafe catalog manifest")
    h = hashlib.sha256(first + b"\n")

    def entries() -> Iterator[tuple[list | dict, bytes | None]]:
        count = 0
        last = ("\uffff",)  # (created_at, id) of the previous sound record: each must be older
        for batch in itertools.chain([lines], chunks):
            if not batch:
                continue
            metas, recs = _metas(batch)
            if not checked:
                last = _check_order(metas, last)
            for i, meta in enumerate(metas):
                if isinstance(meta, dict) and meta.get("end") is True:
                    if i and not checked:  # the SHA-256 covers every line before the trailer, each with its newline
                        h.update(b"\n".join(batch[:i]) + b"\n")
                    if not checked and (meta.get("lines") != count + i or meta.get("sha256") != h.hexdigest()):
                        raise ManifestError("its content does not match its trailer's SHA-256")
                    yield from zip(metas[:i], (r or None for r in recs[:i]))
                    return
            if not checked:
                h.update(b"\n".join(batch) + b"\n")
            count += len(batch)
            yield from zip(metas, (r or None for r in recs))
        raise ManifestError("its trailer is missing (cut short)")

    return Manifest(key, set(header.get("covers") or ()), entries())


def load_columns(cache: CatalogCache, store: str, path: Path) -> bool:
    """Replace ``store``'s cached rows with the columns of the manifest copy at ``path``
    (checked whole as it is read: ManifestError, or KeyError/TypeError/AttributeError for an
    entry lacking a field); the caller commits or rolls back. Returns whether, in every
    tenant/database, time order is the listing order (``CatalogCache.time_order_holds``)."""
    m = read_manifest(None, path)
    cache.clear(store)
    damaged: list[tuple[str, str]] = []
    seqs: dict[tuple, int] = {}  # per tenant/database: the sequence of its newer record
    ordered = True  # newest first: each one's sequence <= its newer one's

    def rows() -> Iterator[tuple]:  # (*Row, None) as plain tuples: the JSON stays in the copy
        nonlocal ordered
        for meta, rec in m.entries:
            if rec is None or not isinstance(meta, list):
                damaged.append((meta["id"], meta.get("damaged") or "damaged"))
                continue
            if len(meta) != 7:  # [id, tenant, database, created_at, sequence, copy_of, etag]
                raise TypeError("an entry lacks a field")
            seq, group = meta[4] or 0, (meta[1], meta[2])
            if seqs.get(group, seq) < seq:
                ordered = False
            seqs[group] = seq
            yield (store, *meta, None)

    cache.put_many(rows(), bulk=True, flat=True)
    cache.add_damaged(store, damaged)
    cache.add_notes(store, m.covers)
    return ordered
