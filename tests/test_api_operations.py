"""Verify, restore, prune and status through REST, MCP and the remote CLI, under the same
token rules."""

from __future__ import annotations

import secrets

import anyio
import httpx
import pytest

from test_api_rest import WHO, backup, call
from test_mcp import error_text, over_http, payload


EXPECT = {
    #           none bad  expired read create write  other admin
    "verify":  (401, 401, 401, 403, 200, 200, 404, 200),
    "dry-run": (401, 401, 401, 403, 403, 200, 404, 200),
    "prune":   (401, 401, 401, 403, 403, 200, 200, 200),
    "status":  (401, 401, 401, 200, 200, 200, 200, 200),
}


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("route", list(EXPECT))
def test_operation_matrix(served, route, who):
    expected = EXPECT[route][WHO.index(who)]
    acme_id = backup(served) if route in ("verify", "dry-run") else None
    if route == "verify":
        r = call(served, who, "POST", f"/v1/backups/{acme_id}/verify", json={})
    elif route == "dry-run":
        r = call(served, who, "POST", f"/v1/backups/{acme_id}/restore", json={"dry_run": True, "uploads": False})
    elif route == "prune":
        r = call(served, who, "POST", "/v1/prune", json={"dry_run": True})
    else:
        r = call(served, who, "GET", "/v1/status")
    assert r.status_code == expected, r.text
    body = r.json()
    if expected >= 400:
        assert set(body) == {"error", "detail"}
        return
    if route == "verify":
        assert body["id"] == acme_id and body["last_verification"]["result"] == "passed"
        assert served.service.get(acme_id).last_verification.result == "passed"
    elif route == "dry-run":
        assert body["backup_id"] == acme_id and body["dry_run"] is True and body["tables"]["public.orders"] == 200
    else:
        tenants = {row["tenant"] for row in body}
        assert tenants == ({"acme", "beta"} if who == "admin" else {"beta"} if who == "other" else {"acme"})


def test_restore_over_rest_into_a_new_database(served):
    acme_id = backup(served)
    target = "r_" + secrets.token_hex(4)
    try:
        plan = call(served, "write", "GET", f"/v1/backups/{acme_id}/restore-plan", params={"database": target, "uploads": "false"})
        assert plan.status_code == 200 and plan.json()["mode"] == "new" and plan.json()["destructive"] is False
        r = call(served, "write", "POST", f"/v1/backups/{acme_id}/restore", json={"database": target, "uploads": False})
        assert r.status_code == 200, r.text
        assert r.json()["database"] == target
        with served.env.pg.connect(target) as c:
            assert c.execute("SELECT count(*) FROM public.orders").fetchone()[0] == 200
        line = [e for e in served.service.audit.entries() if e["action"] == "restore"][-1]
        assert line["actor"] == served.token_ids["write"] and line["outcome"] == "ok"
        # paths are not for callers: the REST body has no uploads_to
        bad = call(served, "admin", "POST", f"/v1/backups/{acme_id}/restore", json={"uploads_to": "/tmp/x", "dry_run": True})
        assert bad.status_code == 400
    finally:
        served.env.pg.drop_database(target)


def test_mcp_restore_needs_confirm_and_follows_the_token(served):
    acme_id = backup(served)
    beta_id = backup(served, "beta")

    async def go():
        out = {}
        async with over_http(served, "write") as c:
            names = {t.name: t for t in (await c.list_tools()).tools}
            out["annotations"] = names["restore_backup"].annotations
            out["unconfirmed"] = error_text(await c.call_tool("restore_backup", {"backup_id": acme_id}))
            out["dry"] = payload(await c.call_tool("restore_backup", {"backup_id": acme_id, "dry_run": True, "uploads": False}))
            out["cross"] = error_text(await c.call_tool("restore_backup", {"backup_id": beta_id, "dry_run": True}))
            out["verified"] = payload(await c.call_tool("verify_backup", {"backup_id": acme_id}))
            out["status"] = payload(await c.call_tool("backup_status", {}))
        async with over_http(served, "read") as c:
            out["denied"] = error_text(await c.call_tool("verify_backup", {"backup_id": acme_id}))
        return out

    out = anyio.run(go)
    assert out["annotations"].destructive_hint is True
    assert "without confirm: true" in out["unconfirmed"]
    assert out["dry"]["dry_run"] is True and out["dry"]["backup_id"] == acme_id
    assert f"backup {beta_id!r} not found" in out["cross"]
    assert out["verified"]["last_verification"]["result"] == "passed"
    assert {row["tenant"] for row in out["status"]} == {"acme"}
    assert "lacks the backups:create scope" in out["denied"]


