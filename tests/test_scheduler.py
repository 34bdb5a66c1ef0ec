"""The scheduler running REAL backups on seconds-level schedules against the real cluster.

Backups are made slow on purpose by a pg_dump wrapper (sleep, then exec the real
pg_dump) placed in the tenant's pg_bin_dir, so fires come faster than backups finish.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from itertools import combinations
from pathlib import Path

import pytest

from dumpsafe.engines.postgres import find_tool
from dumpsafe.scheduler import Scheduler
from httpreceiver import Receiver


def slow_pg_dump(directory: Path, seconds: float, marker: Path | None = None) -> Path:
    real, _ = find_tool("pg_dump")
    directory.mkdir(parents=True, exist_ok=True)
    touch = f'touch "{marker}"; ' if marker else ""
    script = directory / "pg_dump"
    script.write_text(f'#!/bin/sh\ncase "$1" in --version) ;; *) {touch}sleep {seconds} ;; esac\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return directory


def _intervals(audit: list[dict]) -> list[tuple[datetime, datetime]]:
    out = []
    for e in audit:
        if e["action"] == "create" and e["outcome"] == "ok":
            start = datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
            out.append((start, start + timedelta(seconds=e["duration_s"])))
    return out


def _wait(predicate, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_seconds_schedule_never_overlaps_and_prunes_after_success(env, tmp_path):
    slow = slow_pg_dump(tmp_path / "slowbin", 1.5)
    # every second, seconds FIRST; each backup takes > 1.5 s, so fires collide
    env.write_config(
        tenant_extra=f'schedule = "* * * * * *"\nretention = {{ last = 2 }}\npg_bin_dir = "{slow}"',
        extra_toml='max_parallel = 2\n[scheduler]\ngrace = "1s"',
    )
    svc = env.service()
    sched = Scheduler(svc, check_interval=3600).start()
    try:
        assert _wait(lambda: sum(r.outcome == "ok" for r in sched.runs) >= 3, timeout=60), [
            (r.outcome, r.detail) for r in sched.runs
        ]
    finally:
        sched.stop(graceful=True, timeout=30)

    ok = [r for r in sched.runs if r.outcome == "ok"]
    skipped = [r for r in sched.runs if r.outcome == "skipped"]
    assert len(ok) >= 3
    assert any("still running" in (r.detail or "") for r in skipped), "fires every second must have collided"
    assert all(r.outcome in ("ok", "skipped") for r in sched.runs), [(r.outcome, r.detail) for r in sched.runs]

    # no overlap, shown twice: by the scheduler's own runs and by the audit log of the service
    for a, b in combinations(ok, 2):
        assert a.finished <= b.started or b.finished <= a.started
    audit = list(svc.audit.entries())
    created = _intervals(audit)
    assert len(created) == len(ok)
    for (s1, e1), (s2, e2) in combinations(sorted(created), 2):
        assert e1 <= s2 + timedelta(milliseconds=5)

    # prune after each success: last = 2 leaves the two newest, the rest were deleted by the scheduler
    made = [bid for r in ok for bid in r.backup_ids]
    listed = [r.id for r in svc.list("acme")]
    assert listed == [made[-1], made[-2]]  # runs are sequential, so `made` is oldest first
    deleted = [e["backup_id"] for e in audit if e["action"] == "delete" and e["actor"] == "scheduler"]
    assert sorted(deleted) == sorted(set(made) - set(listed))
    assert [e["outcome"] for e in audit if e["action"] == "prune"] == ["ok"] * len(ok)
    assert ok[0].pruned == [] and ok[2].pruned == [made[0]]


def test_missed_run_within_grace_runs_once_on_start(env):
    # fires on January 1st at 00:00:00 only; today is past that
    env.write_config(
        tenant_extra='schedule = "0 0 0 1 1 *"',
        extra_toml='[scheduler]\ngrace = "1h"',
    )
    now = datetime.now(timezone.utc)
    prev_fire = datetime(now.year, 1, 1, tzinfo=timezone.utc)
    sched = Scheduler(env.service(), check_interval=3600).start()
    sched.stop(graceful=True, timeout=30)
    assert sched.runs == [] or (now - prev_fire) <= timedelta(hours=1)  # outside grace: nothing ran

    env.write_config(tenant_extra='schedule = "0 0 0 1 1 *"', extra_toml='[scheduler]\ngrace = "400d"')
    svc = env.service()
    sched = Scheduler(svc, check_interval=3600).start()
    sched.stop(graceful=True, timeout=60)
    assert [(r.kind, r.outcome, r.fire) for r in sched.runs] == [("backup", "ok", prev_fire)]
    assert len(svc.list("acme")) == 1

    # the run is in the audit log now: a restart does not run it again
    sched = Scheduler(env.service(), check_interval=3600).start()
    sched.stop(graceful=True, timeout=30)
    assert sched.runs == []


def test_failures_and_max_age_breach_are_notified(env, monkeypatch):
    with Receiver() as hook:
        env.write_config(
            tenant_extra=f'schedule = "* * * * * *"\nmax_age = "1h"\nnotify = ["json://127.0.0.1:{hook.port}/"]',
            extra_toml='[scheduler]\ngrace = "1s"',
        )
        monkeypatch.setenv("ACME_PGPASSWORD", "wrong-password")
        sched = Scheduler(env.service(), check_interval=3600).start()
        try:
            assert _wait(lambda: any(r.outcome == "failed" for r in sched.runs), timeout=30)
            assert _wait(lambda: any(m["title"].startswith("dumpsafe: backup failed") for m in hook.received), timeout=10)
        finally:
            sched.stop(graceful=True, timeout=30)
        titles = [m["title"] for m in hook.received]
        # absence of success: no backup at all and max_age set -> one breach alert, not one per check
        assert titles.count(f"dumpsafe: no recent successful backup (acme/{env.db})") == 1
        sched.check_max_age()
        assert [m["title"] for m in hook.received].count(f"dumpsafe: no recent successful backup (acme/{env.db})") == 1
        failed = next(m for m in hook.received if m["title"] == "dumpsafe: backup failed (acme)")
        assert "scheduled backup of tenant acme failed" in failed["message"]
        assert "wrong-password" not in failed["message"]


def test_anomaly_after_a_scheduled_backup_is_notified(env, pg):
    with Receiver() as hook:
        env.write_config(tenant_extra=f'notify = ["json://127.0.0.1:{hook.port}/"]')
        svc = env.service()
        for _ in range(2):
            svc.create("acme")
        with pg.connect(env.db) as c:
            c.execute("TRUNCATE orders CASCADE")
        env.write_config(
            tenant_extra=f'schedule = "* * * * * *"\nnotify = ["json://127.0.0.1:{hook.port}/"]',
            extra_toml='[scheduler]\ngrace = "1s"',
        )
        sched = Scheduler(env.service(), check_interval=3600).start()
        try:
            assert _wait(lambda: any(m["type"] == "warning" for m in hook.received), timeout=30)
        finally:
            sched.stop(graceful=True, timeout=30)
    alert = next(m for m in hook.received if m["type"] == "warning")
    assert alert["title"] == f"dumpsafe: backup anomaly (acme/{env.db})"
    assert "table public.orders fell 100 %: 0 rows against a median of 800" in alert["message"]


def test_sigterm_mid_backup_lets_it_finish_and_takes_no_more_work(env, tmp_path):
    marker = tmp_path / "dump-started"
    slow = slow_pg_dump(tmp_path / "slowbin", 3, marker)
    env.write_config(tenant_extra=f'schedule = "* * * * * *"\npg_bin_dir = "{slow}"', extra_toml='[scheduler]\ngrace = "1s"')
    script = textwrap.dedent(
        """
        import json, sys
        from dumpsafe.config_load import load_config
        from dumpsafe.service import BackupService
        from dumpsafe.scheduler import run_forever
        s = run_forever(BackupService(load_config(sys.argv[1])))
        print(json.dumps([[r.outcome, r.detail, r.backup_ids] for r in s.runs]))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(env.config_path)],
        env=env.subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait(marker.exists, timeout=30), "no backup started"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    runs = json.loads(out.strip().splitlines()[-1])
    ok = [r for r in runs if r[0] == "ok"]
    assert len(ok) == 1, runs  # the running backup finished ...
    assert all(r[0] in ("ok", "skipped") for r in runs), runs
    svc = env.service()
    assert [r.id for r in svc.list("acme")] == ok[0][2]  # ... was committed, and nothing else started
    creates = [e for e in svc.audit.entries() if e["action"] == "create"]
    assert len(creates) == 1 and creates[0]["outcome"] == "ok"
    leftovers = [p for p in env.store_dir.rglob("*") if p.is_file() and ".tmp" in p.name]
    assert leftovers == []


