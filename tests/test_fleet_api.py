"""Issue 16: with a queue, POST /v1/backups answers 202 with a job; GET /v1/jobs/{id} shows it
under the tenant rules; the remote CLI follows the job to its records."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fleet import Fleet
from waiting import wait_for
from live import LiveServer

from dumpsafe.devcluster import Cluster


@pytest.fixture
def served_fleet(pg: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from dumpsafe.fronts.api import create_app
    from dumpsafe.auth import READ, SCOPES, TokenStore
    from dumpsafe.service import BackupService

    monkeypatch.setenv("FLEET_PGPASSWORD", pg.password)
    queue_db = "q_" + secrets.token_hex(4)
    pg.create_database(queue_db)
    f = Fleet(root=tmp_path, control=pg, servers=[pg], queue_db=queue_db)
    f.add_tenants(2, rows=100)
    f.write_config()
    service = BackupService(f.config())
    from dumpsafe.queue import queue_for

    queue_for(service.config).ensure_schema()
    store = TokenStore(service.state_dir)
    tokens, ids = {}, {}
    for who, kw in {"t000": dict(tenant="t000", scopes=list(SCOPES)), "t001": dict(tenant="t001", scopes=list(SCOPES)),
                    "read": dict(tenant="t000", scopes=[READ]), "admin": dict(tenant=None, scopes=list(SCOPES))}.items():
        info, tokens[who] = store.create(name=who, **kw)
        ids[who] = info.id
    server = LiveServer(create_app(service, mcp=False)).start()
    try:
        yield f, server.url, tokens, ids
    finally:
        server.stop()
        f.stop_workers()
        queue_for(service.config).close()
        for s, db in f.tenants.values():
            s.drop_database(db)
        pg.drop_database(queue_db)


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_create_answers_202_and_the_job_is_seen_only_by_its_tenant(served_fleet):
    f, url, tok, ids = served_fleet
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/v1/backups", json={"tenant": "t000"}, headers=_h(tok["t000"]))
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] == "todo" and job["tenant"] == "t000" and job["kind"] == "backup"
        assert r.headers["Location"] == f"/v1/jobs/{job['id']}"
        # never two waiting: a second request while it waits answers the same job
        again = http.post("/v1/backups", json={"tenant": "t000"}, headers=_h(tok["t000"]))
        assert again.status_code == 202 and again.json()["id"] == job["id"] and again.json()["already_queued"]
        # another tenant's token: exactly the answer of a job that does not exist; and it may not queue for t000
        other = http.get(f"/v1/jobs/{job['id']}", headers=_h(tok["t001"]))
        missing = http.get("/v1/jobs/987654321", headers=_h(tok["t001"]))
        assert other.status_code == missing.status_code == 404
        assert other.json()["detail"].replace(str(job["id"]), "N") == missing.json()["detail"].replace("987654321", "N")
        assert http.post("/v1/backups", json={"tenant": "t000"}, headers=_h(tok["t001"])).status_code == 404
        assert http.post("/v1/backups", json={"tenant": "t000"}, headers=_h(tok["read"])).status_code == 403
        assert f.jobs() and len(f.jobs()) == 1  # the refused requests queued nothing

        f.start_worker(concurrency=1)
        done = wait_for("the job to succeed",
                        lambda: (j := http.get(f"/v1/jobs/{job['id']}", headers=_h(tok["read"])).json())["status"] == "succeeded" and j,
                        timeout=90)
        assert len(done["backup_ids"]) == 1 and done["worker"] is None  # a tenant token is not shown host names
        admin_view = http.get(f"/v1/jobs/{job['id']}", headers=_h(tok["admin"])).json()
        assert admin_view["worker"]
        rec = http.get(f"/v1/backups/{done['backup_ids'][0]}", headers=_h(tok["t000"]))
        assert rec.status_code == 200 and rec.json()["tenant"] == "t000"

    # the API host audited the queueing (job, operation, tenant, actor), the worker the run (job, host)
    lines = [json.loads(l) for l in (f.root / "state" / "audit.jsonl").read_text().splitlines()]
    queued = [l for l in lines if l["action"] == "queue"]
    assert [(l["job_id"], l["operation"], l["tenant"], l["actor"], l["outcome"]) for l in queued] == [
        (job["id"], "backup", "t000", ids["t000"], "ok"), (job["id"], "backup", "t000", ids["t000"], "ok")]
    assert "already_queued" not in queued[0] and queued[1]["already_queued"] is True
    (created,) = [l for l in lines if l["action"] == "create" and l["outcome"] == "ok"]
    assert created["job_id"] == job["id"] and created["actor"] == ids["t000"]
    assert created["worker_host"] and admin_view["worker"].startswith(created["worker_host"] + "/")


def test_remote_cli_follows_the_queued_job_to_its_records(served_fleet):
    import json

    f, url, tok, _ = served_fleet
    f.start_worker(concurrency=1)
    env = f.env(DUMPSAFE_SERVER=url, DUMPSAFE_TOKEN=tok["t001"])
    env.pop("DUMPSAFE_CONFIG", None)
    p = subprocess.run([sys.executable, "-m", "dumpsafe", "backup", "create", "t001", "--json"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    (rec,) = json.loads(p.stdout)
    assert rec["tenant"] == "t001" and rec["status"] == "completed"


def test_no_wait_prints_the_job_and_wait_follows_it(served_fleet):
    """`backup create --no-wait` against a queueing server prints the job's ID (--json: the
    job) and returns; `--wait` (the default) follows the job and prints its records."""
    import json

    f, url, tok, _ = served_fleet
    env = f.env(DUMPSAFE_SERVER=url, DUMPSAFE_TOKEN=tok["t001"])
    env.pop("DUMPSAFE_CONFIG", None)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dumpsafe", "backup", "create", "t001", *args],
                              capture_output=True, text=True, env=env, timeout=120)

    p = cli("--no-wait")  # no worker runs yet: the job waits
    assert p.returncode == 0, p.stderr
    job_id = int(p.stdout.strip())
    assert f"queued as job {job_id}" in p.stderr
    (job,) = f.jobs()
    assert job[0] == job_id and job[2] == "todo"
    p = cli("--no-wait", "--json")
    assert p.returncode == 0, p.stderr
    again = json.loads(p.stdout)
    assert again["id"] == job_id and again["status"] == "todo" and again["already_queued"] is True

    f.start_worker(concurrency=1)
    p = cli("--wait", "--json")  # answers the waiting job (or a new one once it ran) and follows it
    assert p.returncode == 0, p.stderr
    (rec,) = json.loads(p.stdout)
    assert rec["tenant"] == "t001" and rec["status"] == "completed"
    with httpx.Client(base_url=url, timeout=30) as http:
        done = http.get(f"/v1/jobs/{job_id}", headers=_h(tok["t001"])).json()
    assert done["status"] == "succeeded"
