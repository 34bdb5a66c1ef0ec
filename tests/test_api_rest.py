"""The REST front over real HTTP: the token x route matrix, no probing across tenants,
errors as {error, detail}, the audit log, concurrency while a backup runs."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

WHO = ["none", "bad", "expired", "read", "create", "write", "other", "admin"]
GHOST = "acme.nothere.20260101T000000Z.abcdefgh"


def backup(served, tenant: str = "acme") -> str:
    """A fresh committed backup made through the service (actor local)."""
    return served.service.create(tenant, uploads=False)[0].id


def call(served, who: str, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, served.url + path, headers=served.headers(who), timeout=60, **kw)


# expected status per route and caller; "ok" is the route's success status
EXPECT = {
    #          none bad  expired read create write  other admin
    "list":   (401, 401, 401, 200, 200, 200, 200, 200),
    "get":    (401, 401, 401, 200, 200, 200, 404, 200),
    "create": (401, 401, 401, 403, 201, 201, 404, 201),
    "delete": (401, 401, 401, 403, 403, 200, 404, 200),
    "audit":  (401, 401, 401, 403, 403, 403, 403, 200),
}


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("route", list(EXPECT))
def test_route_matrix(served, route, who):
    expected = EXPECT[route][WHO.index(who)]
    acme_id = backup(served) if route in ("get", "delete") else None
    if route == "list":
        r = call(served, who, "GET", "/v1/backups")
    elif route == "get":
        r = call(served, who, "GET", f"/v1/backups/{acme_id}")
    elif route == "create":
        r = call(served, who, "POST", "/v1/backups", json={"tenant": "acme", "uploads": False})
    elif route == "delete":
        r = call(served, who, "DELETE", f"/v1/backups/{acme_id}")
    else:
        r = call(served, who, "GET", "/v1/audit")
    assert r.status_code == expected, r.text
    body = r.json()
    if expected >= 400:
        assert set(body) == {"error", "detail"} and body["detail"]
        if expected == 401:
            assert r.headers["www-authenticate"] == "Bearer"
        return
    # what succeeded really happened, and only within the caller's tenant
    if route == "list":
        tenants = {rec["tenant"] for rec in body}
        assert tenants == ({"acme", "beta"} if who == "admin" else {"beta"} if who == "other" else {"acme"})
        stamps = [rec["created_at"] for rec in body]
        assert stamps == sorted(stamps, reverse=True)
    elif route == "get":
        assert body["id"] == acme_id and body["tables"]["public.orders"] == 200
    elif route == "create":
        assert body[0]["tenant"] == "acme" and served.service.get(body[0]["id"]).id == body[0]["id"]
    elif route == "delete":
        assert body["id"] == acme_id
        assert acme_id not in {rec.id for rec in served.service.list("acme")}
    else:
        assert body["total"] >= len(body["entries"]) > 0
    if route in ("create", "delete"):
        line = next(e for e in reversed(list(served.service.audit.entries())) if e["action"] == route)
        assert line["actor"] == served.token_ids[who] and line["outcome"] == "ok"


def test_other_tenant_backup_is_indistinguishable_from_a_missing_one(served):
    beta_id = backup(served, "beta")
    # the same ID shape, for a backup that does not exist, of the tenant beta
    missing = beta_id.rsplit(".", 1)[0] + ".zzzzzzzz"
    for method, suffix in (("GET", ""), ("DELETE", "")):
        seen = call(served, "write", method, f"/v1/backups/{beta_id}{suffix}")
        absent = call(served, "write", method, f"/v1/backups/{missing}{suffix}")
        assert seen.status_code == absent.status_code == 404
        assert seen.json() == {"error": "not_found", "detail": f"backup {beta_id!r} not found (see 'dumpsafe backup list')"}
        assert absent.json()["detail"] == seen.json()["detail"].replace(beta_id, missing)
        for header in ("content-type", "content-length", "x-dumpsafe-error"):
            assert seen.headers.get(header) == absent.headers.get(header)
    # and the backup is still there: the refused delete changed nothing
    assert served.service.get(beta_id).tenant == "beta"
    # asking for another tenant by name reads like an unknown tenant, without listing real ones
    other = call(served, "write", "GET", "/v1/backups", params={"tenant": "beta"})
    nobody = call(served, "write", "GET", "/v1/backups", params={"tenant": "nobody"})
    assert other.status_code == nobody.status_code == 404
    assert "beta" not in nobody.text and other.json()["detail"] == "unknown tenant 'beta'"
    assert other.headers["x-dumpsafe-error"] == nobody.headers["x-dumpsafe-error"]


def test_refused_writes_are_audited_with_the_actor(served):
    acme_id = backup(served)
    assert call(served, "read", "DELETE", f"/v1/backups/{acme_id}").status_code == 403
    line = list(served.service.audit.entries())[-1]
    assert line["action"] == "delete" and line["outcome"] == "failed" and line["actor"] == served.token_ids["read"]
    assert "backups:delete" in line["error"]


@pytest.mark.parametrize(
    "method,path,body,status",
    [
        ("GET", "/v1/backups/not-an-id", None, 400),
        ("GET", "/v1/backups/..%2F..%2Fetc", None, 404),
        ("DELETE", "/v1/backups/" + "x" * 500, None, 400),
        ("GET", f"/v1/backups/{GHOST}", None, 404),
        ("GET", "/v1/backups/a/b", None, 404),
        ("POST", "/v1/backups", {"tenant": "acme", "store": "../../tmp"}, 400),
        ("POST", "/v1/backups", {"tenant": "acme", "bucket": "x"}, 400),
        ("POST", "/v1/backups", {"tenant": "nobody"}, 404),
        ("POST", "/v1/backups", {"tenant": "acme", "store": "nostore"}, 404),
        ("POST", "/v1/backups", "not json", 400),
        ("POST", "/v1/backups", None, 400),
        ("PUT", "/v1/backups", None, 405),
        ("GET", "/v1/audit?limit=0", None, 400),
    ],
)
def test_bad_input_is_a_clear_4xx(served, method, path, body, status):
    kw = {"content": body} if isinstance(body, str) else {"json": body} if body is not None else {}
    r = call(served, "admin", method, path, **kw)
    assert r.status_code == status, r.text
    err = r.json()
    assert set(err) == {"error", "detail"} and "Traceback" not in err["detail"] and "\n" not in err["detail"]
    if method == "POST" and body is None:
        assert err["detail"] == "a JSON body is required (see /openapi.json)"


def test_audit_is_paged_newest_first(served):
    backup(served)
    full = call(served, "admin", "GET", "/v1/audit", params={"limit": 1000}).json()
    page = call(served, "admin", "GET", "/v1/audit", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == full["total"] and page["entries"] == full["entries"][1:3]
    times = [e["time"] for e in full["entries"]]
    assert times == sorted(times, reverse=True)


def test_health_metrics_openapi(served):
    assert httpx.get(served.url + "/healthz").json()["status"] == "ok"
    call(served, "read", "GET", "/v1/backups")
    assert httpx.get(served.url + "/metrics").status_code == 401  # a read token is needed (issue 12)
    metrics = call(served, "admin", "GET", "/metrics").text
    assert 'dumpsafe_http_requests_total{method="GET",route="/v1/backups",status="200"}' in metrics
    paths = httpx.get(served.url + "/openapi.json").json()["paths"]
    assert {"/v1/backups", "/v1/backups/{backup_id}", "/v1/audit", "/healthz"} <= set(paths)


def test_fifty_lists_answered_while_a_backup_runs(served, monkeypatch):
    """A backup holds a worker thread for seconds; the event loop keeps answering."""
    import dumpsafe.engines.postgres as pgmod

    started, release = threading.Event(), threading.Event()
    real = pgmod.pg_dump_stream

    def slow_dump(*a, **kw):  # the real pg_dump, held open until the lists are done
        started.set()
        release.wait(30)
        return real(*a, **kw)

    monkeypatch.setattr(pgmod, "pg_dump_stream", slow_dump)
    with ThreadPoolExecutor(51) as pool:
        create = pool.submit(call, served, "admin", "POST", "/v1/backups", json={"tenant": "acme", "uploads": False})
        assert started.wait(30)
        t0 = time.monotonic()
        lists = [pool.submit(call, served, "read", "GET", "/v1/backups") for _ in range(50)]
        answers = [f.result(timeout=60) for f in lists]
        elapsed = time.monotonic() - t0
        assert not create.done()  # the lists were answered while the backup was still running
        release.set()
        made = create.result(timeout=60)
    assert [a.status_code for a in answers] == [200] * 50 and elapsed < 30
    assert made.status_code == 201 and made.json()[0]["tenant"] == "acme"


def test_client_disconnect_never_leaves_a_half_done_backup(served, monkeypatch):
    import dumpsafe.engines.postgres as pgmod

    started, release = threading.Event(), threading.Event()
    real = pgmod.pg_dump_stream

    def slow_dump(*a, **kw):
        started.set()
        release.wait(30)
        return real(*a, **kw)

    monkeypatch.setattr(pgmod, "pg_dump_stream", slow_dump)
    before = {r.id for r in served.service.list("acme")}
    def post_and_hang_up():
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(served.url + "/v1/backups", json={"tenant": "acme", "uploads": False},
                       headers=served.headers("admin"), timeout=httpx.Timeout(5, read=0.5))

    post_and_hang_up()
    assert started.wait(30)
    # mid-backup, after the client left: nothing new is listed
    assert {r.id for r in served.service.list("acme")} == before
    release.set()
    deadline = time.monotonic() + 30
    new: set[str] = set()
    while time.monotonic() < deadline and not new:
        new = {r.id for r in served.service.list("acme")} - before
        time.sleep(0.1)
    # the backup finished: it is listed only once complete, with every object it names in the store
    assert len(new) == 1
    rec = served.service.get(new.pop())
    store = served.service.store(rec.store)
    for obj in rec.objects:
        assert store.stat(obj.key).size == obj.size_bytes


def test_long_work_beyond_max_parallel_queues_while_reads_flow(served, monkeypatch):
    import dumpsafe.engines.postgres as pgmod

    limit = served.service.config.max_parallel
    entered, release = threading.Semaphore(0), threading.Event()
    running = []
    real = pgmod.pg_dump_stream

    def slow_dump(*a, **kw):
        running.append(1)
        entered.release()
        release.wait(30)
        return real(*a, **kw)

    monkeypatch.setattr(pgmod, "pg_dump_stream", slow_dump)
    with ThreadPoolExecutor(limit + 1) as pool:
        creates = [pool.submit(call, served, "admin", "POST", "/v1/backups", json={"tenant": "acme", "uploads": False})
                   for _ in range(limit + 1)]
        for _ in range(limit):
            assert entered.acquire(timeout=30)
        assert not entered.acquire(timeout=1.0)  # the one beyond the limit waits its turn
        assert len(running) == limit
        assert call(served, "read", "GET", "/v1/backups").status_code == 200
        release.set()
        assert [f.result(timeout=60).status_code for f in creates] == [201] * (limit + 1)
    assert len(running) == limit + 1
