"""Issue 16: a worker fleet on a PostgreSQL job queue (procrastinate).

A real control-plane database (a database in the session cluster), tenants on two real
database servers, and `dumpsafe worker` processes: one scheduled tick, deferred by two
`serve` schedulers, runs each tenant's backup exactly once, never more than
max_parallel_per_server at once per server; a worker killed with -9 mid-backup loses
nothing."""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fleet import Fleet
from waiting import process_state, wait_for

from dumpsafe.devcluster import Cluster
from dumpsafe.scheduler import Scheduler
from dumpsafe.service import BackupService

TENANTS = int(os.environ.get("FLEET_TENANTS", "12"))


@pytest.fixture(scope="module")
def second_server(pg: Cluster) -> Cluster:
    c = Cluster(password=pg.password).init().start()
    yield c
    c.destroy()


@pytest.fixture
def fleet(pg: Cluster, second_server: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    monkeypatch.setenv("FLEET_PGPASSWORD", pg.password)
    queue_db = "q_" + secrets.token_hex(4)
    pg.create_database(queue_db)
    f = Fleet(root=tmp_path, control=pg, servers=[pg, second_server], queue_db=queue_db)
    yield f
    f.stop_workers()
    for server, db in f.tenants.values():
        server.drop_database(db)
    pg.drop_database(queue_db)


class PgDumpSampler:
    """Samples pg_stat_activity on each server: the most databases being dumped at once."""

    def __init__(self, servers: list[Cluster]):
        self.servers = servers
        self.peak = {s.port: 0 for s in servers}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conns = {s.port: s.connect() for s in self.servers}
        try:
            while not self._stop.is_set():
                for port, c in conns.items():
                    n = c.execute("SELECT count(DISTINCT datname) FROM pg_stat_activity WHERE application_name = 'pg_dump' "
                                  "AND state <> 'idle'").fetchone()[0]  # a backup runs 2 pg_dumps of its database
                    self.peak[port] = max(self.peak[port], n)
                self._stop.wait(0.02)
        finally:
            for c in conns.values():
                c.close()

    def __enter__(self) -> "PgDumpSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals that are open at one instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak


def test_one_tick_from_two_schedulers_backs_up_each_tenant_once_within_server_limits(fleet: Fleet):
    fleet.add_tenants(TENANTS, rows=2000)
    fleet.write_config(max_parallel_per_server=2)
    config = fleet.config()
    # two `serve` schedulers (two hosts) plan the same schedule and reach the same tick
    fire = datetime(2030, 1, 2, 3, 0, tzinfo=timezone.utc)
    scheds = [Scheduler(BackupService(config), config) for _ in range(2)]
    for s in scheds:
        s.queue.ensure_schema()
        s.plan(fire - timedelta(seconds=1))
    with PgDumpSampler(fleet.servers) as sampler:
        for s in scheds:
            s.tick(fire)
        for _ in range(3):
            fleet.start_worker(concurrency=2)
        wait_for("the queue to drain", lambda: fleet.unfinished() == 0 and fleet.jobs(), timeout=120)

    queued = [r for s in scheds for r in s.runs if r.outcome == "queued"]
    skipped = [r for s in scheds for r in s.runs if r.outcome == "skipped"]
    assert len(queued) == TENANTS and len(skipped) == TENANTS  # the second scheduler deferred nothing
    jobs = fleet.jobs()
    assert len(jobs) == TENANTS and {j[2] for j in jobs} == {"succeeded"}
    assert sorted(j[3]["tenant"] for j in jobs) == sorted(fleet.tenants)

    svc = BackupService(config)
    records = svc.list()
    assert sorted(r.tenant for r in records) == sorted(fleet.tenants)  # exactly one each, none twice
    for r in records:
        assert svc.verify(r.id).last_verification.result == "passed"

    # never more than max_parallel_per_server dumps at once per server: sampled live, and exactly
    # from the audit lines (each carries the job ID and the worker's host)
    lines = [json.loads(l) for l in (fleet.root / "state" / "audit.jsonl").read_text().splitlines()]
    creates = [l for l in lines if l["action"] == "create" and l["outcome"] == "ok"]
    assert len(creates) == TENANTS
    assert all(isinstance(l.get("job_id"), int) and l.get("worker_host") for l in creates)
    assert sorted(l["job_id"] for l in creates) == [j[0] for j in jobs]
    # each serve host audited its queueing: the first to reach a tenant's fire with the job's ID
    queue_lines = [l for l in lines if l["action"] == "queue"]
    assert len(queue_lines) == 2 * TENANTS
    assert all(l["actor"] == "scheduler" and l["operation"] == "backup" and l["outcome"] == "ok" for l in queue_lines)
    assert sorted(l["job_id"] for l in queue_lines if not l.get("already_queued")) == [j[0] for j in jobs]
    assert sorted(l["tenant"] for l in queue_lines if l.get("already_queued")) == sorted(fleet.tenants)
    by_server: dict[int, list] = {}
    for l in creates:
        start = datetime.fromisoformat(l["time"].replace("Z", "+00:00"))
        port = fleet.tenants[l["tenant"]][0].port
        by_server.setdefault(port, []).append((start, start + timedelta(seconds=l["duration_s"])))
    assert max(_overlap(v) for v in by_server.values()) <= 2, by_server
    assert max(sampler.peak.values()) <= 2 and sum(sampler.peak.values()) >= 2, sampler.peak
    print(f"fleet: {TENANTS} tenants, {len(jobs)} jobs, {len(records)} backups all verified; most dumps at once per "
          f"server: sampled {sorted(sampler.peak.values())}, from audit {sorted(_overlap(v) for v in by_server.values())}; "
          f"hosts {sorted({l['worker_host'] for l in creates})}")  # for bench/FLEET.md (pytest -rA)




def test_a_worker_killed_mid_backup_loses_nothing(fleet: Fleet):
    fleet.add_tenants(1, rows=200)
    fleet.write_config()
    config = fleet.config()
    from dumpsafe.queue import JobQueue

    q = JobQueue(config)
    q.ensure_schema()
    (tenant,) = fleet.tenants
    # the first worker freezes right after the dump object is committed (before the record)
    doomed = fleet.start_worker(concurrency=1, DUMPSAFE_FAILPOINTS="backup.after_dump_commit=stop")
    job = q.defer("backup", tenant, actor="test")
    wait_for("the worker to stop mid-backup", lambda: process_state(doomed.pid) == "T", timeout=60)
    store_dir = fleet.root / "backups"
    assert any(store_dir.rglob("pending/*.json"))  # a live writer's marker and objects, no record
    assert BackupService(config).list() == []
    survivor = fleet.start_worker(concurrency=1)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()

    info = wait_for("the job to finish on the other worker", lambda: (i := q.job(job.id)).finished and i, timeout=60)
    assert info.status == "succeeded" and info.attempts == 2 and len(info.backup_ids) == 1
    assert info.worker.endswith(f"-{survivor.pid}")
    recs = BackupService(config).list()
    assert [r.id for r in recs] == info.backup_ids and recs[0].tenant == tenant
    assert BackupService(config).verify(recs[0].id).last_verification.result == "passed"
    # nothing of the dead attempt stays: no marker, and only the committed backup's objects
    assert not any(store_dir.rglob("pending/*.json"))
    # (history/ is evidence and catalog/ the catalog's change notes: neither belongs to an attempt)
    leftovers = [p for p in store_dir.rglob("*") if p.is_file() and recs[0].id not in str(p)
                 and p.relative_to(store_dir).parts[0] not in ("history", "catalog")]
    assert leftovers == []
    q.close()


def test_transient_failures_retry_with_backoff_permanent_ones_do_not(fleet: Fleet, pg: Cluster):
    from dumpsafe.devcluster import free_port

    fleet.tenants_toml = (
        f'[tenants.down]\nhost = "127.0.0.1"\nport = {free_port()}\nuser = "postgres"\npassword_env = "FLEET_PGPASSWORD"\n'
        'databases = ["app"]\n\n'
        f'[tenants.badcfg]\nhost = "127.0.0.1"\nport = {pg.port}\nuser = "postgres"\npassword_env = "FLEET_UNSET_PW"\n'
        'databases = ["app"]\n'
    )
    fleet.write_config()
    from dumpsafe.queue import JobQueue

    q = JobQueue(fleet.config())
    q.ensure_schema()
    down, bad = q.defer("backup", "down", actor="test"), q.defer("backup", "badcfg", actor="test")
    fleet.start_worker(concurrency=2)
    wait_for("both jobs to end", lambda: q.job(down.id).finished and q.job(bad.id).finished, timeout=90)
    d, b = q.job(down.id), q.job(bad.id)
    assert (d.status, d.attempts) == ("failed", 3)  # database down: retried up to queue_retry_attempts
    assert (b.status, b.attempts) == ("failed", 1)  # bad config: failed at once
    assert "FLEET_UNSET_PW is not set" in b.error and d.error
    q.close()


def test_drill_prune_and_copy_run_as_jobs_too(fleet: Fleet):
    fleet.add_tenants(1, rows=100)
    fleet.extra_toml = "retention = { last = 1 }\ndefault_store = \"local\""
    fleet.tenants_toml = '[stores.second]\nkind = "local"\npath = "second"\n'
    fleet.write_config()
    config = fleet.config()
    from dumpsafe.queue import JobQueue

    (tenant,) = fleet.tenants
    svc = BackupService(config)
    old, new = svc.create(tenant)[0], svc.create(tenant)[0]
    q = JobQueue(config)
    q.ensure_schema()
    fleet.start_worker(concurrency=1)
    drill = q.defer("drill", tenant, actor="test")
    copy = q.defer("copy", tenant, backup_id=new.id, to="second", actor="test")
    prune = q.defer("prune", tenant, actor="test")
    for j in (drill, copy, prune):
        wait_for(f"the {j.kind} job", lambda j=j: q.job(j.id).finished, timeout=90)
    assert [(q.job(j.id).status, q.job(j.id).backup_ids) for j in (drill, copy, prune)] == [
        ("succeeded", [new.id]), ("succeeded", [new.id]), ("succeeded", [old.id])]
    assert svc.get(new.id).last_verification.result == "passed"  # the drill's verdict, on the record
    assert [r.id for r in svc.list(tenant, store="second")] == [new.id]
    assert [r.id for r in svc.list(tenant, store="local")] == [new.id]
    q.close()
