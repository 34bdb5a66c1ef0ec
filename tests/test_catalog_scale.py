"""The catalog at scale (issue 16): compacted manifests in the store, change notes, the
SQLite cache. Against the local store and a real S3 server (moto); hundreds of records
made with recordfactory (the 100,000-record case lives in bench/listing.py)."""

from __future__ import annotations

import json
import sqlite3
import stat
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from dumpsafe.catalog import Catalog, record_key
from dumpsafe.manifest import MANIFESTS_PREFIX, NOTES_PREFIX
from dumpsafe.models import Verification
from recordfactory import make_record
from stores import TcpProxy, create_s3_bucket, fake_aws_env, make_store, new_bucket_name, s3_server  # noqa: F401 (fixtures)

KINDS = ["local", "s3"]
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
LATER = timedelta(hours=2)  # past manifest.SETTLE and manifest.KEEP


def later():
    return datetime.now(timezone.utc) + LATER


@pytest.fixture
def host(tmp_path):
    """host(store, clock=None) -> a Catalog with its own fresh state dir (a new host)."""

    def make(store, clock=None):
        return Catalog(store, tmp_path / f"host-{uuid.uuid4().hex[:8]}" / "cache", clock=clock)

    return make


def fill(cat, n, start=0, **kw):
    recs = [make_record(T0 + timedelta(minutes=i), tenant=f"t{i % 7}", database=f"db{i % 3}", store=cat.store.name, **kw)
            for i in range(start, start + n)]
    for r in recs:
        cat.put(r)
    return recs


def manifests(store):
    return sorted(o.key for o in store.list(MANIFESTS_PREFIX))


def notes(store):
    return sorted(o.key for o in store.list(NOTES_PREFIX))


@pytest.mark.parametrize("kind", KINDS)
def test_manifests_are_written_when_due_and_superseded(kind, make_store, host):
    _, store = make_store(kind)
    a = host(store)
    fill(a, 60)
    assert a.compact() is None and manifests(store) == []  # fewer changes than COMPACT_EVERY: no manifest
    fill(a, 60, start=60)
    first = a.compact()
    assert manifests(store) == [first]
    fill(a, 110, start=120)
    second = a.compact()
    assert second > first and manifests(store) == [first, second]  # never edited: a new name
    assert len(notes(store)) == 230  # covered notes stay a while (another host may be mid-read)
    # an hour on, the next manifest removes what it supersedes
    fill(a, 100, start=230)
    a.clock = later
    third = a.compact()
    assert manifests(store) == [third] and len(notes(store)) == 0
    assert len(host(store, clock=later).records()) == 330


@pytest.mark.parametrize("kind", KINDS)
def test_a_cold_host_reads_the_manifest_and_only_the_newer_records(kind, make_store, host, request, tmp_path):
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        proxy = TcpProxy(server.port)
        bucket = new_bucket_name()
        create_s3_bucket(server.url, bucket)
        _, store = make_store("s3", bucket=bucket, create=False, endpoint_url=proxy.url)
    else:
        proxy, (_, store) = None, make_store("local")
    a = host(store)
    recs = fill(a, 250)
    assert a.compact(force=True)
    recs += fill(a, 5, start=250)

    n0 = len(proxy.requests) if proxy else 0
    cold = host(store, clock=later)
    got = cold.records()
    assert {r.id for r in got} == {r.id for r in recs}
    assert [r.id for r in got][:3] == [r.id for r in sorted(recs, key=lambda r: r.created_at, reverse=True)][:3]
    if proxy:
        sent = proxy.requests[n0:]
        gets = [r for r in sent if r.startswith("GET") and "list-type" not in r]
        lists = [r for r in sent if "list-type" in r]
        assert len(lists) == 1, lists  # catalog/ only: records/ is never listed
        assert len(gets) == 1 + 5, gets  # the manifest and the 5 records written after it
    # warm: nothing read again
    n1 = len(proxy.requests) if proxy else 0
    assert len(cold.records()) == 255
    if proxy:
        assert [r for r in proxy.requests[n1:] if "list-type" not in r] == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_deleted_backup_disappears_though_a_manifest_covers_it(kind, make_store, host):
    _, store = make_store(kind)
    a = host(store)
    recs = fill(a, 120)
    warm = host(store, clock=later)
    assert len(warm.records()) == 120
    a.compact(force=True)
    a.remove(recs[5].id)
    for h in (warm, host(store, clock=later), host(store)):
        ids = {r.id for r in h.records()}
        assert recs[5].id not in ids and len(ids) == 119


@pytest.mark.parametrize("kind", KINDS)
def test_a_record_updated_after_the_manifest_shows_its_new_state(kind, make_store, host):
    _, store = make_store(kind)
    a = host(store)
    recs = fill(a, 120)
    warm = host(store, clock=later)
    warm.records()
    a.compact(force=True)
    verified = Verification(at=T0, result="passed", detail="drill", kind="drill")
    a.put(recs[0].model_copy(update={"pinned": True}))
    a.put(recs[1].model_copy(update={"last_verification": verified}))
    for h in (warm, host(store, clock=later)):
        by_id = {r.id: r for r in h.records()}
        assert by_id[recs[0].id].pinned is True
        assert by_id[recs[1].id].last_verification == verified
        assert by_id[recs[2].id].pinned is False


