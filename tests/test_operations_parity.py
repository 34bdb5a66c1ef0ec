"""Every operation of the registry is offered by REST, MCP (the SDK's real client) and the
remote client, with the same scope and tenant rules and the same answer on every front."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from dumpsafe import errors
from dumpsafe.auth import CREATE, READ, TokenStore
from dumpsafe.operations import OPERATIONS, Operation
from dumpsafe.fronts.remote import RemoteService

from test_api_rest import backup
from test_mcp import over_http

NAMES = [op.name for op in OPERATIONS]
SAMPLE = {"to": "local"}  # required parameters other than the tenant


@pytest.fixture(scope="module")
def world(served) -> dict[str, Any]:
    """acme's and beta's backups, and an acme token without backups:read."""
    info, secret = TokenStore(served.service.state_dir).create(name="noread", tenant="acme", scopes=[CREATE])
    served.tokens["noread"], served.token_ids["noread"] = secret, info.id
    return {"acme": backup(served), "beta": backup(served, "beta")}


def arguments(op: Operation, tenant: str, world: dict[str, Any]) -> dict[str, Any]:
    """Arguments aimed at ``tenant``: its backup, or its name; a dry run where there is one."""
    args: dict[str, Any] = {"backup_id": world[tenant]} if op.by_backup else {}
    for name, f in op.fields().items():
        if name == "tenant":
            args[name] = tenant
        elif name in ("dry_run",):
            args[name] = True
        elif name == "uploads":
            args[name] = False
        elif f.is_required():
            args[name] = SAMPLE[name]
    return args


def over_rest(served, who: str, op: Operation, args: dict[str, Any]) -> httpx.Response:
    args = dict(args)
    path = op.path.replace("{backup_id}", args.pop("backup_id")) if op.by_backup else op.path
    if op.method == "GET":
        kw = {"params": {k: str(v).lower() if isinstance(v, bool) else v for k, v in args.items()}}
    else:
        kw = {"json": args} if op.params else {}
    return httpx.request(op.method, served.url + path, headers=served.headers(who), timeout=60, **kw)


def over_mcp(served, who: str, op: Operation, args: dict[str, Any]) -> str:
    async def go():
        async with over_http(served, who) as c:
            return await c.call_tool(op.tool, {**args, **({"confirm": True} if op.confirm else {})})

    result = anyio.run(go)
    assert result.is_error, result.structured_content
    return " ".join(c.text for c in result.content)


def over_remote(served, who: str, op: Operation, args: dict[str, Any]) -> errors.DumpsafeError:
    svc = RemoteService(served.url, served.tokens[who])
    try:
        getattr(svc, op.name)(**args)
    except errors.DumpsafeError as e:
        return e
    finally:
        svc.close()
    raise AssertionError(f"remote {op.name} was not refused")


def same_refusal_everywhere(served, who: str, op: Operation, args: dict[str, Any], status: int) -> str:
    r = over_rest(served, who, op, args)
    assert r.status_code == status, (op.name, r.text)
    body = r.json()
    assert over_mcp(served, who, op, args) == f"Error executing tool {op.tool}: {body['error']}: {body['detail']}", op.name
    e = over_remote(served, who, op, args)
    assert (type(e).__name__, e.message) == (r.headers["X-Dumpsafe-Error"], body["detail"]), op.name
    return body["detail"]


def test_every_operation_is_on_every_front(served):
    paths = served.app.openapi()["paths"]

    async def tools():
        async with over_http(served, "read") as c:
            return {t.name: t for t in (await c.list_tools()).tools}

    offered = anyio.run(tools)
    for op in OPERATIONS:
        documented = paths[op.path][op.method.lower()]["responses"]
        assert {str(op.status), *map(str, op.errors)} <= set(documented), op.name
        tool = offered[op.tool]
        assert tool.annotations.destructive_hint is (op.kind == "destructive"), op.name
        assert ("confirm" in tool.input_schema["properties"]) is bool(op.confirm), op.name
        assert callable(getattr(RemoteService(served.url, "x"), op.name)), op.name
    assert {op.tool for op in OPERATIONS} <= set(offered)


@pytest.mark.parametrize("name", NAMES)
def test_a_tenant_token_is_refused_on_another_tenant_on_every_front(served, world, name):
    op = next(o for o in OPERATIONS if o.name == name)
    before = {b.id for b in served.service.list()}
    detail = same_refusal_everywhere(served, "write", op, arguments(op, "beta", world), 404)
    beta_id = world["beta"]
    assert detail == (f"backup {beta_id!r} not found (see 'dumpsafe backup list')" if op.by_backup else "unknown tenant 'beta'")
    assert {b.id for b in served.service.list()} == before  # nothing made, copied or removed


@pytest.mark.parametrize("name", NAMES)
def test_a_token_without_the_scope_is_refused_on_every_front(served, world, name):
    op = next(o for o in OPERATIONS if o.name == name)
    who = "noread" if op.scope == READ else "read"
    detail = same_refusal_everywhere(served, who, op, arguments(op, "acme", world), 403)
    assert f"lacks the {op.scope} scope" in detail


def test_mcp_pins_copies_and_prunes_under_the_rest_rules(served, world):
    """The tools MCP gained from the registry do the real thing, within the token's reach."""
    from test_mcp import error_text, payload

    acme_id = world["acme"]

    async def go():
        out = {}
        async with over_http(served, "write") as c:
            out["pinned"] = payload(await c.call_tool("pin_backup", {"backup_id": acme_id}))
            out["was_pinned"] = served.service.get(acme_id).pinned
            out["unpinned"] = payload(await c.call_tool("unpin_backup", {"backup_id": acme_id}))
            out["foreign_store"] = error_text(await c.call_tool("copy_backup", {"backup_id": acme_id, "to": "offsite"}))
            out["unconfirmed"] = error_text(await c.call_tool("prune_backups", {}))
            out["dry"] = payload(await c.call_tool("prune_backups", {"dry_run": True}))
        async with over_http(served, "admin") as c:
            out["copied"] = payload(await c.call_tool("copy_backup", {"backup_id": acme_id, "to": "offsite"}))
        return out

    before = {b.id for b in served.service.list()}
    out = anyio.run(go)
    assert out["pinned"]["pinned"] is True and out["was_pinned"] is True
    assert out["unpinned"]["pinned"] is False and served.service.get(acme_id).pinned is False
    assert "store 'offsite' is not a store of tenant 'acme'" in out["foreign_store"]
    assert out["unconfirmed"].endswith("refused: refusing to prune without confirm: true (or use dry_run: true)")
    line = [e for e in served.service.audit.entries() if e["action"] == "prune"][-1]
    assert (line["actor"], line["tenant"], line["actor_tenant"], line["outcome"], line["refused"]) == (
        served.token_ids["write"], "acme", "acme", "failed", True)
    assert {d["tenant"] for d in out["dry"]} == {"acme"} and {d["id"] for d in out["dry"]} <= before
    assert {b.id for b in served.service.list()} == before  # a dry run removes nothing
    assert out["copied"]["id"] == acme_id and out["copied"]["store"] == "offsite"
    assert acme_id in {b.id for b in served.service.list("acme", store="offsite")}
