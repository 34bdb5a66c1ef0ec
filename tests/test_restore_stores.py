"""Restore and drill from real HTTP object stores (S3 via moto, GCS emulator) on a fresh host:
the objects stream once from the store, are checked, and a tampered object changes nothing."""

from __future__ import annotations

import pytest

from dumpsafe.storage import open_store
from restore_helpers import databases, db_state, enrich, tree_state
from stores import fake_aws_env, gcs_server, s3_server, store_section  # noqa: F401  (fixtures)
from test_stores_service import second_host, stores_toml


@pytest.mark.parametrize("kind", ["s3", "gcs"])
def test_restore_and_drill_from_object_store_on_fresh_host(kind, env, tmp_path, request):
    env.stores_toml = stores_toml(tmp_path, request, offsite=kind)
    env.tenant_extra = 'store = "offsite"'
    env.write_config()
    enrich(env.pg, env.db)
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    rec = r.json()[0]
    state, tree = db_state(env.pg, env.db), tree_state(env.uploads)

    host2 = second_host(env)  # empty state_dir: everything comes from the bucket
    with env.pg.connect(env.db) as c:
        c.execute("DELETE FROM billing.invoices; UPDATE customers SET name = 'x'")
    (env.uploads / "invoices/README.txt").write_text("defaced\n")

    r = host2.cli("backup", "verify", rec["id"], "--drill", "--json")
    assert r.code == 0, r.err
    assert r.json()["last_verification"]["result"] == "passed"
    r = host2.cli("backup", "restore", rec["id"], "--yes", "--json")
    assert r.code == 0, r.err
    assert db_state(env.pg, env.db) == state and tree_state(env.uploads) == tree

    # one flipped byte in the bucket: refused, nothing changed
    store = open_store(host2.config(), "offsite")
    key = next(o["key"] for o in rec["objects"] if o["role"] == "database")
    data = bytearray(store.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    store.put_bytes(key, bytes(data))
    with env.pg.connect(env.db) as c:
        c.execute("DELETE FROM billing.invoices WHERE id % 2 = 1")
    damaged, dbs = db_state(env.pg, env.db), databases(env.pg)
    r = host2.cli("backup", "restore", rec["id"], "--yes")
    assert r.code == 1 and "integrity check failed" in r.err
    assert db_state(env.pg, env.db) == damaged and databases(env.pg) == dbs
