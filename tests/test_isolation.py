"""Issue 12, finding 1 (and 7's store rule): a tenant token reaches only its own databases
as restore targets and only its own stores, over REST, MCP (HTTP) and the remote CLI.
Two tenants on one server sharing a superuser; the victim's content hash never changes."""

from __future__ import annotations

import secrets

import anyio

from tenants import two  # noqa: F401  (the fixture)
from test_mcp import error_text, payload


def test_a_tenant_token_cannot_restore_over_another_tenants_database(two, monkeypatch):
    acme_id = two.backup("acme")
    before = two.digest(two.beta_db)
    for body in ({"database": two.beta_db, "mode": "atomic", "uploads": False},
                 {"database": two.beta_db, "mode": "clean", "uploads": False},
                 {"database": two.beta_db, "uploads": False},
                 {"database": two.beta_db, "uploads": False, "dry_run": True}):
        r = two.call("acme", "POST", f"/v1/backups/{acme_id}/restore", json=body)
        assert r.status_code == 403, r.text
        assert f"database {two.beta_db!r} is not a restore target of tenant 'acme'" in r.json()["detail"]

    async def over_mcp():
        async with two.mcp("acme") as c:
            return error_text(await c.call_tool("restore_backup", {
                "backup_id": acme_id, "database": two.beta_db, "mode": "atomic", "uploads": False, "confirm": True}))

    assert "is not a restore target of tenant 'acme'" in anyio.run(over_mcp)

    monkeypatch.setenv("DUMPSAFE_SERVER", two.url)
    monkeypatch.setenv("DUMPSAFE_TOKEN", two.tokens["acme"])
    r = two.env.cli("backup", "restore", acme_id, "--database", two.beta_db, "--mode", "atomic", "--no-uploads", "--yes")
    assert r.code == 1 and "is not a restore target of tenant 'acme'" in r.err

    assert two.digest(two.beta_db) == before
    refused = [e for e in two.audit() if e["action"] in ("restore", "restore-plan") and e["database"] == two.beta_db]
    assert len(refused) == 6 and {e["outcome"] for e in refused} == {"failed"}
    assert {(e["actor"], e["tenant"], e["actor_tenant"]) for e in refused} == {(two.ids["acme"], "acme", "acme")}


def test_new_mode_creates_only_names_in_the_tenants_namespace(two, monkeypatch):
    acme_id = two.backup("acme")
    evil = "evil_" + secrets.token_hex(4)
    r = two.call("acme", "POST", f"/v1/backups/{acme_id}/restore", json={"database": evil, "mode": "new", "uploads": False})
    assert r.status_code == 403 and "acme_restored_*" in r.json()["detail"]

    async def over_mcp():
        async with two.mcp("acme") as c:
            return error_text(await c.call_tool("restore_backup", {
                "backup_id": acme_id, "database": evil, "mode": "new", "uploads": False, "confirm": True}))

    assert "is not a restore target" in anyio.run(over_mcp)
    monkeypatch.setenv("DUMPSAFE_SERVER", two.url)
    monkeypatch.setenv("DUMPSAFE_TOKEN", two.tokens["acme"])
    r = two.env.cli("backup", "restore", acme_id, "--database", evil, "--mode", "new", "--no-uploads", "--yes")
    assert r.code == 1 and "is not a restore target" in r.err
    assert evil not in two.databases()

    # a name in acme's namespace is fine, and an admin token keeps full reach
    mine, anywhere = "acme_restored_" + secrets.token_hex(3), "adm_" + secrets.token_hex(3)
    try:
        r = two.env.cli("backup", "restore", acme_id, "--database", mine, "--mode", "new", "--no-uploads", "--yes", "--json")
        assert r.code == 0, r.err
        r = two.call("admin", "POST", f"/v1/backups/{acme_id}/restore", json={"database": anywhere, "uploads": False})
        assert r.status_code == 200, r.text
        assert two.digest(mine) == two.digest(anywhere) == two.digest(two.acme_db)
    finally:
        for name in (mine, anywhere):
            two.env.pg.drop_database(name)


def test_restore_plan_is_scoped_audited_and_no_probe(two):
    acme_id = two.backup("acme")
    ghost = "beta_app_nothere"
    real = two.call("acme", "GET", f"/v1/backups/{acme_id}/restore-plan", params={"database": two.beta_db, "uploads": "false"})
    fake = two.call("acme", "GET", f"/v1/backups/{acme_id}/restore-plan", params={"database": ghost, "uploads": "false"})
    assert real.status_code == fake.status_code == 403
    assert real.json()["detail"].replace(two.beta_db, ghost) == fake.json()["detail"]
    own = two.call("acme", "GET", f"/v1/backups/{acme_id}/restore-plan", params={"uploads": "false"})
    assert own.status_code == 200 and own.json()["database"] == two.acme_db and own.json()["mode"] == "atomic"
    lines = [e for e in two.audit("restore-plan") if e["backup_id"] == acme_id]
    assert [(e["database"], e["outcome"]) for e in lines] == [(two.beta_db, "failed"), (ghost, "failed"), (two.acme_db, "ok")]
    assert {e["tenant"] for e in lines} == {"acme"} and {e["actor"] for e in lines} == {two.ids["acme"]}


