"""Issue 12, findings 3, 4, 6 (auth part) and 7: /metrics behind a read token and per tenant,
bounded requests, per-address backoff on guessed tokens, strict inputs over REST and MCP."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from tenants import two, two_tenants_config  # noqa: F401  (two: the fixture)
from test_mcp import error_text


# ---- finding 3: /metrics -------------------------------------------------------------------
def test_metrics_need_a_read_token_and_show_only_the_tokens_tenant(two):
    two.backup("acme")
    two.backup("beta")
    assert two.call("none", "GET", "/metrics").status_code == 401
    assert two.call("acme_create", "GET", "/metrics").status_code == 403  # no backups:read
    acme = two.call("acme", "GET", "/metrics").text
    admin = two.call("admin", "GET", "/metrics").text
    assert 'dumpsafe_backups{database="%s",tenant="acme"}' % two.acme_db in acme
    assert "beta" not in acme and "dumpsafe_http_requests" not in acme
    assert 'tenant="beta"' in admin and 'tenant="acme"' in admin and "dumpsafe_http_requests_total" in admin


def test_an_unauthenticated_scrape_only_when_configured(two, tmp_path, monkeypatch):
    from dumpsafe.fronts.api import create_app
    from live import LiveServer

    env = two_tenants_config(tmp_path, two.env.pg, two.acme_db, two.beta_db)
    env.extra_toml = "metrics_unauthenticated = true"
    env.write_config()
    server = LiveServer(create_app(env.service(), mcp=False)).start()
    try:
        text = httpx.get(server.url + "/metrics", timeout=30).text
    finally:
        server.stop()
    assert 'tenant="acme"' in text and 'tenant="beta"' in text


# ---- finding 4: bounds ---------------------------------------------------------------------
def test_a_body_over_one_mib_is_413_before_parsing(two):
    acme_id = two.backup("acme")
    huge = json.dumps({"database": "x" * (2 << 20), "uploads": False})
    r = httpx.post(two.url + f"/v1/backups/{acme_id}/restore", content=huge,
                   headers=two.headers("acme") | {"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and r.json()["error"] == "too_large" and len(r.content) < 200

    def chunks():  # no Content-Length: counted while read
        for _ in range(3):
            yield b"x" * (1 << 20)

    r = httpx.post(two.url + f"/v1/backups/{acme_id}/restore", content=chunks(),
                   headers=two.headers("acme") | {"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413
    # under the limit, a database name over PostgreSQL's 63 bytes is one sentence, not an echo
    r = two.call("acme", "POST", f"/v1/backups/{acme_id}/restore", json={"database": "é" * 32, "uploads": False})
    assert r.status_code == 400 and "63 bytes" in r.json()["detail"] and "é" * 32 not in r.text
    assert max(len(json.dumps(e)) for e in two.audit()) < 4000


def test_string_limits_are_the_same_in_rest_and_mcp(two):
    r = two.call("acme", "POST", "/v1/backups", json={"tenant": "acme", "label": "l" * 201, "uploads": False})
    assert r.status_code == 400 and "label" in r.json()["detail"]

    async def go():
        async with two.mcp("acme") as c:
            label = error_text(await c.call_tool("create_backup", {"tenant": "acme", "label": "l" * 201, "uploads": False}))
            db = error_text(await c.call_tool("list_backups", {"database": "d" * 64}))
            bid = error_text(await c.call_tool("get_backup", {"backup_id": "a" * 301}))
            return label, db, bid

    label, db, bid = anyio.run(go)
    assert "200" in label and "63" in db and "300" in bid


def test_the_audit_route_pages_from_the_end(two):
    for _ in range(3):
        two.backup("acme")
    page = two.call("admin", "GET", "/v1/audit", params={"limit": 2, "offset": 1}).json()
    everything = list(two.service.audit.entries())
    assert page["total"] == len(everything)
    assert page["entries"] == [everything[-2], everything[-3]]


def test_status_keeps_its_failure_counts_without_rereading_the_log(two):
    from dumpsafe.errors import DumpsafeError

    log = two.service.audit
    with pytest.raises(DumpsafeError):
        with log.record("create", "local", tenant="beta", database=two.beta_db):
            raise DumpsafeError("simulated failure")
    row = next(r for r in two.service.status("beta") if r.database == two.beta_db)
    assert row.failures >= 1 and row.last_failure_error == "simulated failure"
    # blank the log in place (same size): a status that re-read it would now count nothing
    size = log.path.stat().st_size
    log.path.write_bytes(b" " * (size - 1) + b"\n")
    again = next(r for r in two.service.status("beta") if r.database == two.beta_db)
    assert (again.failures, again.last_failure_error) == (row.failures, row.last_failure_error)


# ---- findings 6 and 7: authentication failures -----------------------------------------------
def test_guessing_tokens_meets_a_backoff_and_is_audited(two):
    from dumpsafe.fronts.api import create_app
    from dumpsafe.auth import TokenStore
    from dumpsafe.gate import Gate
    from live import LiveServer

    now = [1000.0]
    gate = Gate(TokenStore(two.service.state_dir), two.service.audit, free=3, clock=lambda: now[0])
    server = LiveServer(create_app(two.service, gate=gate)).start()
    wrong = {"Authorization": "Bearer ds_" + two.ids["acme"] + "_" + "A" * 43}
    good = two.headers("acme")
    mcp_init = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    try:
        before = len(two.audit("authenticate"))
        codes = [httpx.get(server.url + "/v1/backups", headers=wrong, timeout=30).status_code for _ in range(10)]
        blocked = httpx.get(server.url + "/v1/backups", headers=good, timeout=30)
        over_mcp = httpx.post(server.url + "/mcp", json=mcp_init, timeout=30,
                              headers=good | {"Accept": "application/json, text/event-stream"})
        now[0] += 301  # past the longest backoff
        after = httpx.get(server.url + "/v1/backups", headers=good, timeout=30)
        missing = [httpx.get(server.url + "/v1/backups", timeout=30).status_code for _ in range(30)]
    finally:
        server.stop()
    assert codes[:3] == [401, 401, 401] and set(codes[4:]) == {429}
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert over_mcp.status_code == 429 and "retry-after" in over_mcp.headers
    assert after.status_code == 200
    assert set(missing) == {401}  # a missing token is not a guess: no backoff
    lines = two.audit("authenticate")[before:]
    # rate-limited: one line per address and kind per minute, whatever the number of attempts
    # (10 guesses and 2 blocked calls in the first minute; 30 calls without a token after it)
    assert [e["reason"] for e in lines] == ["unauthenticated", "rate_limited", "unauthenticated"]
    assert lines[2]["error"].startswith("missing bearer token")
    assert {e["client"] for e in lines} == {"127.0.0.1"} and {e["outcome"] for e in lines} == {"denied"}
    assert lines[0]["token_id"] == two.ids["acme"] and "A" * 43 not in json.dumps(lines)


def test_a_token_in_the_query_string_is_not_a_token(two):
    r = httpx.get(two.url + "/v1/backups", params={"token": two.tokens["acme"], "access_token": two.tokens["acme"]}, timeout=30)
    assert r.status_code == 401


# ---- finding 7: strict inputs ----------------------------------------------------------------
def test_rest_flags_accept_only_json_booleans(two):
    acme_id = two.backup("acme")
    for path, body in ((f"/v1/backups/{acme_id}/restore", {"dry_run": 1, "uploads": False}),
                       (f"/v1/backups/{acme_id}/restore", {"dry_run": "true", "uploads": False}),
                       (f"/v1/backups/{acme_id}/verify", {"drill": 0}),
                       ("/v1/backups", {"tenant": "acme", "uploads": 0})):
        r = two.call("acme", "POST", path, json=body)
        assert r.status_code == 400, (path, body, r.text)
    for flag in ("1", "yes", "on", "t"):
        r = two.call("acme", "GET", f"/v1/backups/{acme_id}/restore-plan", params={"uploads": flag})
        assert r.status_code == 400
    assert two.call("acme", "GET", f"/v1/backups/{acme_id}/restore-plan", params={"uploads": "false"}).status_code == 200


def test_mcp_confirm_accepts_only_true(two):
    acme_id = two.backup("acme")

    async def go():
        out = []
        async with two.mcp("acme") as c:
            for value in ("yes", "on", 1, "1", "t", "true", "True"):
                out.append(error_text(await c.call_tool("delete_backup", {"backup_id": acme_id, "confirm": value})))
            out.append(error_text(await c.call_tool("delete_backup", {"backup_id": acme_id, "confirm": False})))
        return out

    out = anyio.run(go)
    assert all("boolean" in text.lower() for text in out[:-1]), out
    assert "without confirm: true" in out[-1]
    assert two.service.get(acme_id).id == acme_id  # still there
    refused = [e for e in two.audit("delete") if e["backup_id"] == acme_id]
    assert len(refused) == 1 and refused[0]["outcome"] == "failed" and "without confirm" in refused[0]["error"]
    assert refused[0]["tenant"] == "acme" and refused[0]["actor"] == two.ids["acme"]


def test_an_id_with_a_trailing_newline_is_not_an_id(two):
    acme_id = two.backup("acme")
    r = two.call("acme", "GET", f"/v1/backups/{acme_id}%0A")
    assert r.status_code == 400 and "is not a backup ID" in r.json()["detail"]

    async def go():
        async with two.mcp("acme") as c:
            return error_text(await c.call_tool("get_backup", {"backup_id": acme_id + "\n"}))

    assert "is not a backup ID" in anyio.run(go)


# ---- OpenAPI: every status a route answers is documented --------------------------------------
def test_openapi_lists_every_status_each_route_answers(two):
    doc = two.call("none", "GET", "/openapi.json").json()
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    for (method, path), op in ops.items():
        codes = set(op["responses"])
        if path == "/healthz":
            continue
        assert {"400", "401", "413", "429"} <= codes, (method, path, codes)
        assert "Retry-After" in op["responses"]["429"]["headers"]
        if path.startswith("/v1/backups") or path in ("/v1/prune", "/v1/status"):
            assert {"403", "404", "502"} <= codes, (method, path, codes)
    assert {"409", "422"} <= set(ops[("POST", "/v1/backups/{backup_id}/restore")]["responses"])
    assert "403" in ops[("GET", "/metrics")]["responses"]
