"""verify and verify --drill against a real PostgreSQL: pass, catch bad counts and bad bytes,
record the outcome, never leave a scratch database behind."""

from __future__ import annotations

import time

import pytest

from restore_helpers import audit_lines, databases, enrich

SCRATCH = "dumpsafe_drill_"


@pytest.fixture
def bid(env):
    enrich(env.pg, env.db)
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    return r.json()[0]["id"]


def scratch_dbs(pg) -> set[str]:
    return {d for d in databases(pg) if d.startswith(SCRATCH)}


def test_verify_integrity_passes_and_is_recorded(env, bid):
    t0 = time.monotonic()
    r = env.cli("backup", "verify", bid, "--json")
    elapsed = time.monotonic() - t0
    assert r.code == 0, r.err
    v = r.json()["last_verification"]
    assert v["result"] == "passed" and v["kind"] == "integrity"
    assert 0 < v["duration_s"] <= round(elapsed, 3) + 0.001  # measured, and within the command's own time
    assert "2 objects match their SHA-256" in v["detail"] and "3 with table data" in v["detail"]
    assert env.cli("backup", "get", bid, "--json").json()["last_verification"] == v  # stored in the record


def test_drill_passes_measures_rto_and_drops_scratch(env, bid):
    before = databases(env.pg)
    r = env.cli("backup", "verify", bid, "--drill", "--json")
    assert r.code == 0, r.err
    v = r.json()["last_verification"]
    assert v["result"] == "passed" and v["kind"] == "drill"
    assert v["rto_s"] > 0 and v["tables"] == 3 and v["server"] == f"127.0.0.1:{env.pg.port}"
    assert "equal to the backup: row counts of 3 tables" in v["detail"]
    for what in ("large objects", "sequence values", "database properties", "schema fingerprint"):
        assert what in v["detail"] and any(what in c for c in v["compared"])
    assert databases(env.pg) == before
    assert env.service().get(bid).last_verification.result == "passed"
    (line,) = audit_lines(env, "verify")
    assert line["outcome"] == "ok" and line["drill"] is True and line["rto_s"] == v["rto_s"]

    r = env.cli("backup", "verify", bid, "--drill")  # human rendering
    assert r.code == 0 and "passed (drill)" in r.out and "RTO" in r.out


def test_drill_catches_counts_that_disagree_with_the_record(env, bid):
    svc = env.service()
    rec = svc.get(bid)
    svc.save_record(rec.model_copy(update={"tables": {**rec.tables, "public.orders": 801, "public.ghost": 5}}))
    before = databases(env.pg)
    r = env.cli("backup", "verify", bid, "--drill")
    assert r.code == 1
    assert "public.orders (recorded 801 rows, restored 800 rows)" in r.err
    assert "public.ghost (recorded 5 rows, restored absent)" in r.err
    assert "billing.invoices" not in r.err
    assert databases(env.pg) == before and not scratch_dbs(env.pg)
    v = svc.get(bid).last_verification
    assert v.result == "failed" and v.kind == "drill" and "public.orders" in v.detail
    assert audit_lines(env, "verify")[-1]["outcome"] == "failed"


def test_drill_that_fails_to_restore_still_drops_scratch(env, bid):
    with env.pg.connect(env.db) as c:
        c.execute("DROP ROLE IF EXISTS drill_owner")
        c.execute("CREATE ROLE drill_owner")
        c.execute("ALTER TABLE orders OWNER TO drill_owner")
    r = env.cli("backup", "create", "acme", "--json", "--no-uploads")
    bid2 = r.json()[0]["id"]
    with env.pg.connect(env.db) as c:
        c.execute("REASSIGN OWNED BY drill_owner TO postgres")
        c.execute("DROP OWNED BY drill_owner")
        c.execute("DROP ROLE drill_owner")
    before = databases(env.pg)
    r = env.cli("backup", "verify", bid2, "--drill", "--json")
    assert r.code == 1 and "drill_owner" in r.err
    assert r.json()["last_verification"]["result"] == "failed"  # --json still prints the record
    assert databases(env.pg) == before and not scratch_dbs(env.pg)


