"""Selective restores (issue 19) through REST, MCP and the remote CLI over real HTTP: the same
tenant rules as whole restores (a tenant token only into its own databases), audited with the
selection. Kept apart from the other front tests so they port to the operations registry alone."""

from __future__ import annotations

import secrets

import anyio
from test_api_rest import backup, call
from test_mcp import error_text, over_http, payload


def _schemas(served) -> set[str]:
    with served.env.pg.connect(served.env.db) as c:
        return {r[0] for r in c.execute("SELECT nspname FROM pg_namespace").fetchall()}


def _drop_schema(served, name: str) -> None:
    with served.env.pg.connect(served.env.db) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_rest_selective_plan_restore_and_tenant_rules(served):
    acme_id = backup(served)
    schema = "rest_" + secrets.token_hex(3)
    try:
        plan = call(served, "write", "GET", f"/v1/backups/{acme_id}/restore-plan",
                    params={"tables": ["public.orders"], "into_schema": schema})
        assert plan.status_code == 200, plan.text
        body = plan.json()
        assert body["dry_run"] is True and body["destructive"] is False and "TABLE public.orders" in body["would_create"]
        assert schema not in _schemas(served)
        r = call(served, "write", "POST", f"/v1/backups/{acme_id}/restore",
                 json={"tables": ["public.orders"], "into_schema": schema})
        assert r.status_code == 200, r.text
        assert r.json()["tables"] == {"public.orders": 200} and r.json()["into_schema"] == schema
        with served.env.pg.connect(served.env.db) as c:
            assert c.execute(f"SELECT count(*) FROM {schema}.orders").fetchone()[0] == 200
        line = [e for e in served.service.audit.entries() if e["action"] == "restore"][-1]
        assert line["actor"] == served.token_ids["write"] and line["outcome"] == "ok"
        assert line["selection"] == ["public.orders"] and line["into_schema"] == schema
        # a tenant token: only its own databases; another tenant's backup is not found
        denied = call(served, "write", "POST", f"/v1/backups/{acme_id}/restore",
                      json={"tables": ["public.orders"], "mode": "new", "database": "elsewhere_" + secrets.token_hex(3)})
        assert denied.status_code == 403 and "is not a restore target of tenant 'acme'" in denied.text
        other = call(served, "other", "POST", f"/v1/backups/{acme_id}/restore", json={"tables": ["public.orders"],
                                                                                  "into_schema": "x"})
        assert other.status_code == 404
        unknown = call(served, "write", "POST", f"/v1/backups/{acme_id}/restore",
                       json={"tables": ["public.nope"], "into_schema": "x_" + secrets.token_hex(3)})
        assert unknown.status_code == 400 and "is not a table of backup" in unknown.text
    finally:
        _drop_schema(served, schema)


def test_mcp_selective_restore_needs_confirm(served):
    acme_id = backup(served)
    schema = "mcp_" + secrets.token_hex(3)

    async def go():
        out = {}
        async with over_http(served, "write") as c:
            args = {"backup_id": acme_id, "tables": ["public.customers"], "into_schema": schema}
            out["unconfirmed"] = error_text(await c.call_tool("restore_backup", args))
            out["dry"] = payload(await c.call_tool("restore_backup", {**args, "dry_run": True}))
            out["done"] = payload(await c.call_tool("restore_backup", {**args, "confirm": True}))
        return out

    try:
        out = anyio.run(go)
        assert "without confirm: true" in out["unconfirmed"]
        assert out["dry"]["dry_run"] is True and "TABLE public.customers" in out["dry"]["would_create"]
        assert out["done"]["tables"] == {"public.customers": 50} and out["done"]["into_schema"] == schema
        with served.env.pg.connect(served.env.db) as c:
            assert c.execute(f"SELECT count(*) FROM {schema}.customers").fetchone()[0] == 50
    finally:
        _drop_schema(served, schema)


