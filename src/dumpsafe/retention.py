"""Retention: which backups a policy keeps, as a pure function of (records, policy, now).

Semantics follow restic/borg ``forget``: records are grouped per (store, tenant, database)
and walked newest first; ``last = N`` keeps the N newest; a calendar rule such as
``daily = N`` keeps the newest record of each of the N most recent days that HAVE a
backup (days without one do not count). ``weekly`` uses ISO weeks. ``within = "2d"``
keeps everything created in the 2 days before ``now``. ``keep_verified = N`` keeps the N
newest records whose last verification is a passed restore drill. Kept = the union of
the rules. On top of the policy, the newest record of each group and every pinned
record are always kept. Records are ordered by their ``sequence`` (which only grows, so
a clock set back cannot make an old backup look newest), then ``created_at``; calendar
buckets and ``within`` use ``created_at`` in UTC, never file times. A copy of a backup in another store is its own group: each store is pruned on
its own and always keeps its own newest backup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Hashable, Iterable

from dumpsafe.config import RetentionPolicy, parse_duration
from dumpsafe.models import BackupRecord, rfc3339

# Calendar rules in the order they are reported; each maps a UTC time to its bucket.
_BUCKETS: dict[str, Callable[[datetime], Hashable]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar())[:2],  # (ISO year, ISO week)
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}

RULES = ("newest", "pinned", "last", *_BUCKETS, "within", "keep_verified")


@dataclass(frozen=True)
class Decision:
    """What the policy does with one backup and why."""

    id: str
    tenant: str
    database: str
    store: str
    created_at: datetime
    keep: bool
    reasons: tuple[str, ...] = field(default=())

    @property
    def action(self) -> str:
        return "keep" if self.keep else "remove"

    def to_json_dict(self) -> dict:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "database": self.database,
            "store": self.store,
            "created_at": rfc3339(self.created_at),
            "action": self.action,
            "reasons": list(self.reasons),
        }


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:  # records are always aware; be safe with hand-made ones
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def drill_passed(record: BackupRecord) -> bool:
    v = record.last_verification
    return v is not None and v.result == "passed" and v.kind == "drill"


def _plan_group(records: list[BackupRecord], policy: RetentionPolicy, now: datetime) -> list[Decision]:
    """One (store, tenant, database) group; ``records`` sorted newest first."""
    reasons: list[list[str]] = [[] for _ in records]
    if records:
        reasons[0].append("newest")
    for i, rec in enumerate(records):
        if rec.pinned:
            reasons[i].append("pinned")
    for i in range(min(policy.last, len(records))):
        reasons[i].append("last")
    for rule, bucket_of in _BUCKETS.items():
        budget = getattr(policy, rule)
        last_bucket: Hashable = None
        for i, rec in enumerate(records):
            if budget <= 0:
                break
            bucket = bucket_of(_utc(rec.created_at))
            if bucket != last_bucket:
                reasons[i].append(rule)
                last_bucket = bucket
                budget -= 1
    within = getattr(policy, "within", None)
    if within:
        cutoff = _utc(now) - parse_duration(within)
        for i, rec in enumerate(records):
            if _utc(rec.created_at) >= cutoff:
                reasons[i].append("within")
    budget = policy.keep_verified
    for i, rec in enumerate(records):
        if budget <= 0:
            break
        if drill_passed(rec):
            reasons[i].append("keep_verified")
            budget -= 1
    return [
        Decision(
            id=rec.id,
            tenant=rec.tenant,
            database=rec.database,
            store=rec.store,
            created_at=_utc(rec.created_at),
            keep=bool(why),
            reasons=tuple(why),
        )
        for rec, why in zip(records, reasons)
    ]


def plan(records: Iterable[BackupRecord], policy: RetentionPolicy, now: datetime) -> list[Decision]:
    """Decide keep/remove for every record. Pure: no I/O, no clock.

    Decisions come back grouped per (store, tenant, database), newest first in each group.
    """
    groups: dict[tuple[str, str, str], list[BackupRecord]] = {}
    for rec in records:
        groups.setdefault((rec.store, rec.tenant, rec.database), []).append(rec)
    out: list[Decision] = []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda r: (r.sequence or 0, _utc(r.created_at), r.id), reverse=True)
        out.extend(_plan_group(group, policy, now))
    return out


def to_remove(decisions: Iterable[Decision]) -> list[Decision]:
    return [d for d in decisions if not d.keep]
