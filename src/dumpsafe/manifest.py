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
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator

import zstandard

from dumpsafe.storage.base import ObjectInfo, Store

CATALOG_PREFIX = "catalog/"
MANIFESTS_PREFIX = "catalog/manifests/"
NOTES_PREFIX = "catalog/changes/"
MANIFEST_SUFFIX = ".jsonl.zst"
FORMAT = "dumpsafe-catalog-manifest"
VERSION = 1
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


def _chunks(store: Store, key: str) -> Iterator[list[bytes]]:
    """The manifest's lines, a decompressed chunk (~1 MiB) of them at a time."""
    dec = zstandard.ZstdDecompressor()
    with store.open_read(key) as r:
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


def read_manifest(store: Store, key: str) -> Manifest:
    """Open a manifest: the header now (ManifestError if it is not one), entries lazily.
    The entries' iterator checks the trailer (count and SHA-256) when it is exhausted, so
    a caller applies them in one transaction and rolls back on ManifestError."""
    chunks = _chunks(store, key)
    try:
        lines = next(chunks)
        first = lines.pop(0)
        header = json.loads(first)
    except (StopIteration, IndexError, ValueError):
        raise ManifestError("its header is missing or not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ManifestError("it is not a version-1 dumpsafe catalog manifest")
    h = hashlib.sha256(first + b"\n")

    def entries() -> Iterator[tuple[list | dict, bytes | None]]:
        count = 0
        for batch in itertools.chain([lines], chunks):
            if not batch:
                continue
            metas, recs = _metas(batch)
            for i, meta in enumerate(metas):
                if isinstance(meta, dict) and meta.get("end") is True:
                    if i:  # the SHA-256 covers every line before the trailer, each with its newline
                        h.update(b"\n".join(batch[:i]) + b"\n")
                    if meta.get("lines") != count + i or meta.get("sha256") != h.hexdigest():
                        raise ManifestError("its content does not match its trailer's SHA-256")
                    yield from zip(metas[:i], (r or None for r in recs[:i]))
                    return
            h.update(b"\n".join(batch) + b"\n")
            count += len(batch)
            yield from zip(metas, (r or None for r in recs))
        raise ManifestError("its trailer is missing (cut short)")

    return Manifest(key, set(header.get("covers") or ()), entries())
