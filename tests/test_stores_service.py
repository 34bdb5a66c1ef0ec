"""Backups through object stores with a real PostgreSQL: fresh-host listing, copies with
checksum checks, lifecycle-expired objects, and a failing source leaving nothing behind."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from pathlib import Path

import pytest
import zstandard

from conftest import Env
from dumpsafe.engines.postgres import find_tool
from dumpsafe.storage import open_store
from stores import fake_aws_env, gcs_server, make_store, s3_server, store_section  # noqa: F401  (fixtures)

REMOTE = ["s3", "gcs"]


def toml_table(name: str, section: dict) -> str:
    lines = [f"[stores.{name}]"] + [f"{k} = {json.dumps(v)}" for k, v in section.items()]
    return "\n".join(lines) + "\n"


def stores_toml(tmp_path: Path, request, **kinds: str) -> str:
    """[stores.*] tables: name=kind, each on a fresh bucket or directory."""
    return "\n".join(toml_table(name, store_section(kind, tmp_path, request)) for name, kind in kinds.items())


def second_host(env: Env, name: str = "host2") -> Env:
    """Same config, empty state_dir: a fresh machine pointed at the same stores."""
    root = env.root / name
    root.mkdir()
    other = Env(root=root, pg=env.pg, db=env.db, uploads=env.uploads, tenant_extra=env.tenant_extra,
                stores_toml=env.stores_toml)
    other.write_config()
    assert not other.state_dir.exists()
    return other


def object_sha(store, key: str) -> str:
    h = hashlib.sha256()
    with store.open_read(key) as r:
        while b := r.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def all_keys(store) -> list[str]:
    """Every key but the history's (evidence outlives the backups it is about, issue 15) and the
    catalog's change notes and manifests (catalog/: see dumpsafe.manifest)."""
    return sorted(o.key for o in store.list() if not o.key.startswith(("history/", "catalog/")))