def test_bounded_concurrency_across_tenants(env, tmp_path):
    slow = slow_pg_dump(tmp_path / "slowbin", 1.0)
    tenant = lambda name: (  # noqa: E731
        f'[tenants.{name}]\nhost = "127.0.0.1"\nport = {env.pg.port}\nuser = "postgres"\n'
        f'password_env = "ACME_PGPASSWORD"\ndatabases = ["{env.db}"]\nschedule = "* * * * * *"\npg_bin_dir = "{slow}"\n'
    )
    env.write_config(
        tenant_extra=f'schedule = "* * * * * *"\npg_bin_dir = "{slow}"',
        extra_toml='max_parallel = 2\n[scheduler]\ngrace = "1s"\n' + tenant("beta") + tenant("gamma"),
    )
    svc = env.service()
    sched = Scheduler(svc, check_interval=3600).start()
    try:
        assert _wait(lambda: len({r.tenant for r in sched.runs if r.outcome == "ok"}) == 3, timeout=60)
    finally:
        sched.stop(graceful=True, timeout=60)
    spans = _intervals(list(svc.audit.entries()))
    # at every backup start, at most max_parallel backups were running
    for start, _ in spans:
        running = sum(s <= start + timedelta(milliseconds=5) and start < e for s, e in spans)
        assert running <= 2, spans
    assert max(sum(s <= t < e for s, e in spans) for t, _ in spans) == 2  # and the two slots were used


