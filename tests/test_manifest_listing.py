"""Manifest v2 (issue 16): records in listing order, ``backup list`` streamed straight out of
the manifest's checked local copy merged with what changed since, the cache keeping only
columns. Each listing must equal the slow path's (records read one by one from the store)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import zstandard

from dumpsafe.catalog import check_record, id_from_record_key, newest_first, record_key
from dumpsafe.listing import prefer_originals
from recordfactory import make_record
from stores import make_store  # noqa: F401 (a fixture)
from test_catalog_scale import T0, _resealed, _rewrite_manifest, fill, host, later  # noqa: F401 (host: a fixture)


def _lines(store, key):
    return zstandard.ZstdDecompressor().decompressobj().decompress(store.get_bytes(key)).split(b"\n")[:-1]


def test_a_manifest_holds_its_records_newest_first_and_the_damaged_after(make_store, host):
    _, store = make_store("local")
    a = host(store)
    recs = fill(a, 120)  # tenants t0..t6: ID order is not time order
    bad = recs[40].id
    data = bytearray(store.get_bytes(record_key(bad)))
    data[len(data) // 2] ^= 0x01
    store.put_bytes(record_key(bad), bytes(data))
    key = host(store).compact(force=True)
    metas = [json.loads(ln.split(b"\t", 1)[0]) for ln in _lines(store, key)[1:-1]]
    sound = [m for m in metas if isinstance(m, list)]
    assert [m[0] for m in sound] == [r.id for r in sorted(recs, key=lambda r: r.created_at, reverse=True) if r.id != bad]
    assert metas[len(sound):] == [{"id": bad, "damaged": metas[-1]["damaged"]}]
    assert json.loads(_lines(store, key)[0])["version"] == 2


@pytest.mark.parametrize("damage", ["two records swapped", "version 1"])
def test_a_manifest_not_in_listing_order_is_not_used(make_store, host, caplog, damage):
    """A version-1 manifest (written in ID order) or a v2 one out of order: the cold host lists
    records/ instead, and still gets every record, newest first."""
    _, store = make_store("local")
    a = host(store)
    recs = fill(a, 40)
    key = a.compact(force=True)

    def edit(ls):
        if damage == "version 1":
            return _resealed([ls[0].replace(b'"version":2', b'"version":1')] + ls[1:])
        return _resealed(ls[:3] + [ls[4], ls[3]] + ls[5:])

    _rewrite_manifest(store, key, edit)
    cold = host(store, clock=later)
    got = cold.records()
    assert [r.id for r in got] == [r.id for r in sorted(recs, key=lambda r: r.created_at, reverse=True)]
    assert f"catalog manifest {key} is not used" in caplog.text


@pytest.mark.parametrize("change", ["byte flipped", "removed"])
def test_a_local_manifest_copy_that_changed_is_fetched_again(make_store, host, caplog, change):
    """The local copy is re-hashed before each listing streams from it: one that changed on
    disk (or went) is never streamed from; it is fetched and checked again."""
    _, store = make_store("local")
    a = host(store)
    recs = fill(a, 60)
    a.compact(force=True)
    warm = host(store, clock=later)
    assert len(warm.records()) == 60
    (copy,) = list(warm._mdir.iterdir())
    if change == "removed":
        copy.unlink()
    else:
        blob = bytearray(copy.read_bytes())
        blob[len(blob) // 2] ^= 0x40
        copy.write_bytes(bytes(blob))
    got = warm.records()
    assert [r.id for r in got] == [r.id for r in sorted(recs, key=lambda r: r.created_at, reverse=True)]
    assert "is gone or changed; fetching it again" in caplog.text
    assert len(list(warm._mdir.iterdir())) == 1


def _service(tmp_path, state, stores):
    from dumpsafe.config_load import config_from_dict
    from dumpsafe.service import BackupService

    cfg = config_from_dict({"state_dir": str(tmp_path / state), "tenants": {f"t{i}": {} for i in range(7)},
                            "stores": {n: {"kind": "local", "path": str(tmp_path / n)} for n in stores}},
                           tmp_path / f"{state}.toml")
    return BackupService(cfg)


def _truth(svc, tenant=None, database=None, store=None):
    """The slow path: every record/ read and checked one by one, no cache, no manifest."""
    out = []
    for name in [store] if store else list(svc.config.stores):
        st = svc.store(name)
        for o in st.list("records/"):
            try:
                r = check_record(st.get_bytes(o.key), id_from_record_key(o.key))
            except ValueError:
                continue
            if (tenant is None or r.tenant == tenant) and (database is None or r.database == database):
                out.append(r)
    recs = newest_first(out)
    return [r.to_json_dict() for r in (recs if store else prefer_originals(recs))]


def test_the_manifest_listing_equals_the_slow_path(tmp_path):
    """A mixed catalog on two stores: copies, a damaged record, records written, rewritten and
    deleted after the manifests, a backup only the second store holds, a deleted copy. The
    streamed listing (cold host, then warm) and list() equal the slow path exactly."""
    stores = ["main", "offsite"]
    writer = _service(tmp_path, "writer", stores)
    main, off = writer.catalog("main"), writer.catalog("offsite")
    recs = fill(main, 150)
    for r in recs[:20]:
        off.put(r.model_copy(update={"store": "offsite", "copy_of": "main"}))
    only = make_record(T0 + timedelta(days=1), tenant="t1", store="offsite")
    off.put(only)
    bad = recs[30].id
    data = bytearray(main.store.get_bytes(record_key(bad)))
    data[len(data) // 2] ^= 0x01
    main.store.put_bytes(record_key(bad), bytes(data))
    warm = _service(tmp_path, "warm", stores)
    assert len(warm.list()) == 150  # a host that listed before the manifests
    main.compact(force=True)
    off.compact(force=True)
    # after the manifests: new records, a rewrite, deletions (a covered original, a copy)
    fill(main, 5, start=400)
    main.put(recs[50].model_copy(update={"pinned": True}))
    main.remove(recs[60].id)
    main.remove(recs[3].id)  # its copy offsite is now the entry listed
    off.remove(recs[7].id)  # the original stays listed
    cold = _service(tmp_path, "cold", stores)
    for svc in (cold, warm, cold):  # cold (first from the manifests), warm, then cold again warm
        for kw in ({}, {"store": "offsite"}, {"store": "main"}, {"tenant": "t1"}, {"database": "db2"},
                   {"tenant": "t3", "database": "db0"}):
            want = _truth(svc, **kw)
            pieces, damaged = svc.list_json(**kw)
            assert json.loads(b"".join(pieces)) == want, kw
            assert [r.to_json_dict() for r in svc.list(**kw)] == want, kw
            if kw.get("store") != "offsite" and kw.get("tenant") in (None, "t2"):
                assert [d.id for d in damaged] == [bad], kw
    ids = [r["id"] for r in _truth(cold)]
    assert recs[60].id not in ids and only.id in ids and len(ids) == 150 - 1 - 1 + 5 + 1
    assert [r["store"] for r in _truth(cold) if r["id"] == recs[3].id] == ["offsite"]


def test_backup_list_does_not_import_the_backup_and_restore_stack(tmp_path):
    """`dumpsafe backup list` (table and --json) imports what listing needs, not the PostgreSQL
    engines, backup, restore, verify, export, the REST/MCP fronts or boto3 (a local store)."""
    import os
    import subprocess
    import sys

    st = _service(tmp_path, "cli", ["main"]).catalog("main")
    fill(st, 3)
    (tmp_path / "cli.toml").write_text(f'state_dir = "{tmp_path / "cli"}"\n[tenants.t0]\n[tenants.t1]\n[tenants.t2]\n'
                                       f'[stores.main]\nkind = "local"\npath = "{tmp_path / "main"}"\n')
    heavy = {"psycopg", "boto3", "fastapi", "mcp", "google", "dumpsafe.service", "dumpsafe.backup",
             "dumpsafe.restore", "dumpsafe.verify", "dumpsafe.export", "dumpsafe.engines", "dumpsafe.copies"}
    for extra in ([], ["--json"]):
        p = subprocess.run([sys.executable, "-X", "importtime", "-m", "dumpsafe", "backup", "list", *extra],
                           capture_output=True, env=dict(os.environ, DUMPSAFE_CONFIG=str(tmp_path / "cli.toml")))
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        assert b"t0" in p.stdout and b"t2" in p.stdout
        mods = {ln.rsplit("|", 1)[-1].strip() for ln in p.stderr.decode().splitlines() if ln.startswith("import time:")}
        assert not {m for m in mods if m.split(".")[0] in heavy or ".".join(m.split(".")[:2]) in heavy}, extra


def test_a_clock_set_back_after_a_listing_still_orders_by_sequence(tmp_path):
    """Whether time order is the listing order is kept between listings: a backup written
    since with its clock set back must still be listed by sequence (cold and warm hosts)."""
    svc = _service(tmp_path, "a", ["main"])
    cat = svc.catalog("main")
    first = make_record("2026-03-01T11:00:00Z", tenant="t0").model_copy(update={"sequence": 1})
    cat.put(first)
    fill(cat, 110)
    cat.compact(force=True)
    warm = _service(tmp_path, "warm", ["main"])
    assert json.loads(b"".join(warm.list_json()[0])) == _truth(warm)
    back = make_record("2026-03-01T10:00:00Z", tenant="t0").model_copy(update={"sequence": 2})  # the clock went back
    cat.put(back)
    for svc in (warm, _service(tmp_path, "cold", ["main"])):
        got = [r["id"] for r in json.loads(b"".join(svc.list_json(tenant="t0")[0]))]
        assert got.index(back.id) < got.index(first.id)
        assert json.loads(b"".join(svc.list_json()[0])) == _truth(svc)


def _fill_seq(cat, n, start=0, seq=None, **kw):
    """fill(), but each tenant/database's records carry growing sequences (as backup create
    writes them; ``seq``: the last one of each, updated)."""
    recs, seq = [], {} if seq is None else seq
    for i in range(start, start + n):
        t, d = f"t{i % 7}", f"db{i % 3}"
        seq[(t, d)] = seq.get((t, d), 0) + 1
        recs.append(make_record(T0 + timedelta(minutes=i), tenant=t, database=d, store=cat.store.name, **kw)
                    .model_copy(update={"sequence": seq[(t, d)]}))
    for r in recs:
        cat.put(r)
    return recs


def test_a_cold_host_keeps_none_of_the_manifests_records_in_sqlite(make_store, host):
    """The checked manifest copy is the index of its records: loading it writes small facts (its
    damaged entries; per tenant/database its newest record and whether sequences grow with
    time there), not a row per record."""
    _, store = make_store("local")
    a = host(store)
    recs = _fill_seq(a, 300)
    a.compact(force=True)
    cold = host(store, clock=later)
    assert len(cold.records()) == 300
    assert cold.cache.db.execute("SELECT count(*) FROM records").fetchone()[0] == 0
    groups = cold.cache.groups(store.name)
    newest = {}
    for r in recs:
        newest[(r.tenant, r.database)] = r
    assert len(groups) == 21 and all(g[1] == newest[k].id and g[2] == newest[k].sequence and g[3]
                                     for k, g in groups.items())


def test_records_since_the_manifest_merge_into_its_regions(tmp_path):
    """A manifest of several ~1 MiB regions; after it, rewrites of records all through it (same
    created_at and sequence: time order still holds, so `backup list --json` streams the
    regions, decoding metas only where a record falls in), new records and a deletion. The
    streamed listing (whole and filtered; cold host, then warm) equals the slow path."""
    tables = {f"public.table_{i}": i for i in range(150)}  # ~4 KB records: 600 of them span regions
    writer = _service(tmp_path, "writer", ["main"])
    cat = writer.catalog("main")
    seq: dict = {}
    recs = _fill_seq(cat, 600, seq=seq, tables=tables)
    cat.compact(force=True)
    for i in range(0, 600, 37):
        cat.put(recs[i].model_copy(update={"pinned": True}))
    cat.put(recs[599].model_copy(update={"pinned": True}))
    _fill_seq(cat, 3, start=700, seq=seq)
    cat.remove(recs[300].id)
    cold = _service(tmp_path, "cold", ["main"])
    for svc in (cold, cold):
        batches = svc.catalog("main").batches()
        assert batches is not None and len(b"".join(b"".join(b) for b in batches)) > 0  # time order holds: by region
        for kw in ({}, {"tenant": "t1"}, {"database": "db2"}, {"tenant": "t0", "database": "db0"}):
            want = _truth(svc, **kw)
            assert json.loads(b"".join(svc.list_json(**kw)[0])) == want, kw
    assert len(_truth(cold)) == 602 and sum(r["pinned"] for r in _truth(cold)) == 18


def test_a_record_inside_the_manifests_span_with_a_higher_sequence_orders_by_sequence(tmp_path):
    """A clock set back after the manifest: a record older by time than some of the manifest's
    (of its tenant/database) but newest by sequence. Listing orders that group by sequence."""
    writer = _service(tmp_path, "writer", ["main"])
    cat = writer.catalog("main")
    recs = _fill_seq(cat, 140)
    cat.compact(force=True)
    t0db0 = [r for r in recs if (r.tenant, r.database) == ("t0", "db0")]
    back = make_record(t0db0[2].created_at + timedelta(seconds=30), tenant="t0", database="db0",
                       store="main").model_copy(update={"sequence": t0db0[-1].sequence + 1})
    cat.put(back)
    for svc in (_service(tmp_path, "cold", ["main"]), writer):
        got = [r["id"] for r in json.loads(b"".join(svc.list_json()[0]))]
        assert got == [r["id"] for r in _truth(svc)]
        assert [i for i in got if i.startswith("t0.db0.")][0] == back.id
        assert svc.catalog("main").batches() is None
        batches = svc.catalog("main").batches(tenant="t1")
        assert batches is not None and len(list(batches)) > 0  # other groups keep time order


@pytest.mark.parametrize("change", ["none", "newest rewritten", "newest deleted", "clock set back in the manifest",
                                    "a newer record since", "only since the manifest"])
def test_a_backups_next_sequence_equals_the_slow_path(tmp_path, change):
    """`backup create` numbers a backup from its tenant/database's newest record by sequence:
    read from the manifest's facts and the rows since, the copy only when they do not settle it."""
    writer = _service(tmp_path, "writer", ["main"])
    cat = writer.catalog("main")
    recs = _fill_seq(cat, 140)
    group = [r for r in recs if (r.tenant, r.database) == ("t2", "db1")]
    if change == "clock set back in the manifest":  # the newest by sequence is older by time than two others
        cat.put(group[-3].model_copy(update={"sequence": group[-1].sequence + 5}))
    cat.compact(force=True)
    if change == "newest rewritten":
        cat.put(group[-1].model_copy(update={"pinned": True}))
    elif change == "newest deleted":
        cat.remove(group[-1].id)
    elif change == "a newer record since":
        cat.put(make_record(T0 + timedelta(days=2), tenant="t2", database="db1", store="main")
                .model_copy(update={"sequence": group[-1].sequence + 1}))
    elif change == "only since the manifest":
        cat.put(make_record(T0 + timedelta(days=2), tenant="t5", database="other", store="main")
                .model_copy(update={"sequence": 4}))
    for svc in (_service(tmp_path, "cold", ["main"]), writer):
        truth = {}
        for r in _truth(svc):
            k = (r["tenant"], r["database"])
            key = (r["sequence"] or 0, r["created_at"], r["id"])
            truth[k] = max(truth.get(k, key), key)
        for t, d in [("t2", "db1"), ("t0", "db0"), ("t5", "other"), ("t6", "nothing")]:
            want = truth.get((t, d))
            got = svc.catalog("main").newest_of(t, d)
            assert got == (None if want is None else (want[0], datetime.fromisoformat(want[1]))), (change, t, d)