@pytest.mark.parametrize("kind", REMOTE)
def test_backup_to_object_store_seen_from_fresh_host(kind, env, tmp_path, request):
    env.stores_toml = stores_toml(tmp_path, request, offsite=kind)
    env.tenant_extra = 'store = "offsite"'
    env.write_config()
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    rec = r.json()[0]
    assert rec["store"] == "offsite" and rec["location"].startswith(("s3://", "gs://"))

    host2 = second_host(env)
    listed = host2.cli("backup", "list", "--json")
    assert listed.code == 0, listed.err
    assert [x["id"] for x in listed.json()] == [rec["id"]]
    got = host2.cli("backup", "get", rec["id"], "--json").json()
    assert got == rec
    r = host2.cli("index", "rebuild", "--store", "offsite", "--json")
    assert r.code == 0 and r.json() == {"offsite": 1}
    assert (host2.state_dir / "cache" / "catalog.sqlite3").exists()

    # the fresh host can read the dump back intact and pg_restore understands it
    store = open_store(host2.config(), "offsite")
    ref = next(o for o in got["objects"] if o["role"] == "database")
    assert object_sha(store, ref["key"]) == ref["sha256"]
    pg_restore, _ = find_tool("pg_restore")
    with store.open_read(ref["key"]) as src:
        proc = subprocess.Popen([pg_restore, "--list"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            zstandard.ZstdDecompressor().copy_stream(src, proc.stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # --list stops reading once it has the table of contents
        toc = proc.stdout.read().decode()
        assert proc.wait() == 0
    assert "TABLE DATA public orders" in toc


@pytest.mark.parametrize("kind", REMOTE)
def test_copy_between_stores_checks_checksums(kind, env, tmp_path, request):
    env.stores_toml = stores_toml(tmp_path, request, local="local", offsite=kind)
    env.tenant_extra = 'store = "local"'
    env.write_config()
    rec = env.cli("backup", "create", "acme", "--json").json()[0]

    r = env.cli("backup", "copy", rec["id"], "--to", "offsite", "--json")
    assert r.code == 0, r.err
    copy = r.json()
    assert copy["store"] == "offsite" and copy["copy_of"] == "local" and copy["id"] == rec["id"]
    assert copy["objects"] == rec["objects"] and copy["sha256"] == rec["sha256"]
    cfg = env.config()
    src, dst = open_store(cfg, "local"), open_store(cfg, "offsite")
    for o in rec["objects"]:
        assert object_sha(dst, o["key"]) == o["sha256"]
    assert env.cli("backup", "get", rec["id"], "--json").json()["copies"] == ["offsite"]
    # the same backup is listed once; per store, each store shows its own record
    assert [x["store"] for x in env.cli("backup", "list", "--json").json()] == ["local"]
    assert [x["store"] for x in env.cli("backup", "list", "--store", "offsite", "--json").json()] == ["offsite"]
    # copying again changes nothing
    assert env.cli("backup", "copy", rec["id"], "--to", "offsite").code == 0
    assert env.cli("backup", "get", rec["id"], "--json").json()["copies"] == ["offsite"]

    # deleting the backup removes the copy too
    assert env.cli("backup", "delete", rec["id"], "--yes").code == 0
    assert all_keys(src) == [] and all_keys(dst) == []


@pytest.mark.parametrize("kind", REMOTE)
def test_copy_refuses_a_corrupted_source(kind, env, tmp_path, request):
    env.stores_toml = stores_toml(tmp_path, request, local="local", offsite=kind)
    env.tenant_extra = 'store = "local"'
    env.write_config()
    rec = env.cli("backup", "create", "acme", "--json").json()[0]
    src = open_store(env.config(), "local")
    ref = next(o for o in rec["objects"] if o["role"] == "database")
    path = src.root / ref["key"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(data))

    r = env.cli("backup", "copy", rec["id"], "--to", "offsite")
    assert r.code == 1
    assert "integrity check failed" in r.err and ref["key"] in r.err and "Traceback" not in r.err
    assert all_keys(open_store(env.config(), "offsite")) == []
    assert env.cli("backup", "get", rec["id"], "--json").json()["copies"] == []


def test_copy_to_after_every_create(env, tmp_path, request):
    env.stores_toml = stores_toml(tmp_path, request, local="local", s3off="s3", gcsoff="gcs")
    env.tenant_extra = 'store = "local"\ncopy_to = ["s3off", "gcsoff"]'
    env.write_config()
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    rec = env.cli("backup", "get", r.json()[0]["id"], "--json").json()
    assert rec["copies"] == ["s3off", "gcsoff"]
    cfg = env.config()
    for name in ("s3off", "gcsoff"):
        listed = env.cli("backup", "list", "--store", name, "--json").json()
        assert [(x["id"], x["store"], x["copy_of"]) for x in listed] == [(rec["id"], name, "local")]
        dst = open_store(cfg, name)
        assert {o["key"]: object_sha(dst, o["key"]) for o in rec["objects"]} == {
            o["key"]: o["sha256"] for o in rec["objects"]
        }
    copies = [e for e in env.service().audit.entries() if e["action"] == "copy"]
    assert [(e["store"], e["outcome"]) for e in copies] == [("s3off", "ok"), ("gcsoff", "ok")]


@pytest.mark.parametrize("kind", REMOTE)
def test_delete_after_lifecycle_expired_the_objects(kind, env, tmp_path, request):
    env.stores_toml = stores_toml(tmp_path, request, offsite=kind)
    env.tenant_extra = 'store = "offsite"'
    env.write_config()
    rec = env.cli("backup", "create", "acme", "--json").json()[0]
    store = open_store(env.config(), "offsite")
    for o in rec["objects"]:  # what a bucket lifecycle rule does behind our back
        store.delete(o["key"])
    assert all_keys(store) == [f"objects/{rec['id']}/record.json", f"records/{rec['id']}.json"]

    r = env.cli("backup", "delete", rec["id"], "--yes")
    assert r.code == 0, r.err
    assert all_keys(store) == []
    assert env.cli("backup", "list", "--json").json() == []
    assert env.cli("backup", "get", rec["id"]).code == 1


def failing_pg_dump(dirpath: Path) -> Path:
    """A pg_dump that reports the real version, streams 24 MiB, then dies (exit 1)."""
    real, _ = find_tool("pg_dump")
    version = subprocess.run([real, "--version"], capture_output=True, text=True).stdout.strip()
    dirpath.mkdir()
    script = dirpath / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "{version}"; exit 0; fi\n'
        "head -c 25165824 /dev/urandom\n"
        'echo "pg_dump: error: connection to server lost" >&2\n'
        "exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return dirpath


@pytest.mark.parametrize("kind", REMOTE)
def test_failing_source_leaves_no_object_and_no_record(kind, env, tmp_path, request):
    bindir = failing_pg_dump(tmp_path / "bin")
    env.stores_toml = stores_toml(tmp_path, request, offsite=kind)
    env.tenant_extra = f'store = "offsite"\npg_bin_dir = "{bindir}"'
    env.write_config()
    r = env.cli("backup", "create", "acme")
    assert r.code == 1
    assert "pg_dump of database" in r.err and "connection to server lost" in r.err and "Traceback" not in r.err
    store = open_store(env.config(), "offsite")
    assert all_keys(store) == []  # not the uploads object, not a partial dump, no record
    if kind == "s3":
        assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert env.cli("backup", "list", "--json").json() == []


def test_copy_to_failure_keeps_the_backup_and_says_how_to_retry(env, tmp_path, request):
    broken = store_section("s3", tmp_path, request, bucket="acme-backups", create=False)
    env.stores_toml = stores_toml(tmp_path, request, local="local") + toml_table("offsite", broken)
    env.tenant_extra = 'store = "local"\ncopy_to = ["offsite"]'
    env.write_config()
    r = env.cli("backup", "create", "acme")
    assert r.code == 1 and "Traceback" not in r.err
    listed = env.cli("backup", "list", "--store", "local", "--json").json()
    assert len(listed) == 1 and listed[0]["copies"] == []  # the backup itself is committed
    bid = listed[0]["id"]
    msg = " ".join(r.err.split())
    assert f"backup {bid} completed in store 'local' but its copy to 'offsite' failed" in msg
    assert "bucket acme-backups not found (check stores.offsite.bucket)" in msg
    assert f"'dumpsafe backup copy {bid} --to offsite'" in msg


def test_copy_usage_errors(env, tmp_path, request):
    env.stores_toml = stores_toml(tmp_path, request, local="local", offsite="s3")
    env.tenant_extra = 'store = "local"'
    env.write_config()
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    r = env.cli("backup", "copy", bid, "--to", "nowhere")
    assert r.code == 2 and "unknown store 'nowhere' (configured stores: local, offsite)" in r.err
    r = env.cli("backup", "copy", bid, "--to", "local")
    assert r.code == 2 and f"backup {bid} is already in store 'local'" in " ".join(r.err.split())
    r = env.cli("backup", "copy", "acme.nope", "--to", "offsite")
    assert r.code == 2 and "is not a backup ID" in r.err
    assert all_keys(open_store(env.config(), "offsite")) == []


def test_copy_of_a_lifecycle_expired_backup_fails_cleanly(env, tmp_path, request):
    env.stores_toml = stores_toml(tmp_path, request, local="local", offsite="gcs")
    env.tenant_extra = 'store = "local"'
    env.write_config()
    rec = env.cli("backup", "create", "acme", "--json").json()[0]
    src = open_store(env.config(), "local")
    for o in rec["objects"]:
        src.delete(o["key"])
    r = env.cli("backup", "copy", rec["id"], "--to", "offsite")
    assert r.code == 1 and "is missing" in r.err and "Traceback" not in r.err
    assert all_keys(open_store(env.config(), "offsite")) == []


# past S3's 1,000-key page on moto; the (slower) GCS emulator gets a few hundred
@pytest.mark.parametrize("kind,count", [("s3", 1100), ("gcs", 150)])
def test_warm_listing_is_one_paginated_listing(kind, count, make_store, request, monkeypatch, tmp_path):
    """A fresh host reads each record once; after that a listing is the only request."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime, timezone

    from dumpsafe.catalog import Catalog, encode_record, record_key
    from dumpsafe.models import BackupRecord, new_backup_id
    from stores import TcpProxy, create_gcs_bucket, create_s3_bucket, new_bucket_name

    server = request.getfixturevalue(f"{kind}_server")
    proxy = TcpProxy(server.port)
    bucket = new_bucket_name()
    if kind == "s3":
        create_s3_bucket(server.url, bucket)
        _, store = make_store("s3", bucket=bucket, create=False, endpoint_url=proxy.url)
    else:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        create_gcs_bucket(bucket)
        _, store = make_store("gcs", bucket=bucket, create=False)
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    recs = [
        BackupRecord(id=new_backup_id("acme", f"db{i}", when), tenant="acme", database=f"db{i}", server_version="16.1",
                     created_at=when, completed_at=when, store="main", location="x", size_bytes=1, sha256="0" * 64)
        for i in range(count)
    ]
    # the GCS emulator is many times slower with parallel writes than with sequential ones
    with ThreadPoolExecutor(8 if kind == "s3" else 1) as pool:
        list(pool.map(lambda r: store.put_bytes(record_key(r.id), encode_record(r)), recs))

    cold = Catalog(store, tmp_path / "cache")
    n0 = len(proxy.requests)
    assert len(cold.records()) == count
    assert len(proxy.requests) - n0 > count  # a fresh cache reads every record once
    n1 = len(proxy.requests)
    assert {r.id for r in Catalog(store, tmp_path / "cache").records()} == {r.id for r in recs}
    warm = proxy.requests[n1:]
    assert 1 <= len(warm) <= 3, warm  # only the listing pages, no per-record read


def test_prune_removes_copies_with_their_original(env, tmp_path, request):
    env.stores_toml = stores_toml(tmp_path, request, local="local", offsite="s3")
    env.tenant_extra = 'store = "local"\ncopy_to = ["offsite"]\nretention = { last = 1 }'
    env.write_config()
    old = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    new = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    assert [x["id"] for x in env.cli("backup", "list", "--json").json()] == [new, old]  # once each
    r = env.cli("prune", "acme")
    assert r.code == 0, r.err
    cfg = env.config()
    for name in ("local", "offsite"):
        keys = all_keys(open_store(cfg, name))
        assert f"records/{new}.json" in keys and not any(old in k for k in keys), (name, keys)
