"""Issue 12, finding 6: every line names its tenant (denials included), lines are hash-chained
and `dumpsafe audit verify` names the first broken line, lines hold bounded excerpts."""

from __future__ import annotations

import json

import anyio

from tenants import two  # noqa: F401  (the fixture)
from test_mcp import error_text

from dumpsafe.audit import AuditLog
from dumpsafe.errors import DumpsafeError


def test_denials_name_the_tenant_they_were_about(two):
    acme_id, beta_id = two.backup("acme"), two.backup("beta")
    start = len(list(two.service.audit.entries()))
    for method, path, body in (("DELETE", f"/v1/backups/{beta_id}", None),
                               ("POST", f"/v1/backups/{beta_id}/verify", {}),
                               ("POST", f"/v1/backups/{beta_id}/pin", None),
                               ("POST", f"/v1/backups/{beta_id}/restore", {"uploads": False}),
                               ("POST", f"/v1/backups/{acme_id}/restore", {"database": two.beta_db, "uploads": False}),
                               ("POST", "/v1/backups", {"tenant": "beta", "uploads": False}),
                               ("POST", "/v1/prune", {"tenant": "beta"})):
        r = two.call("acme", method, path, json=body)
        assert r.status_code in (403, 404), (path, r.text)
    assert two.call("acme_create", "DELETE", f"/v1/backups/{acme_id}").status_code == 403  # missing scope

    async def unconfirmed():
        async with two.mcp("acme") as c:
            return error_text(await c.call_tool("restore_backup", {"backup_id": acme_id, "uploads": False}))

    assert "without confirm" in anyio.run(unconfirmed)
    lines = list(two.service.audit.entries())[start:]
    assert len(lines) == 9 and {e["outcome"] for e in lines} == {"failed"}
    assert all(e["tenant"] for e in lines), [e for e in lines if not e["tenant"]]
    assert [e["tenant"] for e in lines[:4]] == ["beta"] * 4  # the tenant the attempt was against ...
    assert {e["actor_tenant"] for e in lines} == {"acme"}  # ... and the caller's own
    assert lines[-1]["action"] == "restore" and "without confirm" in lines[-1]["error"]


def test_audit_verify_names_the_first_edited_line(env):
    svc = env.service()
    for i in range(5):
        try:
            with svc.audit.record("verify", "local", backup_id=f"acme.app.20260101T00000{i}Z.abcdefgh"):
                if i == 3:
                    raise DumpsafeError("boom")
        except DumpsafeError:
            pass
    ok = env.cli("audit", "verify", "--json")
    assert ok.code == 0 and ok.json()["ok"] is True and ok.json()["lines"] == 5
    path = env.state_dir / "audit.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    edited = json.loads(lines[2])
    edited["outcome"] = "failed"
    lines[2] = (json.dumps(edited, sort_keys=True) + "\n").encode()
    path.write_bytes(b"".join(lines))
    r = env.cli("audit", "verify")
    assert r.code == 1 and "line 3 breaks the hash chain: it does not match its own hash" in r.err
    # re-hashing the edited line does not help: the next line's link to it breaks
    edited["hash"] = __import__("dumpsafe.audit", fromlist=["x"])._self_hash(edited)
    lines[2] = (json.dumps(edited, sort_keys=True) + "\n").encode()
    path.write_bytes(b"".join(lines))
    r = env.cli("audit", "verify")
    assert r.code == 1 and "line 4 breaks the hash chain" in r.err
    del lines[2]
    path.write_bytes(b"".join(lines))
    r = env.cli("audit", "verify")
    assert r.code == 1 and "line 3 breaks the hash chain" in r.err


def test_lines_hold_bounded_excerpts(tmp_path):
    log = AuditLog(tmp_path)
    try:
        with log.record("restore", "tok", backup_id="acme.app.20260101T000000Z.abcdefgh", database="d" * 5_000_000):
            raise DumpsafeError("e" * 5_000_000)
    except DumpsafeError:
        pass
    (line,) = log.entries()
    assert len(json.dumps(line)) < 4000 and line["database"].endswith("(5000000 characters)")
    assert line["tenant"] == "acme" and log.verify().ok


def test_a_refused_request_is_not_a_failure_of_the_tenant_it_named(two):
    before = {(r.database, r.failures) for r in two.service.status("beta")}
    r = two.call("acme", "POST", "/v1/backups", json={"tenant": "beta", "uploads": False})
    assert r.status_code == 404
    line = two.audit("create")[-1]
    assert line["tenant"] == "beta" and line["refused"] is True and line["actor_tenant"] == "acme"
    assert {(r.database, r.failures) for r in two.service.status("beta")} == before


def test_a_refused_create_does_not_stand_for_a_missed_scheduled_run(env):
    """Another tenant's refused 'create acme' must not make the scheduler think acme's
    missed run was attempted (it reads the last attempt from the audit log on start)."""
    import pytest as _pytest

    from dumpsafe.access import GuardedService
    from dumpsafe.auth import SCOPES, Caller
    from dumpsafe.errors import UnknownNameError
    from dumpsafe.scheduler import Scheduler

    env.write_config(tenant_extra='schedule = "0 0 0 1 1 *"', extra_toml='[scheduler]\ngrace = "400d"')
    svc = env.service()
    with _pytest.raises(UnknownNameError):
        GuardedService(svc, Caller(actor="othertoken01", tenant="beta", scopes=frozenset(SCOPES))).create("acme")
    assert list(svc.audit.entries())[-1]["refused"] is True
    sched = Scheduler(svc, check_interval=3600).start()
    sched.stop(graceful=True, timeout=60)
    assert [(r.kind, r.outcome) for r in sched.runs] == [("backup", "ok")]
