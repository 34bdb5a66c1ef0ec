"""Status: per tenant/database, is there a recent enough successful backup, and what failed.

A pure function of (config, records, audit events, now) so ``status``, ``/v1/status``,
``/metrics`` and the scheduler's max_age check all agree. Alerting is on the ABSENCE
of success: a tenant with ``max_age`` and no backup at all is in breach.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from dumpsafe.audit import BACKUP_ACTION
from dumpsafe.models import BackupRecord, rfc3339


@dataclass(frozen=True)
class DatabaseStatus:
    tenant: str
    database: str | None  # None: the tenant lists no databases and has no backup yet
    backups: int = 0
    last_success_at: datetime | None = None
    last_success_id: str | None = None
    last_success_age_s: float | None = None
    last_size_bytes: int | None = None
    last_duration_s: float | None = None
    last_failure_at: datetime | None = None
    last_failure_error: str | None = None
    failures: int = 0
    last_drill_at: datetime | None = None
    last_drill_result: str | None = None
    last_drill_rto_s: float | None = None
    last_drill_backup_id: str | None = None
    next_run_at: datetime | None = None
    max_age_s: float | None = None
    breached: bool = False
    breach: str | None = None
    # issue 15: the newest drill that PASSED ("last verified restorable") against max_drill_age
    last_restorable_at: datetime | None = None
    last_restorable_age_s: float | None = None
    max_drill_age_s: float | None = None
    drill_overdue: bool = False
    drill_breach: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {k: rfc3339(v) if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return None


def _failed(event: Mapping[str, Any]) -> bool:
    """A failed backup attempt; a usage mistake (a mistyped database) is not one."""
    if event.get("error_kind") == "usage":
        return False
    return str(event.get("outcome", "")).lower() not in ("success", "ok", "succeeded", "passed")


def compute(
    config,
    records: Iterable[BackupRecord],
    events: Iterable[Mapping[str, Any]],
    now: datetime,
    tenant: str | None = None,
    restorable: Mapping[tuple[str, str], datetime] | None = None,
) -> list[DatabaseStatus]:
    """One row per configured tenant and each database it lists or has backups or failures for.
    ``restorable``: (tenant, database) -> the newest passed drill from the history (issue 15)."""
    recs = [r for r in records if tenant is None or r.tenant == tenant]
    failures: dict[tuple[str, str | None], list[Mapping[str, Any]]] = {}
    for ev in events:
        if ev.get("action") == BACKUP_ACTION and _failed(ev) and (tenant is None or ev.get("tenant") == tenant):
            failures.setdefault((ev.get("tenant"), ev.get("database")), []).append(ev)

    out: list[DatabaseStatus] = []
    names = [tenant] if tenant is not None else sorted(config.tenants)
    for tname in names:
        tcfg = config.tenants.get(tname)
        if tcfg is None:
            continue
        dbs = set(tcfg.databases or ())
        dbs |= {r.database for r in recs if r.tenant == tname}
        dbs |= {db for (t, db) in failures if t == tname and db}
        schedule = tcfg.parsed_schedule()
        next_run = schedule.next_after(now) if schedule else None
        max_age = tcfg.max_age_delta
        for db in sorted(dbs) or [None]:
            mine = [r for r in recs if r.tenant == tname and r.database == db]
            mine.sort(key=lambda r: (r.created_at, r.id), reverse=True)
            fails = sorted(
                failures.get((tname, db), []) + (failures.get((tname, None), []) if db else []),
                key=lambda e: _when(e.get("time")) or datetime.min.replace(tzinfo=timezone.utc),
            )
            row = _row(tname, db, mine, fails, next_run, max_age, now)
            out.append(_restorable(row, mine, (restorable or {}).get((tname, db)), tcfg, now))
    return out


def _restorable(row: DatabaseStatus, mine, from_history: datetime | None, tcfg, now: datetime) -> DatabaseStatus:
    """Fill "last verified restorable" (a passed drill, from history or a record) and max_drill_age."""
    from dataclasses import replace

    seen = [r.last_verification.at for r in mine
            if r.last_verification is not None and r.last_verification.kind == "drill" and r.last_verification.result == "passed"]
    at = max([t for t in [from_history, *seen] if t is not None], default=None)
    upd: dict[str, Any] = {}
    if at is not None:
        upd.update(last_restorable_at=at, last_restorable_age_s=max(0.0, (now - at).total_seconds()))
    limit = getattr(tcfg, "max_drill_age_delta", None)
    if limit is not None and row.database is not None:
        upd["max_drill_age_s"] = limit.total_seconds()
        where = f"{row.tenant}/{row.database}"
        if at is None:
            upd.update(drill_overdue=True, drill_breach=f"{where} has no passed restore drill (max_drill_age {human_duration(limit.total_seconds())})")
        elif now - at > limit:
            upd.update(drill_overdue=True, drill_breach=(
                f"{where}: last passed restore drill is {human_duration((now - at).total_seconds())} old, "
                f"more than max_drill_age {human_duration(limit.total_seconds())}"))
    return replace(row, **upd) if upd else row


def _row(tname, db, mine, fails, next_run, max_age, now) -> DatabaseStatus:
    failures = sum(int(e.get("count", 1)) for e in fails)  # a summary event stands for ``count`` failures
    row: dict[str, Any] = dict(tenant=tname, database=db, backups=len(mine), next_run_at=next_run, failures=failures)
    if mine:
        last = mine[0]
        row.update(
            last_success_at=last.created_at,
            last_success_id=last.id,
            last_success_age_s=max(0.0, (now - last.created_at).total_seconds()),
            last_size_bytes=last.size_bytes,
            last_duration_s=last.duration_s
            if last.duration_s is not None
            else (last.completed_at - last.created_at).total_seconds(),
        )
    if fails:
        row.update(last_failure_at=_when(fails[-1].get("time")), last_failure_error=fails[-1].get("error"))
    drills = [r for r in mine if r.last_verification is not None and r.last_verification.kind == "drill"]
    if drills:
        d = max(drills, key=lambda r: r.last_verification.at)
        v = d.last_verification
        row.update(last_drill_at=v.at, last_drill_result=v.result, last_drill_rto_s=v.duration_s, last_drill_backup_id=d.id)
    if max_age is not None:
        row["max_age_s"] = max_age.total_seconds()
        where = f"{tname}/{db}" if db else tname
        if not mine:
            row.update(breached=True, breach=f"{where} has no successful backup (max_age {human_duration(max_age.total_seconds())})")
        elif now - mine[0].created_at > max_age:
            age = human_duration(row["last_success_age_s"])
            row.update(
                breached=True,
                breach=f"{where}: last successful backup is {age} old, more than max_age {human_duration(max_age.total_seconds())}",
            )
    return DatabaseStatus(**row)


def human_duration(seconds: float) -> str:
    """26h -> "1d 2h", 3900 -> "1h 5m", 45 -> "45s"."""
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{v}{u}" for v, u in ((d, "d"), (h, "h"), (m, "m")) if v]
    return " ".join(parts[:2]) if parts else f"{s}s"


def any_breach(rows: Iterable[DatabaseStatus]) -> bool:
    return any(r.breached for r in rows)
