"""The evidence report: per tenant and database, what an auditor asks for.

Built from the history beside the records (backups, scheduled runs, verifications and
drills: it survives the dumpsafe host), the records that exist now (copies, encryption)
and the audit log (prunes, failures of manual backups, its hash chain). ``build`` is a
function of (service, tenants, since, until), so tests pass a fixed ``until``.
Rendering (HTML, Markdown) lives in report_render.py; the JSON form is report_model.py.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from dumpsafe.config import parse_duration
from dumpsafe.errors import UsageError
from dumpsafe.history import HistoryEvent
from dumpsafe.models import BackupRecord, utcnow
from dumpsafe.report_model import (
    AuditExcerpt, BackupEvidence, DatabaseReport, Drill, EncryptionEvidence, Failure, Gap, IntegrityEvidence,
    PruneRun, Report, RetentionEvidence, RtoStats, ScheduleEvidence, TenantReport,
)
from dumpsafe.context import ServiceContext

MAX_AUDIT_LINES = 500
MAX_EXPECTED = 2_000  # fire times counted one by one per schedule; more are extrapolated
OFF_SITE_KINDS = frozenset({"s3", "gcs"})
MAX_WINDOW = timedelta(days=3653)


def parse_since(text: str | None, until: datetime) -> datetime:
    """'90d', '12h' (a duration back from ``until``) or an RFC 3339 time, within ten years."""
    if not text:
        return until - timedelta(days=90)
    dt = None
    try:
        dt = until - parse_duration(text)
    except (ValueError, OverflowError):  # not a duration (or an absurd one): try a time
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    if dt is None or not until - MAX_WINDOW <= dt <= until:
        raise UsageError(f"--since {text!r} is neither a duration (e.g. 90d, 12h) nor a time (e.g. 2026-01-01T00:00:00Z) "
                         "within the last ten years")
    return dt


def build(service: ServiceContext, tenants: Iterable[str], since: datetime, until: datetime | None = None) -> Report:
    until = until or utcnow()
    names = list(tenants)
    audit_entries = [e for e in service.audit.entries() if _in(e.get("time"), since, until)]
    tenant_reports = [_tenant(service, t, since, until, audit_entries) for t in names]
    return Report(generated_at=utcnow(), since=since, until=until, tenants=tenant_reports,
                  audit=_audit(service, names, audit_entries))


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _in(value: Any, since: datetime, until: datetime) -> bool:
    at = _when(value)
    return at is not None and since <= at <= until


def _tenant(service: ServiceContext, tenant: str, since: datetime, until: datetime, audit: list[dict]) -> TenantReport:
    cfg = service.config.tenant(tenant)
    events = [e for e in service.history.events(tenant, since=since) if e.at <= until]
    records = [r for r in service.list(tenant)]
    runs = [e for e in events if e.kind == "scheduled_backup"]
    ok = sum(e.outcome == "ok" for e in runs)
    expected, exact = _expected_runs(cfg.parsed_schedule(), since, until)
    schedule = ScheduleEvidence(schedule=cfg.schedule, expected_runs=expected, expected_runs_exact=exact,
                                scheduled_runs=len(runs), scheduled_ok=ok,
                                scheduled_failed=len(runs) - ok, success_rate=round(ok / len(runs), 4) if runs else None)
    policy = service.config.retention_for(tenant)
    prunes = [PruneRun(at=_when(e["time"]), removed=e.get("removed") or 0, kept=e.get("kept"), outcome=str(e.get("outcome")))
              for e in audit if e.get("action") == "prune" and e.get("tenant") == tenant]
    retention = RetentionEvidence(policy=policy.model_dump(exclude_defaults=True) if policy else None, prunes=prunes)
    failed_runs = [Failure(at=e.at, detail=e.detail, source="scheduled_run") for e in runs if e.outcome == "failed"]
    dbs = set(cfg.databases or ()) | {r.database for r in records} | {e.database for e in events if e.database}
    return TenantReport(
        tenant=tenant, schedule=schedule, retention=retention, scheduled_failures=failed_runs,
        databases=[_database(service, cfg, tenant, db, [e for e in events if e.database == db],
                             [r for r in records if r.database == db], audit, since, until) for db in sorted(dbs)],
    )


def _expected_runs(sched: Any, since: datetime, until: datetime) -> tuple[int | None, bool]:
    """Fire times of a schedule in the window: counted one by one up to MAX_EXPECTED, then
    extrapolated from the rate so far (a seconds schedule over 90 days is millions of fires)."""
    if sched is None:
        return None, True
    fires = sched.upcoming(since, MAX_EXPECTED)
    inside = [t for t in fires if t <= until]
    if len(inside) < len(fires):
        return len(inside), True
    return round(MAX_EXPECTED * (until - since).total_seconds() / (fires[-1] - since).total_seconds()), False


def _database(service: ServiceContext, cfg: Any, tenant: str, db: str, events: list[HistoryEvent], records: list[BackupRecord],
              audit: list[dict], since: datetime, until: datetime) -> DatabaseReport:
    # successes: history's backup events, plus records made in the window (older than the history)
    made: dict[str, tuple[datetime, int, float | None]] = {}
    for r in records:
        if since <= r.created_at <= until:
            made[r.id] = (r.created_at, r.size_bytes, r.duration_s)
    for e in events:
        if e.kind == "backup" and e.outcome == "ok" and e.backup_id:
            made[e.backup_id] = (e.at, e.size_bytes or 0, e.duration_s)
    series = sorted(made.values())
    times = [t for t, _, _ in series]
    max_age = cfg.max_age_delta
    gaps: list[Gap] = []
    if max_age is not None:
        for a, b in zip(times, times[1:]):
            if b - a > max_age:
                gaps.append(Gap(start=a, end=b, seconds=(b - a).total_seconds()))
        if times and until - times[-1] > max_age:
            gaps.append(Gap(start=times[-1], end=until, seconds=(until - times[-1]).total_seconds(), open=True))
    failures = [Failure(at=_when(e["time"]), detail=e.get("error"), source="audit") for e in audit
                if e.get("action") == "create" and e.get("tenant") == tenant and e.get("database") == db
                and e.get("outcome") != "ok" and not e.get("refused") and e.get("error_kind") != "usage"
                and e.get("actor") != "scheduler"]  # scheduled runs are counted from the history
    drills = [Drill(at=e.at, backup_id=e.backup_id, outcome=e.outcome, rto_s=e.rto_s, duration_s=e.duration_s,
                    detail=e.detail, result=e.data) for e in events if e.kind == "drill"]
    rtos = [d.rto_s if d.rto_s is not None else d.duration_s for d in drills if d.outcome == "passed"]
    rtos = [x for x in rtos if x is not None]
    checks = [e for e in events if e.kind == "integrity"]
    passed = [d.at for d in drills if d.outcome == "passed"]
    passed += [r.last_verification.at for r in records if r.last_verification is not None
               and r.last_verification.kind == "drill" and r.last_verification.result == "passed"]
    stores = service.config.stores
    backups = []
    for r in records:
        held = [r.store, *[c for c in r.copies if c != r.store]]
        off = any(getattr(stores.get(s), "kind", None) in OFF_SITE_KINDS for s in held)
        v = r.last_verification
        backups.append(BackupEvidence(
            id=r.id, created_at=r.created_at, size_bytes=r.size_bytes, duration_s=r.duration_s, sha256_prefix=r.sha256[:12],
            encryption=r.encryption, stores=held, off_site=off, meets_3_2_1=len(held) >= 2 and off,
            last_verification=f"{v.result} {v.kind}" if v else None,
        ))
    drill_age = getattr(cfg, "max_drill_age_delta", None)
    return DatabaseReport(
        database=db,
        max_age_s=max_age.total_seconds() if max_age else None,
        max_drill_age_s=drill_age.total_seconds() if drill_age else None,
        backups_in_window=len(series),
        last_success_at=times[-1] if times else None,
        gaps=gaps,
        failures=failures,
        drills=drills,
        rto=RtoStats(count=len(rtos), min_s=min(rtos) if rtos else None,
                     median_s=statistics.median(rtos) if rtos else None, max_s=max(rtos) if rtos else None),
        last_verified_restorable_at=max(passed) if passed else None,
        integrity=IntegrityEvidence(
            passed=sum(e.outcome == "passed" for e in checks), failed=sum(e.outcome == "failed" for e in checks),
            error=sum(e.outcome == "error" for e in checks),
            last_at=checks[-1].at if checks else None, last_outcome=checks[-1].outcome if checks else None,
        ),
        encryption=EncryptionEvidence(configured=bool(cfg.encrypt_to), encrypted=sum(r.encryption is not None for r in records),
                                      total=len(records)),
        backups=backups,
        sizes=[(t, s) for t, s, _ in series],
        durations=[(t, d) for t, _, d in series if d is not None],
    )


def _audit(service: ServiceContext, tenants: list[str], entries: list[dict]) -> AuditExcerpt:
    chain = service.audit.verify()
    if chain.ok:
        sentence = f"hash chain intact over {chain.lines} lines" + (
            f" ({chain.unchained} older lines before the chain began)" if chain.unchained else "")
    else:
        sentence = f"hash chain BROKEN at line {chain.broken_line}: {chain.reason}"
    wanted = set(tenants)
    mine = [e for e in entries if e.get("tenant") in wanted]
    mine.reverse()
    return AuditExcerpt(chain_ok=chain.ok, chain=sentence, lines=chain.lines, entries=mine[:MAX_AUDIT_LINES],
                        truncated=len(mine) > MAX_AUDIT_LINES)
