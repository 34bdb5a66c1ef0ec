"""History (issue 15): every verification, drill and backup outcome appended beside the
records in the store; kept when the backup is deleted; feeds status and the drill alert."""

from __future__ import annotations

from datetime import timedelta

from dumpsafe.history import HISTORY_PREFIX, parse_key
from dumpsafe.models import utcnow
from dumpsafe.scheduler import Scheduler
from httpreceiver import Receiver


def _history_keys(env) -> list[str]:
    root = env.store_dir / "history"
    return sorted(str(p.relative_to(env.store_dir)) for p in root.rglob("*.json")) if root.exists() else []


def test_backup_verify_drill_are_appended_and_outlive_the_backup(env):
    svc = env.service()
    [rec] = svc.create("acme", uploads=False)
    svc.verify(rec.id)
    svc.verify(rec.id, drill=True)
    keys = _history_keys(env)
    assert len(keys) == 3 and all(k.startswith(HISTORY_PREFIX + "acme/") for k in keys)
    assert [parse_key(k)["kind"] for k in keys] == ["backup", "integrity", "drill"]
    # the records listing never shows history objects
    assert [r.id for r in env.service().list()] == [rec.id]

    events = svc.backup_history(rec.id)
    assert [(e.kind, e.outcome) for e in events] == [("backup", "ok"), ("integrity", "passed"), ("drill", "passed")]
    drill = events[-1]
    # the drill's own result flows in unchanged: RTO, tables compared, server
    assert drill.rto_s > 0 and drill.data["rto_s"] == drill.rto_s and drill.data["tables"] == 3
    assert drill.data["kind"] == "drill" and drill.data["result"] == "passed"

    # status: last verified restorable comes from the history
    [row] = svc.status()
    assert row.last_restorable_at == drill.at and row.last_restorable_age_s is not None

    # CLI: `backup history` and `backup get` show it
    r = env.cli("backup", "history", rec.id, "--json")
    assert r.code == 0, r.err
    assert [e["kind"] for e in r.json()] == ["backup", "integrity", "drill"]
    r = env.cli("backup", "get", rec.id)
    assert r.code == 0 and "drill" in r.out and "passed" in r.out

    # deleting the backup keeps its evidence
    svc.delete(rec.id)
    assert env.service().list() == []
    assert len(svc.backup_history(rec.id)) == 3
    assert svc.status()[0].last_restorable_at == drill.at


def test_failed_verification_is_recorded_with_its_error(env):
    svc = env.service()
    [rec] = svc.create("acme", uploads=False)
    path = env.store_dir / rec.object("database").key
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    assert env.cli("backup", "verify", rec.id, "--drill").code == 1
    ev = svc.backup_history(rec.id)[-1]
    assert (ev.kind, ev.outcome) == ("drill", "failed") and "integrity check failed" in ev.detail
    assert svc.status()[0].last_restorable_at is None


def test_no_passed_drill_within_max_drill_age_alerts_once_and_rearms(env):
    with Receiver() as hook:
        env.write_config(tenant_extra=f'max_drill_age = "1h"\nnotify = ["json://127.0.0.1:{hook.port}/"]')
        svc = env.service()
        [rec] = svc.create("acme", uploads=False)
        now = [utcnow()]
        sched = Scheduler(svc, check_interval=3600, clock=lambda: now[0])
        title = f"dumpsafe: no recent passed restore drill (acme/{env.db})"

        rows = sched.check_max_age()
        assert rows[0].drill_overdue and rows[0].drill_breach == f"acme/{env.db} has no passed restore drill (max_drill_age 1h)"
        sched.check_max_age()
        assert [m["title"] for m in hook.received].count(title) == 1  # once per breach, not once per check

        svc.verify(rec.id, drill=True)
        now[0] = utcnow()
        assert not sched.check_max_age()[0].drill_overdue
        now[0] = utcnow() + timedelta(hours=2)  # the drill is now older than max_drill_age: re-armed, alerts again
        rows = sched.check_max_age()
        assert rows[0].drill_overdue and "last passed restore drill is 2h old" in rows[0].drill_breach
        assert [m["title"] for m in hook.received].count(title) == 2

    r = env.cli("status", "--json")
    assert r.json()[0]["last_restorable_at"] is not None and r.json()[0]["max_drill_age_s"] == 3600


def test_scheduled_runs_are_appended_with_their_outcome_and_reported(env, monkeypatch):
    from dumpsafe.scheduler import Run

    svc = env.service()
    now = utcnow()
    ticks = iter(range(1000))
    sched = Scheduler(svc, check_interval=3600, clock=lambda: now + timedelta(seconds=next(ticks)))  # each read 1s later
    ok = Run("acme", "backup", now)
    sched._execute(ok)  # one run, synchronously: no waiting on the scheduler's loop
    monkeypatch.setenv("ACME_PGPASSWORD", "wrong-password")
    failed = Run("acme", "backup", now + timedelta(minutes=1))  # the next fire (each fire runs once: claims)
    sched._execute(failed)
    assert (ok.outcome, failed.outcome) == ("ok", "failed")

    runs = svc.history.events("acme", kinds=["scheduled_backup"])
    assert [(e.outcome, e.backup_ids, e.actor) for e in runs] == [("ok", ok.backup_ids, "scheduler"), ("failed", [], "scheduler")]
    assert runs[1].detail == failed.detail and "wrong-password" not in runs[1].model_dump_json()
    sched.stop()

    t = svc.report("acme", since="1d", until=now + timedelta(hours=1)).tenants[0]
    assert (t.schedule.scheduled_runs, t.schedule.scheduled_ok, t.schedule.success_rate) == (2, 1, 0.5)
    assert [f.detail for f in t.scheduled_failures] == [failed.detail]