def test_remote_cli_selective_restore_into_a_new_database(served, monkeypatch):
    monkeypatch.setenv("DUMPSAFE_SERVER", served.url)
    monkeypatch.setenv("DUMPSAFE_TOKEN", served.tokens["write"])
    acme_id = backup(served)
    target = "r_" + secrets.token_hex(4)
    try:
        r = served.env.cli("backup", "restore", acme_id, "--table", "public.orders", "--table", "public.customers",
                           "--mode", "new", "--database", target, "--json")
        assert r.code == 0, r.err
        assert r.json()["tables"] == {"public.customers": 50, "public.orders": 200}
        with served.env.pg.connect(target) as c:
            assert c.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()[0] == 1
    finally:
        served.env.pg.drop_database(target)


def test_rest_export_streams_the_verified_archive(served, tmp_path):
    import httpx

    acme_id = backup(served)
    local = tmp_path / "local.dump"
    served.service.export(acme_id, local)
    with httpx.stream("GET", served.url + f"/v1/backups/{acme_id}/export", headers=served.headers("write"), timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        body = b"".join(r.iter_bytes())
    assert body == local.read_bytes() and body.startswith(b"PGDMP")  # pg_restore's custom format
    assert call(served, "read", "GET", f"/v1/backups/{acme_id}/export").status_code == 403
    assert call(served, "other", "GET", f"/v1/backups/{acme_id}/export").status_code == 404
    assert call(served, "write", "GET", f"/v1/backups/{acme_id}/export", params={"uploads": "true"}).status_code == 400
    # tampered stored bytes: the transfer is cut, never a complete-looking file
    stored = served.env.store_dir / served.service.get(acme_id).object("database").key
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    got = bytearray()
    try:
        with httpx.stream("GET", served.url + f"/v1/backups/{acme_id}/export", headers=served.headers("admin"),
                          timeout=60) as r:
            for chunk in r.iter_bytes():
                got += chunk
        broken = False
    except httpx.HTTPError:
        broken = True
    assert broken, f"a tampered export arrived whole ({len(got)} bytes)"
    line = [e for e in served.service.audit.entries() if e["action"] == "export"][-1]
    assert line["outcome"] == "failed" and "integrity check failed" in line["error"]


def test_dashboard_previews_and_brings_back_one_table(served):
    """In real headless Chromium: the backup page previews a one-table restore (what would be
    created) and runs it into a new schema; the token's tenant rules are the API's."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from test_dashboard import click, open_backup, result, sign_in, wait

    from browser import start_browser

    acme_id = backup(served)
    schema = "dash_" + secrets.token_hex(3)
    drv = start_browser()
    try:
        sign_in(drv, served, "write")
        open_backup(drv, served, acme_id)
        Select(drv.find_element(By.ID, "sel-table")).select_by_visible_text("public.orders")
        box = drv.find_element(By.ID, "sel-schema")
        assert box.get_attribute("value").startswith("restored_")
        box.clear()
        box.send_keys(schema)
        click(drv, "act-sel-plan")
        assert "TABLE public.orders" in result(drv, "ok")
        assert schema not in _schemas(served)
        # the page reloads the record after an action: the choice stays
        assert wait(drv).until(lambda d: Select(d.find_element(By.ID, "sel-table")).first_selected_option.text) == "public.orders"
        assert wait(drv).until(lambda d: d.find_element(By.ID, "sel-schema").get_attribute("value")) == schema
        click(drv, "act-sel-restore")
        text = wait(drv, 120).until(lambda d: (t := d.find_element(By.ID, "action-result").text).startswith("restored") and t)
        assert text.startswith(f"restored public.orders into schema {schema}") and "orders_customer_id_fkey" in text
        with served.env.pg.connect(served.env.db) as c:
            assert c.execute(f"SELECT count(*) FROM {schema}.orders").fetchone()[0] == 200
    finally:
        drv.quit()
        _drop_schema(served, schema)