def test_remote_cli_verify_status_prune(served, monkeypatch):
    monkeypatch.setenv("DUMPSAFE_SERVER", served.url)
    monkeypatch.setenv("DUMPSAFE_TOKEN", served.tokens["write"])
    env = served.env
    acme_id = backup(served)
    verified = env.cli("backup", "verify", acme_id, "--json")
    assert verified.code == 0, verified.err
    assert verified.json()["last_verification"]["result"] == "passed"
    status = env.cli("status", "--json")
    assert status.code == 0 and {row["tenant"] for row in status.json()} == {"acme"}, status.err
    pruned = env.cli("prune", "--dry-run", "--json")
    assert pruned.code == 0 and {d["tenant"] for d in pruned.json()} == {"acme"}
    # the same command run locally renders the same status rows
    monkeypatch.delenv("DUMPSAFE_SERVER")
    local = [row for row in env.cli("status", "--json").json() if row["tenant"] == "acme"]
    strip = lambda rows: [{k: v for k, v in row.items() if not k.endswith("_age_s") and k != "next_run_at"} for row in rows]
    assert strip(local) == strip(status.json())


def test_remote_cli_restore_refuses_server_paths(served, monkeypatch, tmp_path):
    monkeypatch.setenv("DUMPSAFE_SERVER", served.url)
    monkeypatch.setenv("DUMPSAFE_TOKEN", served.tokens["admin"])
    acme_id = backup(served)
    r = served.env.cli("backup", "restore", acme_id, "--uploads-to", str(tmp_path / "u"), "--yes")
    assert r.code == 2 and "not available with --server" in r.err
    r = served.env.cli("backup", "restore", acme_id, "--identity", str(tmp_path / "key"), "--dry-run", "--no-uploads")
    assert r.code == 2 and "--identity is a file on this machine" in r.err
    r = served.env.cli("backup", "restore", acme_id, "--dry-run", "--no-uploads", "--json")
    assert r.code == 0 and r.json()["backup_id"] == acme_id, r.err


def test_metrics_carry_backup_status(served):
    backup(served)
    text = call(served, "admin", "GET", "/metrics").text
    assert 'dumpsafe_last_success_timestamp_seconds{database="' in text and 'tenant="acme"' in text


def test_pin_over_rest_and_the_remote_cli(served, monkeypatch):
    acme_id = backup(served)
    assert call(served, "read", "POST", f"/v1/backups/{acme_id}/pin").status_code == 403
    assert call(served, "other", "POST", f"/v1/backups/{acme_id}/pin").status_code == 404
    r = call(served, "write", "POST", f"/v1/backups/{acme_id}/pin")
    assert r.status_code == 200 and r.json()["pinned"] is True and served.service.get(acme_id).pinned
    monkeypatch.setenv("DUMPSAFE_SERVER", served.url)
    monkeypatch.setenv("DUMPSAFE_TOKEN", served.tokens["write"])
    r = served.env.cli("backup", "unpin", acme_id)
    assert r.code == 0, r.err
    assert served.service.get(acme_id).pinned is False


def test_copy_over_rest_and_the_remote_cli(served, monkeypatch):
    acme_id = backup(served)
    assert call(served, "read", "POST", f"/v1/backups/{acme_id}/copy", json={"to": "offsite"}).status_code == 403
    assert call(served, "write", "POST", f"/v1/backups/{acme_id}/copy", json={"to": "/tmp/elsewhere"}).status_code == 400
    monkeypatch.setenv("DUMPSAFE_SERVER", served.url)
    # 'offsite' is not one of acme's stores (no copy_to): a tenant token may not write there (issue 12)
    monkeypatch.setenv("DUMPSAFE_TOKEN", served.tokens["write"])
    r = served.env.cli("backup", "copy", acme_id, "--to", "offsite", "--json")
    assert r.code == 1 and "is not a store of tenant 'acme'" in r.err
    monkeypatch.setenv("DUMPSAFE_TOKEN", served.tokens["admin"])
    r = served.env.cli("backup", "copy", acme_id, "--to", "offsite", "--json")
    assert r.code == 0, r.err
    assert acme_id in {rec.id for rec in served.service.list("acme", store="offsite")}
    line = [e for e in served.service.audit.entries() if e["action"] == "copy" and e["backup_id"] == acme_id][-1]
    assert line["actor"] == served.token_ids["admin"]


def test_with_globals_reaches_the_service_over_rest_mcp_and_the_remote_cli(served, monkeypatch):
    """The served tenant keeps no globals object, so asking for its roles is refused the same way everywhere."""
    acme_id = backup(served)
    r = call(served, "write", "POST", f"/v1/backups/{acme_id}/restore", json={"dry_run": True, "uploads": False, "with_globals": True})
    assert r.status_code == 400 and "holds no globals object" in r.json()["detail"]
    plan = call(served, "write", "GET", f"/v1/backups/{acme_id}/restore-plan", params={"uploads": "false", "with_globals": "true"})
    assert plan.status_code == 400 and "holds no globals object" in plan.json()["detail"]

    async def go():
        async with over_http(served, "write") as c:
            return error_text(await c.call_tool("restore_backup", {"backup_id": acme_id, "dry_run": True, "uploads": False,
                                                                   "with_globals": True}))

    assert "holds no globals object" in anyio.run(go)
    monkeypatch.setenv("DUMPSAFE_SERVER", served.url)
    monkeypatch.setenv("DUMPSAFE_TOKEN", served.tokens["write"])
    r = served.env.cli("backup", "restore", acme_id, "--dry-run", "--no-uploads", "--with-globals")
    assert r.code == 2 and "holds no globals object" in r.err