def test_jitter_delays_within_the_configured_bound(env):
    env.write_config(tenant_extra='schedule = "0 30 2 * * *"', extra_toml='[scheduler]\njitter = "30s"')
    sched = Scheduler(env.service())
    fire = datetime(2026, 1, 1, 2, 30, tzinfo=timezone.utc)
    delays = [(sched._jittered(fire) - fire).total_seconds() for _ in range(200)]
    assert all(0 <= d <= 30 for d in delays) and len(set(delays)) > 100
    sched.stop()


def test_scheduled_drills_record_results_and_alert_on_failure(env):
    with Receiver() as hook:
        env.write_config(tenant_extra=f'notify = ["json://127.0.0.1:{hook.port}/"]')
        (good,) = env.service().create("acme")

        env.write_config(
            tenant_extra=f'drill_schedule = "*/2 * * * * *"\nnotify = ["json://127.0.0.1:{hook.port}/"]',
            extra_toml='[scheduler]\ngrace = "1s"',
        )
        svc = env.service()
        sched = Scheduler(svc, check_interval=3600).start()
        try:
            assert _wait(lambda: any(r.kind == "drill" and r.outcome == "ok" for r in sched.runs), timeout=60), [
                (r.outcome, r.detail) for r in sched.runs
            ]
        finally:
            sched.stop(graceful=True, timeout=60)
        v = svc.get(good.id).last_verification
        assert (v.kind, v.result) == ("drill", "passed")
        (row,) = svc.status("acme")
        assert row.last_drill_result == "passed" and row.last_drill_backup_id == good.id
        assert hook.received == []

        # damage the stored dump: the next drill fails and says so
        dump = next(p for p in (env.store_dir / "objects" / good.id).iterdir() if p.name.startswith("database"))
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))
        sched = Scheduler(svc, check_interval=3600).start()
        try:
            assert _wait(lambda: any(m["title"].startswith("dumpsafe: restore drill failed") for m in hook.received), timeout=60)
        finally:
            sched.stop(graceful=True, timeout=60)
    alert = next(m for m in hook.received if m["title"].startswith("dumpsafe: restore drill failed"))
    assert alert["title"] == f"dumpsafe: restore drill failed (acme/{env.db})"
    assert f"backup: {good.id}" in alert["message"] and "integrity check failed" in alert["message"]