@pytest.mark.parametrize("drill", [False, True])
def test_tampered_object_fails_verification(env, bid, drill):
    rec = env.service().get(bid)
    path = env.store_dir / rec.object("database").key
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    before = databases(env.pg)
    args = ["backup", "verify", bid] + (["--drill"] if drill else [])
    r = env.cli(*args)
    assert r.code == 1 and "integrity check failed" in r.err
    v = env.service().get(bid).last_verification
    assert v.result == "failed" and "integrity check failed" in v.detail
    assert databases(env.pg) == before


def test_drill_on_a_configured_drill_server(env, bid, monkeypatch):
    """[drill_servers.NAME] + tenants.X.drill_server: the drill connects there with its own password."""
    monkeypatch.setenv("DRILL_PW", env.pg.password)
    env.write_config(
        extra_toml=f'[drill_servers.scratch]\nhost = "localhost"\nport = {env.pg.port}\npassword_env = "DRILL_PW"\n',
        tenant_extra='drill_server = "scratch"',
    )
    r = env.cli("backup", "verify", bid, "--drill", "--json")
    assert r.code == 0, r.err
    assert r.json()["last_verification"]["server"] == f"localhost:{env.pg.port}"
    assert not scratch_dbs(env.pg)

    env.write_config(tenant_extra='drill_server = "nope"')
    r = env.cli("backup", "verify", bid, "--drill")
    assert r.code == 2 and "drill_server" in r.err and "nope" in r.err


def test_verify_keeps_changes_made_meanwhile_and_never_resurrects(env, bid):
    from dumpsafe.errors import ObjectMissing
    from dumpsafe.verify import Verifier

    svc = env.service()
    # pinned by someone else between our read and our write: the pin survives
    v = Verifier(svc)
    rec = svc.get(bid)
    svc.save_record(rec.model_copy(update={"pinned": True, "label": "keep me"}))
    real_get = svc.get
    svc.get = lambda *a, **k: rec  # noqa: E731 - the verifier reads the record before the pin
    try:
        v.verify(bid)
    finally:
        svc.get = real_get
    after = svc.get(bid)
    assert after.pinned and after.label == "keep me" and after.last_verification.result == "passed"
    # deleted while the verification ran: the record stays gone
    svc.get = lambda *a, **k: after  # noqa: E731
    svc.delete(bid)
    try:
        with pytest.raises(ObjectMissing):
            v.verify(bid)  # its objects are gone: a failed verification...
    finally:
        svc.get = real_get
    assert env.cli("backup", "get", bid).code == 1  # ...that does not write the record back


def test_no_secret_on_any_command_line_during_restore_and_drill(env, bid):
    import threading

    from conftest import all_cmdlines

    seen: list[bytes] = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            seen.extend(cmd for _pid, cmd in all_cmdlines() if b"pg_restore" in cmd)
            if any(env.pg.password.encode() in cmd for _pid, cmd in all_cmdlines()):
                seen.append(b"LEAK")

    t = threading.Thread(target=poll)
    t.start()
    try:
        assert env.cli("backup", "verify", bid, "--drill").code == 0
        assert env.cli("backup", "restore", bid, "--yes").code == 0
    finally:
        done.set()
        t.join()
    assert seen and b"LEAK" not in seen  # pg_restore was seen running, never with the password


def test_globals_object_is_checked_too(env):
    """include_globals stores a third object: verify and restore hash it like the others."""
    env.write_config(tenant_extra="include_globals = true")
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    rec = r.json()[0]
    (g,) = [o for o in rec["objects"] if o["role"] == "globals"]
    r = env.cli("backup", "verify", rec["id"], "--json")
    assert r.code == 0 and "3 objects match" in r.json()["last_verification"]["detail"]
    r = env.cli("backup", "restore", rec["id"], "--dry-run", "--json")
    assert r.code == 0 and {i["role"] for i in r.json()["integrity"]} == {"database", "uploads", "globals"}
    path = env.store_dir / g["key"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    for args in (["verify", rec["id"]], ["verify", rec["id"], "--drill"], ["restore", rec["id"], "--yes"]):
        r = env.cli("backup", *args)
        assert r.code == 1 and "integrity check failed" in r.err and g["key"] in r.err, args
