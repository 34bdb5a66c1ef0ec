"""Order that survives clock jumps: listing and retention follow a per-store/tenant/database
sequence that only grows; a clock that went back is warned about. The time source is
injected (no real clock change)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dumpsafe.service import BackupService


class FakeClock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_prune_after_the_clock_went_back_keeps_the_newest_by_sequence(env):
    env.tenant_extra = "retention = { last = 1 }"
    env.write_config()
    clock = FakeClock(datetime.now(timezone.utc))
    svc = BackupService(env.config(), clock=clock)
    first = svc.create("acme")[0]
    clock.now += timedelta(hours=1)
    second = svc.create("acme")[0]
    clock.now -= timedelta(days=1)  # the clock is set back a day
    third = svc.create("acme")[0]

    assert [first.sequence, second.sequence, third.sequence] == [1, 2, 3]
    assert first.clock_behind_s is None and second.clock_behind_s is None
    assert third.clock_behind_s == (second.created_at - third.created_at).total_seconds() > 86000
    assert [r.id for r in svc.list("acme")] == [third.id, second.id, first.id]
    rows = svc.status("acme")
    assert any(third.id in w and "behind" in w for w in rows.warnings), rows.warnings

    decisions = svc.prune("acme")
    assert {d.id: d.keep for d in decisions} == {third.id: True, second.id: False, first.id: False}
    assert [r.id for r in svc.list("acme")] == [third.id]
    assert svc.verify(third.id).last_verification.result == "passed"


def test_status_warns_when_the_clock_is_behind_the_newest_backup(env):
    clock = FakeClock(datetime.now(timezone.utc))
    svc = BackupService(env.config(), clock=clock)
    rec = svc.create("acme")[0]
    assert svc.status("acme").warnings == []
    clock.now -= timedelta(seconds=30)  # within a minute: not worth a warning
    assert svc.status("acme").warnings == []
    clock.now -= timedelta(hours=1)
    warnings = svc.status("acme").warnings
    assert len(warnings) == 1 and rec.id in warnings[0] and "check the system clock" in warnings[0]
    r = env.cli("backup", "list", "--json")  # old records without a sequence still list and order
    assert [x["id"] for x in r.json()] == [rec.id]
