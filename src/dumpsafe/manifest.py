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
(created_at, id), the order of ``catalog_order.newest_first`` when no clock went back; the
damaged entries follow them. The reader refuses a line out of that order. So ``backup list``
streams the records' JSON straight out of the manifest (merged with the few records changed
since), and the local cache holds none of its records, only small facts (``check``). A
version-1 manifest (any order) is not used: the reader lists ``records/`` as if there were
none, and the next compaction (``index rebuild``, or a create/prune once ``COMPACT_EVERY``
changes are uncovered) writes a v2 one.

Trust: a host fetches the manifest once (``fetch``) into its cache directory, hashing the
compressed bytes as they arrive, then reads that local copy whole (``check``: the trailer's
count and SHA-256, every meta, the order; work per ~1 MiB region, not per line) before
anything from it is used; the cache keeps the copy's SHA-256. Every later listing re-hashes
the local copy (~10 MB at 100,000 records: milliseconds) and only streams from it
(``record_lines``) when the digest still matches (else it is fetched and checked again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import operator
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import zstandard

from dumpsafe.storage.base import ObjectInfo, Store

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
_SEQ_TYPES = {int, type(None)}


class ManifestError(ValueError):
    """The manifest cannot be trusted (damaged, truncated, another format)."""


def _regions(source: BinaryIO) -> Iterator[tuple[memoryview, list[bytes], bool]]:
    """The decompressed manifest a region of whole lines (~1 MiB) at a time: (its bytes, its
    lines without their newlines, whether it is the last region)."""
    reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    rest, held = b"", None
    while True:
        try:
            chunk = reader.read(1 << 20)
        except zstandard.ZstdError as e:
            raise ManifestError(f"it does not decompress ({e})") from None
        if not chunk:
            break
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n") + 1
        if not cut:  # no whole line yet
            rest = data
            continue
        lines = data.split(b"\n")
        rest = lines.pop()
        if held is not None:
            yield held[0], held[1], False
        held = (memoryview(data)[:cut], lines)
    if rest:
        raise ManifestError("its last line is cut short")
    if held is not None:
        yield held[0], held[1], True


def _open(source: Path | BinaryIO):
    return open(source, "rb") if isinstance(source, (str, Path)) else contextlib.nullcontext(source)


def _metas(parts: list[bytes], n: int) -> list:
    """The metas of ``n`` lines (their text before the tab), decoded as ONE JSON array per
    region: 100,000 small decodes cost more than the bytes they parse."""
    try:
        metas = _decode("[" + b",".join(parts).decode() + "]")
    except (ValueError, UnicodeDecodeError):
        raise ManifestError("a line is not JSON") from None
    if len(metas) != n:  # a line holding "a,b" (or half a value): not one meta per line
        raise ManifestError("a line is not one JSON value")
    return metas


@dataclass
class Checked:
    """What checking a manifest copy keeps (its records stay in the copy): the notes it
    covers, its damaged entries (id, reason), and per (tenant, database) its newest record's
    meta and whether that group's sequences grow with time (no clock set back in it)."""

    covers: set[str]
    damaged: list[tuple[str, str]]
    groups: dict[tuple[str, str], tuple[list, bool]]


def _group_facts(metas: list[list], groups: dict) -> None:
    """Newest first: each group's first meta is its newest; its sequences must not grow after it."""
    for m in metas:
        g, s = (m[1], m[2]), m[4] or 0
        f = groups.get(g)
        if f is None:
            groups[g] = [m, True, s]
        else:
            if s > f[2]:
                f[1] = False
            f[2] = s


def _check_lines(lines: list[bytes], last: tuple | None, groups: dict, damaged: list) -> tuple | None:
    """Check a region's lines (records newest first by (created_at, id), strictly, after
    ``last``; damaged entries only after them); gather the group facts and damaged entries.
    Returns the key of its last record (None once damaged entries began)."""
    tabs = [ln.find(b"\t") for ln in lines]
    if min(tabs) > 0:  # records only (a damaged entry has no tab): chunk-level checks
        if min(map(operator.sub, map(len, lines), tabs)) < 2:
            raise ManifestError("a record line lacks its record")
        metas = _metas([ln[:i] for ln, i in zip(lines, tabs)], len(lines))
        if last is None:
            raise ManifestError("a record follows its damaged entries")
        try:
            if (set(map(type, metas)) != {list} or set(map(len, metas)) != {7}
                    or set(map(type, map(_ID, metas))) != {str} or not set(map(type, map(_SEQ, metas))) <= _SEQ_TYPES):
                raise ManifestError("an entry lacks a field")
            keys = list(zip(map(_CREATED, metas), map(_ID, metas)))
            if not (keys[0] < last and keys == sorted(set(keys), reverse=True)):
                raise ManifestError("its records are not in listing order")
            _group_facts(metas, groups)
        except (TypeError, KeyError):  # a created_at that is not text, a tenant that is a list, ...
            raise ManifestError("an entry lacks a field") from None
        return keys[-1]
    for ln, i in zip(lines, tabs):  # the region where damaged entries begin: line by line
        (meta,) = _metas([ln[:i] if i >= 0 else ln], 1)
        if isinstance(meta, list):
            if i <= 0:
                raise ManifestError("a record line lacks its record")
            last = _check_lines([ln], last, groups, damaged)
        elif i < 0 and isinstance(meta, dict) and isinstance(meta.get("id"), str):
            damaged.append((meta["id"], str(meta.get("damaged") or "damaged")))
            last = None
        else:
            raise ManifestError("an entry is neither a record nor a damaged one")
    return last


_ID, _CREATED, _SEQ = operator.itemgetter(0), operator.itemgetter(3), operator.itemgetter(4)


def _header(line: bytes) -> dict:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise ManifestError("its header is missing or not JSON")
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ManifestError(f"it is not a version-{VERSION} dumpsafe catalog manifest")
    if not all(isinstance(k, str) for k in header.get("covers") or ()):
        raise ManifestError("its header's covered notes are not names")
    return header


def check(source: Path | BinaryIO) -> Checked:
    """Read a manifest copy (its path, or a file open at its start) whole and check it: the
    header, every line's meta, the listing order, the trailer's count and SHA-256 (one update
    per region). ManifestError says what is wrong; nothing of it may be used before this returns."""
    h = hashlib.sha256()
    header, trailer, count, last = None, None, 0, ("\uffff",)
    groups: dict = {}
    damaged: list[tuple[str, str]] = []
    with _open(source) as f:
        for data, lines, final in _regions(f):
            if header is None:
                header = _header(lines.pop(0))
            if final:
                if not lines:
                    raise ManifestError("its trailer is missing (cut short)")
                trailer = lines.pop()
                h.update(data[: len(data) - len(trailer) - 1])  # every line before the trailer, with its newline
            else:
                h.update(data)
            if lines:
                last = _check_lines(lines, last, groups, damaged)
                count += len(lines)
    if header is None:
        raise ManifestError("its header is missing or not JSON")
    try:
        end = json.loads(trailer)
    except ValueError:
        end = None
    if not (isinstance(end, dict) and end.get("end") is True):
        raise ManifestError("its trailer is missing (cut short)")
    if end.get("lines") != count or end.get("sha256") != h.hexdigest():
        raise ManifestError("its content does not match its trailer's SHA-256")
    return Checked(set(header.get("covers") or ()), damaged, {g: (f[0], f[1]) for g, f in groups.items()})


def record_lines(copy: BinaryIO, id_prefix: str = "", masked: set[bytes] | frozenset = frozenset()) -> Iterator[list[bytes]]:
    """The lines (``<meta>\\t<record JSON>``) of a CHECKED manifest copy's records, in listing
    order, a region (~1 MiB) at a time, those whose ID is in ``masked`` (or does not start with
    ``id_prefix``) left out; the header, damaged entries and trailer too. Closes ``copy``."""
    prefix = b'["' + id_prefix.encode()
    first = True
    with copy:
        for _, lines, _ in _regions(copy):
            if first:
                del lines[0]
                first = False
            last = bool(lines) and lines[-1][:1] != b"["  # the damaged entries and the trailer come last
            if last:
                del lines[next(i for i, ln in enumerate(lines) if ln[:1] != b"["):]
            if id_prefix:
                lines = [ln for ln in lines if ln.startswith(prefix)]
            if masked:
                lines = [ln for ln in lines if line_id(ln) not in masked]
            if lines:
                yield lines
            if last:
                return


def line_meta(line: bytes) -> list:
    """The meta of one record line of a checked copy."""
    return _decode(line[: line.index(b"\t")].decode())


def line_metas(lines: list[bytes]) -> list[list]:
    return _decode("[" + b",".join([ln[: ln.index(b"\t")] for ln in lines]).decode() + "]")


def line_records(lines: list[bytes]) -> list[bytes]:
    """The record JSON of each record line."""
    return [ln[ln.index(b"\t") + 1 :] for ln in lines]


def line_id(line: bytes) -> bytes:
    """The backup ID of a record line (its meta starts ``["<id>",``; IDs need no JSON escape)."""
    return line[2 : line.index(b'"', 2)]


def fetch(store: Store, key: str, dest: Path) -> str:
    """Copy manifest ``key`` to the local file ``dest`` (written whole, then renamed; 0600);
    returns the SHA-256 of its bytes. The caller checks the copy (``check(dest)``)."""
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