@pytest.mark.parametrize("kind", KINDS)
def test_two_hosts_writing_manifests_at_once_lose_nothing(kind, make_store, host):
    _, store = make_store(kind)
    a, b = host(store), host(store)
    recs = fill(a, 110)
    a.sync()  # host A has listed the store ...
    late = fill(b, 3, start=500)  # ... host B writes backups and a manifest meanwhile ...
    b.compact(force=True)
    gone = recs[7]
    b.remove(gone.id)
    a_key = a.compact(force=True, resync=False)  # ... and A's manifest, from its older view, is the newest
    assert manifests(store)[-1] == a_key
    got = {r.id for r in host(store, clock=later).records()}
    assert {r.id for r in late} <= got and gone.id not in got
    assert got == {r.id for r in recs + late} - {gone.id}


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_record_is_still_reported(kind, make_store, host):
    _, store = make_store(kind)
    a = host(store)
    recs = fill(a, 120)
    bad = recs[3].id
    data = bytearray(store.get_bytes(record_key(bad)))
    data[len(data) // 2] ^= 0x01
    store.put_bytes(record_key(bad), bytes(data))
    a.compact(force=True)  # a host that has not read it yet writes the manifest
    cold = host(store, clock=later)
    assert bad not in {r.id for r in cold.records()}
    assert [d.id for d in cold.damaged] == [bad]
    # a damaged manifest is not used: the reader lists records/ and still sees everything
    key = manifests(store)[-1]
    blob = bytearray(store.get_bytes(key))
    blob[len(blob) // 2] ^= 0x40
    store.put_bytes(key, bytes(blob))
    other = host(store, clock=later)
    assert len(other.records()) == 119 and [d.id for d in other.damaged] == [bad]


def test_the_sqlite_cache_is_updated_row_by_row(make_store, host, tmp_path):
    _, store = make_store("local")
    a = host(store)
    fill(a, 150)
    a.compact(force=True)
    cache_dir = tmp_path / "state" / "cache"
    cat = Catalog(store, cache_dir, clock=later)
    assert len(cat.records()) == 150
    path = cache_dir / "catalog.sqlite3"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    db = sqlite3.connect(path)
    indexes = {r[1] for r in db.execute("PRAGMA index_list(records)")}
    assert {"records_tenant", "records_time"} <= indexes  # records_time: only rows holding their JSON
    before = cat.cache.db.total_changes
    (new,) = fill(a, 1, start=900)
    assert len(cat.records()) == 151
    assert cat.cache.db.total_changes - before <= 5  # one record row and its note, not the whole cache
    # the manifest's 150 records are not rows (its checked local copy, 0600 in a 0700 dir, is
    # their index); the one written since is a row with its JSON
    assert [json.loads(j)["id"] for (j,) in db.execute("SELECT json FROM records")] == [new.id]
    copies = list((cache_dir / "manifests").iterdir())
    assert len(copies) == 1 and stat.S_IMODE(copies[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((cache_dir / "manifests").stat().st_mode) == 0o700


def test_a_damaged_cache_file_is_started_afresh(make_store, host, tmp_path, caplog):
    """The cache is written without fsync (it only saves reads): a file a host crash left
    damaged is replaced by an empty one and refilled from the store, never an error."""
    _, store = make_store("local")
    fill(host(store), 20)
    cache_dir = tmp_path / "state" / "cache"
    cache_dir.mkdir(parents=True, mode=0o700)
    path = cache_dir / "catalog.sqlite3"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)  # a torn header page
    path.chmod(0o600)
    cat = Catalog(store, cache_dir, clock=later)
    assert len(cat.records()) == 20
    assert "catalog cache" in caplog.text and "is damaged" in caplog.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sqlite3.connect(path).execute("SELECT count(*) FROM records").fetchone()[0] == 20


@pytest.mark.parametrize("kind", KINDS)
def test_a_write_running_while_a_manifest_is_made_is_seen(kind, make_store, host):
    """Its change note is covered by the manifest, its record lands just after: a reader
    re-reads the records of notes younger than manifest.SETTLE."""
    from dumpsafe.catalog import encode_record
    from dumpsafe.manifest import write_note

    _, store = make_store(kind)
    a = host(store)
    fill(a, 110)
    slow = make_record(T0 + timedelta(days=1), tenant="slow", store=store.name)
    write_note(store, slow.id)  # Catalog.put's first step ...
    a.compact(force=True)  # ... another host's manifest covers the note ...
    store.put_bytes(record_key(slow.id), encode_record(slow))  # ... then the record is written
    assert slow.id in {r.id for r in host(store).records()}


def _service(tmp_path, stores):
    from dumpsafe.config_load import config_from_dict
    from dumpsafe.service import BackupService

    cfg = config_from_dict({"state_dir": str(tmp_path / "svc-state"),
                            "stores": {n: {"kind": "local", "path": str(tmp_path / n)} for n in stores}},
                           tmp_path / "dumpsafe.toml")
    return BackupService(cfg)


def _listed_json(svc, **kw):
    pieces, damaged = svc.list_json(**kw)
    return json.loads(b"".join(pieces)), damaged


def test_list_json_is_the_list_of_records(tmp_path):
    """The streamed JSON listing (what `backup list --json` prints) is list()'s records,
    in list()'s order: across stores one entry per backup (the original), by tenant/database."""
    svc = _service(tmp_path, ["main", "offsite"])
    main, off = svc.catalog("main"), svc.catalog("offsite")
    recs = fill(main, 40)
    for r in recs[:10]:  # copies of the first ten, and one backup only the offsite store holds
        off.put(r.model_copy(update={"store": "offsite", "copy_of": "main"}))
    only = make_record(T0 + timedelta(days=3), tenant="t1", store="offsite")
    off.put(only)
    for kw in ({}, {"store": "offsite"}, {"database": "db1"}, {"store": "main", "database": "db2"}):
        got, _ = _listed_json(svc, **kw)
        assert got == [r.to_json_dict() for r in svc.list(**kw)], kw
    got, _ = _listed_json(svc)
    assert len(got) == 41 and got[0]["id"] == only.id
    assert all(r["store"] == "main" for r in got[1:])  # originals, not their copies
    assert _listed_json(_service(tmp_path / "empty", ["main"]))[0] == []


def test_list_json_orders_by_sequence_when_a_clock_went_back(tmp_path):
    svc = _service(tmp_path, ["main"])
    cat = svc.catalog("main")
    first = make_record("2026-03-01T11:00:00Z").model_copy(update={"sequence": 1})
    second = make_record("2026-03-01T10:00:00Z").model_copy(update={"sequence": 2})  # the clock went back
    other = make_record("2026-03-01T10:30:00Z", tenant="beta").model_copy(update={"sequence": 1})
    for r in (first, second, other):
        cat.put(r)
    got, _ = _listed_json(svc)
    assert [r["id"] for r in got] == [r.id for r in svc.list()]
    assert [r["id"] for r in got if r["tenant"] == "acme"] == [second.id, first.id]


def _rewrite_manifest(store, key, edit):
    """Decompress manifest ``key``, apply ``edit`` to its list of lines, write it back."""
    import zstandard

    lines = zstandard.ZstdDecompressor().decompressobj().decompress(store.get_bytes(key)).split(b"\n")[:-1]
    store.put_bytes(key, zstandard.ZstdCompressor().compress(b"\n".join(edit(lines)) + b"\n"))


def _resealed(lines):
    """The lines with a trailer recomputed over them (what a buggy writer could have sealed)."""
    import hashlib

    body = lines[:-1]
    h = hashlib.sha256(b"".join(ln + b"\n" for ln in body))
    return body + [json.dumps({"end": True, "lines": len(body) - 1, "sha256": h.hexdigest()}).encode()]


@pytest.mark.parametrize("damage", ["byte flipped", "cut short", "trailer missing", "two metas on one line",
                                    "a meta split over two lines", "a line after the trailer",
                                    "a record line without its record"])
def test_a_damaged_manifest_is_not_used(make_store, host, caplog, damage):
    """Every check of the manifest reader (it hashes and decodes a chunk of lines at once):
    a manifest failing one is not used; the cold host lists records/ and gets every record."""
    _, store = make_store("local")
    a = host(store)
    # "two metas on one line" in a chunk before the last (the count of lines still matches): a
    # manifest of more than one 1 MiB chunk, the damage in the first
    recs = fill(a, 1500 if damage == "two metas on one line" else 40)
    key = a.compact(force=True)
    edits = {
        "byte flipped": lambda ls: ls[:5] + [ls[5].replace(b'"t', b'"u', 1)] + ls[6:],
        "cut short": lambda ls: ls[:-1] + [ls[-1][:-3]],
        "trailer missing": lambda ls: ls[:-1],
        "two metas on one line": lambda ls: _resealed(ls[:3] + [ls[3].split(b"\t")[0] + b"," + ls[4]] + ls[5:]),
        "a meta split over two lines": lambda ls: _resealed(ls[:3] + [ls[3][:5], ls[3][5:]] + ls[4:]),
        "a line after the trailer": lambda ls: ls + [b'{"id":"t0.db0.20260301T000000Z.aaaaaaaa","damaged":"x"}'],
        "a record line without its record": lambda ls: _resealed(ls[:3] + [ls[3].split(b"\t")[0]] + ls[4:]),
    }
    _rewrite_manifest(store, key, edits[damage])
    cold = host(store, clock=later)
    got = cold.records()
    assert sorted(r.id for r in got) == sorted(r.id for r in recs)
    assert [(r.id, r.tenant) for r in got] == [(r.id, r.tenant) for r in sorted(recs, key=lambda r: r.created_at, reverse=True)]
    assert f"catalog manifest {key} is not used" in caplog.text