def test_a_tenant_token_writes_only_to_its_tenants_stores(two, monkeypatch):
    for store in ("beta_store", "nosuchstore"):
        r = two.call("acme", "POST", "/v1/backups", json={"tenant": "acme", "store": store, "uploads": False})
        assert r.status_code == 403 and r.json()["detail"] == (
            f"store {store!r} is not a store of tenant 'acme' (its stores: acme_store)")
    assert not two.service.list("acme", store="beta_store")

    async def over_mcp():
        async with two.mcp("acme") as c:
            return error_text(await c.call_tool("create_backup", {"tenant": "acme", "store": "beta_store", "uploads": False}))

    assert "is not a store of tenant 'acme'" in anyio.run(over_mcp)
    monkeypatch.setenv("DUMPSAFE_SERVER", two.url)
    monkeypatch.setenv("DUMPSAFE_TOKEN", two.tokens["acme"])
    r = two.env.cli("backup", "create", "acme", "--store", "beta_store", "--no-uploads")
    assert r.code == 1 and "is not a store of tenant 'acme'" in r.err
    acme_id = two.backup("acme")
    r = two.env.cli("backup", "copy", acme_id, "--to", "beta_store")
    assert r.code == 1 and "is not a store of tenant 'acme'" in r.err
    assert not two.service.list("acme", store="beta_store")
    line = [e for e in two.audit("create") if e["store"] == "beta_store"][-1]
    assert line["tenant"] == "acme" and line["outcome"] == "failed" and line["actor"] == two.ids["acme"]
    ok = two.call("acme", "POST", "/v1/backups", json={"tenant": "acme", "store": "acme_store", "uploads": False})
    assert ok.status_code == 201 and ok.json()[0]["store"] == "acme_store"


def test_creating_roles_is_for_admins(two):
    """Roles are shared by every tenant of a server: with_globals is refused to tenant tokens."""
    acme_id = two.backup("acme")
    r = two.call("acme", "POST", f"/v1/backups/{acme_id}/restore", json={"uploads": False, "with_globals": True})
    assert r.status_code == 403 and "may not create roles" in r.json()["detail"]


def test_tenant_tokens_see_no_host_paths(two):
    acme_id = two.backup("acme", uploads=True)
    root = str(two.env.root)
    rec = two.call("acme", "GET", f"/v1/backups/{acme_id}")
    assert rec.status_code == 200 and rec.json()["location"] == f"dumpsafe://acme_store/{acme_id}"
    listed = two.call("acme", "GET", "/v1/backups").text
    dry = two.call("acme", "POST", f"/v1/backups/{acme_id}/restore", json={"dry_run": True})
    plan = two.call("acme", "GET", f"/v1/backups/{acme_id}/restore-plan")
    assert dry.status_code == 200 and plan.status_code == 200, dry.text + plan.text
    assert dry.json()["uploads_to"] == "<host path>" and any(d["path"] == "<host path>" for d in dry.json()["disk"])
    with two.env.pg.connect() as c:
        datadir = c.execute("SHOW data_directory").fetchone()[0]
    for text in (rec.text, listed, dry.text, plan.text):
        assert root not in text and datadir not in text and "file://" not in text

    async def over_mcp():
        async with two.mcp("acme") as c:
            got = payload(await c.call_tool("get_backup", {"backup_id": acme_id}))
            report = payload(await c.call_tool("restore_backup", {"backup_id": acme_id, "dry_run": True}))
            return got, report

    got, report = anyio.run(over_mcp)
    assert got["location"] == f"dumpsafe://acme_store/{acme_id}" and root not in str(report) and datadir not in str(report)
    # an admin still sees where things are
    assert two.call("admin", "GET", f"/v1/backups/{acme_id}").json()["location"].startswith("file://")


def test_the_target_is_refused_before_any_connection(env):
    """With the tenant's server unreachable, a foreign target still answers 403 at once (the
    decision needs no server), while the tenant's own target gets as far as the connection."""
    from dumpsafe.fronts.api import create_app
    from dumpsafe.auth import READ, WRITE, TokenStore
    from live import LiveServer, free_port

    bid = env.service().create("acme", uploads=False)[0].id
    env.config_path.write_text(env.config_path.read_text().replace(f"port = {env.pg.port}", f"port = {free_port()}"))
    svc = env.service()
    _, token = TokenStore(svc.state_dir).create(tenant="acme", scopes=[READ, WRITE])
    server = LiveServer(create_app(svc, mcp=False)).start()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        import httpx

        foreign = httpx.get(f"{server.url}/v1/backups/{bid}/restore-plan", params={"database": "beta_app"},
                            headers=headers, timeout=60)
        own = httpx.get(f"{server.url}/v1/backups/{bid}/restore-plan", headers=headers, timeout=60)
        restore = httpx.post(f"{server.url}/v1/backups/{bid}/restore", json={"database": "beta_app", "uploads": False},
                             headers=headers, timeout=60)
    finally:
        server.stop()
    assert foreign.status_code == restore.status_code == 403
    assert own.status_code == 503 and own.json()["error"] == "database_unavailable"  # the own target really needs the (unreachable) server
