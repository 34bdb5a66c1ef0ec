"""The MCP front through the SDK's real client: over streamable HTTP with bearer tokens
(same scope and tenant rules as REST) and over stdio as the local operator."""

from __future__ import annotations

import sys

import anyio
import anyio.to_thread
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

TOOLS = {"create_backup", "list_backups", "get_backup", "delete_backup"}


def over_http(served, who: str) -> Client:
    hc = httpx2.AsyncClient(headers=served.headers(who), timeout=60)
    return Client(streamable_http_client(served.url + "/mcp", http_client=hc))


def payload(result) -> object:
    """A tool's structured result (lists come wrapped as {"result": [...]})."""
    assert not result.is_error, result.content
    data = result.structured_content
    return data["result"] if set(data) == {"result"} else data


def error_text(result) -> str:
    assert result.is_error
    return " ".join(c.text for c in result.content)


def test_tools_are_typed_and_annotated(served):
    async def go():
        async with over_http(served, "read") as c:
            return {t.name: t for t in (await c.list_tools()).tools}

    tools = anyio.run(go)
    assert TOOLS <= set(tools)
    for name in ("list_backups", "get_backup"):
        assert tools[name].annotations.read_only_hint is True
    assert tools["delete_backup"].annotations.destructive_hint is True
    assert tools["create_backup"].annotations.destructive_hint is False
    schema = tools["delete_backup"].input_schema
    assert schema["properties"]["confirm"]["type"] == "boolean" and schema["required"] == ["backup_id"]
    assert tools["create_backup"].input_schema["required"] == ["tenant"]


def test_http_tools_follow_the_token_rules(served):
    acme_id = served.service.create("acme", uploads=False)[0].id
    beta_id = served.service.create("beta", uploads=False)[0].id
    ghost = beta_id.rsplit(".", 1)[0] + ".zzzzzzzz"

    async def go():
        out = {}
        async with over_http(served, "read") as c:
            out["list"] = payload(await c.call_tool("list_backups", {}))
            out["get"] = payload(await c.call_tool("get_backup", {"backup_id": acme_id}))
            out["other"] = error_text(await c.call_tool("get_backup", {"backup_id": beta_id}))
            out["ghost"] = error_text(await c.call_tool("get_backup", {"backup_id": ghost}))
            out["create"] = error_text(await c.call_tool("create_backup", {"tenant": "acme", "uploads": False}))
        async with over_http(served, "write") as c:
            out["made"] = payload(await c.call_tool("create_backup", {"tenant": "acme", "uploads": False}))
            out["unconfirmed"] = error_text(await c.call_tool("delete_backup", {"backup_id": acme_id}))
            out["deleted"] = payload(await c.call_tool("delete_backup", {"backup_id": acme_id, "confirm": True}))
            out["cross"] = error_text(await c.call_tool("delete_backup", {"backup_id": beta_id, "confirm": True}))
            out["badid"] = error_text(await c.call_tool("get_backup", {"backup_id": "../etc"}))
        return out

    out = anyio.run(go)
    assert {r["tenant"] for r in out["list"]} == {"acme"}
    assert out["get"]["id"] == acme_id and out["get"]["tables"]["public.orders"] == 200
    assert f"backup {beta_id!r} not found" in out["other"]
    assert out["ghost"].replace(ghost, beta_id) == out["other"]
    assert "lacks the backups:create scope" in out["create"]
    assert out["made"][0]["tenant"] == "acme" and served.service.get(out["made"][0]["id"])
    assert "without confirm: true" in out["unconfirmed"]
    assert out["deleted"]["id"] == acme_id and acme_id not in {r.id for r in served.service.list("acme")}
    assert f"backup {beta_id!r} not found" in out["cross"] and served.service.get(beta_id).tenant == "beta"
    assert "is not a backup ID" in out["badid"]
    actors = {e["actor"] for e in served.service.audit.entries() if e["backup_id"] in (acme_id, out["made"][0]["id"])}
    assert actors == {"local", served.token_ids["write"]}


@pytest.mark.parametrize("who", ["none", "bad", "expired"])
def test_http_mcp_without_a_valid_token_is_401(served, who):
    init = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    r = httpx.post(served.url + "/mcp", json=init, headers=served.headers(who) | {"Accept": "application/json, text/event-stream"})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"

    async def go():
        async with over_http(served, who) as c:
            await c.list_tools()

    with pytest.raises(Exception):
        anyio.run(go)


def test_stdio_is_the_local_admin(served):
    env = served.env
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "dumpsafe", "--config", str(env.config_path), "mcp"],
        env=env.subprocess_env(),
    )

    async def go():
        async with Client(params) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            listed = payload(await c.call_tool("list_backups", {}))
            made = payload(await c.call_tool("create_backup", {"tenant": "beta", "uploads": False}))
            got = payload(await c.call_tool("get_backup", {"backup_id": made[0]["id"]}))
            missing = error_text(await c.call_tool("get_backup", {"backup_id": "acme.x.20260101T000000Z.abcdefgh"}))
            return names, listed, made, got, missing

    names, listed, made, got, missing = anyio.run(go)
    assert TOOLS <= names
    assert {r["tenant"] for r in listed} == {"acme", "beta"}
    assert got["id"] == made[0]["id"]
    assert "not found" in missing
    line = [e for e in served.service.audit.entries() if e["backup_id"] == made[0]["id"]][-1]
    assert line["actor"] == "local" and line["outcome"] == "ok"


def test_http_create_runs_off_the_event_loop(served, monkeypatch):
    """While an MCP create_backup holds a worker thread, REST and MCP reads are still answered."""
    import threading

    import dumpsafe.engines.postgres as pgmod

    started, release = threading.Event(), threading.Event()
    real = pgmod.pg_dump_stream

    def slow_dump(*a, **kw):
        started.set()
        release.wait(30)
        return real(*a, **kw)

    monkeypatch.setattr(pgmod, "pg_dump_stream", slow_dump)

    async def go():
        async with over_http(served, "admin") as c, anyio.create_task_group() as tg:
            made = {}

            async def create():
                made["r"] = payload(await c.call_tool("create_backup", {"tenant": "acme", "uploads": False}))

            tg.start_soon(create)
            await anyio.to_thread.run_sync(started.wait, 30)
            listed = payload(await c.call_tool("list_backups", {"tenant": "beta"}))
            rest = await anyio.to_thread.run_sync(
                lambda: httpx.get(served.url + "/v1/backups", headers=served.headers("read"), timeout=10)
            )
            assert "r" not in made  # both answered while the backup was still running
            release.set()
        return listed, rest, made["r"]

    listed, rest, made = anyio.run(go)
    assert {r["tenant"] for r in listed} == {"beta"} and rest.status_code == 200
    assert made[0]["tenant"] == "acme"


def test_http_mcp_works_behind_a_reverse_proxy_host_name(served):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = served.headers("read") | {"Accept": "application/json, text/event-stream", "Host": "backups.example.com"}
    r = httpx.post(served.url + "/mcp", json=init, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["serverInfo"]["name"] == "dumpsafe"
