"""--no-owner, --owner ROLE and --no-tablespaces over REST and MCP (the registry's restore body):
a tenant token may drop the backup's owners (its own user then owns the database) but may not hand
a database to another role, which is shared by every tenant of the server; an admin token may."""

from __future__ import annotations

import secrets

import anyio
from test_api_rest import backup, call
from test_mcp import over_http, payload


def _owner(served, db: str) -> str:
    with served.env.pg.connect("postgres") as c:
        return c.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (db,)).fetchone()[0]


def _role(served) -> str:
    name = "own_" + secrets.token_hex(3)
    with served.env.pg.connect("postgres") as c:
        c.execute(f'CREATE ROLE "{name}"')
    return name


def test_rest_restore_takes_the_ownership_options_under_the_tenant_rules(served):
    acme_id = backup(served)
    role = _role(served)
    mine, theirs = "r_" + secrets.token_hex(4), "o_" + secrets.token_hex(4)  # r_*: a restore name of acme
    try:
        r = call(served, "write", "POST", f"/v1/backups/{acme_id}/restore",
                 json={"uploads": False, "no_owner": True, "no_tablespaces": True, "dry_run": True})
        assert r.status_code == 200 and r.json()["ok"] is True, r.text
        denied = call(served, "write", "POST", f"/v1/backups/{acme_id}/restore",
                      json={"mode": "new", "database": mine, "uploads": False, "owner": role})
        assert denied.status_code == 403 and "may not give a database to another role" in denied.text
        assert _owner_or_none(served, mine) is None
        done = call(served, "admin", "POST", f"/v1/backups/{acme_id}/restore",
                    json={"mode": "new", "database": theirs, "uploads": False, "owner": role})
        assert done.status_code == 200, done.text
        assert _owner(served, theirs) == role
        line = [e for e in served.service.audit.entries() if e["action"] == "restore"][-1]
        assert line["outcome"] == "ok" and line["owner"] == role
    finally:
        for db in (mine, theirs):
            served.env.pg.drop_database(db)
        with served.env.pg.connect("postgres") as c:
            c.execute(f'DROP OWNED BY "{role}"')
            c.execute(f'DROP ROLE "{role}"')


def _owner_or_none(served, db: str) -> str | None:
    with served.env.pg.connect("postgres") as c:
        row = c.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (db,)).fetchone()
    return row[0] if row else None


def test_mcp_restore_with_no_owner(served):
    acme_id = backup(served)
    target = "m_" + secrets.token_hex(4)

    async def go():
        async with over_http(served, "admin") as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            props = tools["restore_backup"].input_schema["properties"]
            assert {"no_owner", "owner", "no_tablespaces"} <= set(props)
            return payload(await c.call_tool("restore_backup", {
                "backup_id": acme_id, "mode": "new", "database": target, "uploads": False, "no_owner": True,
                "confirm": True}))

    try:
        out = anyio.run(go)
        assert out["database"] == target
        with served.env.pg.connect("postgres") as c:
            connecting = c.execute("SELECT current_user").fetchone()[0]
        assert _owner(served, target) == connecting
        line = [e for e in served.service.audit.entries() if e["action"] == "restore"][-1]
        assert line["outcome"] == "ok" and line["no_owner"] is True and line["database"] == target
    finally:
        served.env.pg.drop_database(target)
