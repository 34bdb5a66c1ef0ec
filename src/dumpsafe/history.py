"""History: every verification, drill and backup outcome, appended beside the records.

One small JSON object per event, in the tenant's store, so the evidence survives the
loss of the dumpsafe host (a fresh host pointed at the same store reads it back):

    history/<tenant>/<encoded database or ~tenant>/<UTC time>-<kind>-<outcome>-<rand>.json

The key alone says when, what and how it went, so "the last drill that passed" is one
listing with no reads. Events are never rewritten; deleting a backup (by hand or by
prune) keeps its events: evidence outlives the backup it is about (the report says the
backup is gone). Records are listed under ``records/`` only, so history never shows up
as a backup.

``data`` holds what the event's source produced, as generic JSON (a verification's every
field, e.g. a drill's RTO, the tables compared and each difference), so a richer drill
result flows in unchanged.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer

from dumpsafe.errors import DumpsafeError, ObjectMissing, UsageError
from dumpsafe.models import encode_db, rfc3339, utcnow
from dumpsafe.context import ServiceContext

HISTORY_PREFIX = "history/"
TENANT_LEVEL = "~tenant"  # never an encode_db output: "~" is always followed by two hex digits
Kind = Literal["integrity", "drill", "backup", "scheduled_backup"]
Outcome = Literal["passed", "failed", "error", "ok"]
_KEY_RE = re.compile(
    r"^history/(?P<tenant>[^/]+)/(?P<db>[^/]+)/(?P<ts>\d{8}T\d{6}\.\d{6}Z)-(?P<kind>[a-z_]+)-(?P<outcome>[a-z]+)-[a-z2-7]{6}\.json$"
)
log = logging.getLogger(__name__)


class HistoryEvent(BaseModel):
    """One verification, drill or backup outcome. Append-only: never rewritten."""

    model_config = ConfigDict(extra="allow")

    at: datetime
    kind: Kind
    outcome: Outcome  # passed|failed (a verdict on a backup), error (the attempt could not run), ok (a backup)
    tenant: str
    database: str | None = None
    backup_id: str | None = None
    actor: str = "local"
    duration_s: float | None = None
    rto_s: float | None = None  # drills: measured time to restore
    size_bytes: int | None = None
    detail: str | None = None  # one sentence (the error, for failures)
    backup_ids: list[str] = Field(default_factory=list)  # scheduled runs: the backups they made
    data: dict[str, Any] = Field(default_factory=dict)  # the source's own result, unchanged

    @field_serializer("at")
    def _ser_at(self, v: datetime) -> str:
        return rfc3339(v)


def db_segment(database: str | None) -> str:
    return encode_db(database) if database else TENANT_LEVEL


def tenant_prefix(tenant: str) -> str:
    return f"{HISTORY_PREFIX}{tenant}/"


def event_key(ev: HistoryEvent) -> str:
    ts = ev.at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    rand = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(6))
    return f"{HISTORY_PREFIX}{ev.tenant}/{db_segment(ev.database)}/{ts}-{ev.kind}-{ev.outcome}-{rand}.json"


def parse_key(key: str) -> dict[str, Any] | None:
    """What a history key says without reading it (time, kind, outcome), or None."""
    m = _KEY_RE.match(key)
    if not m:
        return None
    at = datetime.strptime(m.group("ts"), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc)
    return {"tenant": m.group("tenant"), "db": m.group("db"), "at": at, "kind": m.group("kind"), "outcome": m.group("outcome")}


class History:
    """Appends and reads history events through the stores (the Store interface only)."""

    def __init__(self, service: ServiceContext):
        self.svc = service

    def _home(self, tenant: str) -> str | None:
        try:
            return self.svc.config.store_for(tenant)
        except DumpsafeError:
            return None

    def append(self, ev: HistoryEvent, store: str | None = None) -> str | None:
        """Write one event to the tenant's store (or ``store``). Never fails the operation it
        records: a store problem is logged and the event is lost (the audit line remains)."""
        name = store or self._home(ev.tenant)
        if name is None:
            return None
        key = event_key(ev)
        try:
            data = json.dumps(ev.model_dump(mode="json"), sort_keys=True).encode() + b"\n"
            self.svc.store(name).put_bytes(key, data)
            return key
        except Exception as e:  # noqa: BLE001 - evidence writing must not turn a success into a failure
            log.warning("history event %s of %s not written to store %r: %s", ev.kind, ev.tenant, name, type(e).__name__)
            return None

    # ---- what the service appends -------------------------------------------------------
    def backup(self, record: Any, actor: str) -> None:
        self.append(from_backup(record, actor))

    def verification(self, backup_id: str, drill: bool, actor: str, started: datetime, *,
                     record: Any = None, error: DumpsafeError | None = None) -> None:
        """The outcome of a verify/drill: the verdict the record now holds (pass or fail), or,
        for an attempt that could not run, the error. A usage mistake (no key) is neither."""
        if isinstance(error, UsageError):
            return
        try:
            record = record or self.svc.get(backup_id)
        except DumpsafeError:
            return  # deleted meanwhile: the audit line remains
        v = record.last_verification
        if v is not None and v.kind == ("drill" if drill else "integrity") and v.at >= started:
            self.append(from_verification(record, v, actor))
        elif error is not None:
            self.append(verification_error(record, drill, error, actor, (utcnow() - started).total_seconds()))

    def restorable(self, tenant: str | None, records: Iterable[Any]) -> dict[tuple[str, str], datetime]:
        """(tenant, database) -> the newest passed drill in the history, for status."""
        config = self.svc.config
        records = list(records)
        out: dict[tuple[str, str], datetime] = {}
        for t in [tenant] if tenant else sorted(config.tenants):
            tc = config.tenants.get(t)
            if tc is None:
                continue
            passed = self.last_passed_drill(t)
            for db in set(tc.databases or ()) | {r.database for r in records if r.tenant == t}:
                if encode_db(db) in passed:
                    out[(t, db)] = passed[encode_db(db)]
        return out

    # ---- reads ---------------------------------------------------------------------------------
    def _stores(self) -> list[str]:
        return list(self.svc.config.stores)

    def keys(self, tenant: str) -> list[tuple[str, str]]:
        """(store, key) of every event of a tenant (one listing per store), oldest first, deduplicated."""
        prefix = tenant_prefix(tenant)
        seen: dict[str, tuple[str, str]] = {}
        for name in self._stores():
            try:
                for info in self.svc.store(name).list(prefix):
                    base = info.key.rsplit("/", 1)[-1]
                    if parse_key(info.key) and base not in seen:
                        seen[base] = (name, info.key)
            except DumpsafeError as e:
                log.warning("history of %s in store %r not listed: %s", tenant, name, e.message)
        return sorted(seen.values(), key=lambda sk: sk[1].rsplit("/", 1)[-1])

    def last_passed_drill(self, tenant: str) -> dict[str | None, datetime]:
        """Per database: the time of the newest drill that passed (from key names only)."""
        out: dict[str | None, datetime] = {}
        for _, key in self.keys(tenant):
            p = parse_key(key)
            if p and p["kind"] == "drill" and p["outcome"] == "passed":
                out[p["db"]] = max(out.get(p["db"], p["at"]), p["at"])
        return out

    def events(
        self,
        tenant: str,
        *,
        database: str | None = None,
        backup_id: str | None = None,
        since: datetime | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[HistoryEvent]:
        """A tenant's events, oldest first, filtered by database, backup, time and kind."""
        kinds = set(kinds) if kinds else None
        wanted = []
        for name, key in self.keys(tenant):
            p = parse_key(key)
            if p is None or (since is not None and p["at"] < since) or (kinds and p["kind"] not in kinds):
                continue
            if database is not None and p["db"] != db_segment(database):
                continue
            wanted.append((name, key))

        def read(sk: tuple[str, str]) -> HistoryEvent | None:
            try:
                return HistoryEvent.model_validate_json(self.svc.store(sk[0]).get_bytes(sk[1]))
            except (ObjectMissing, ValidationError, DumpsafeError):
                return None

        workers = min(16, max(1, len(wanted)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            out = [e for e in pool.map(read, wanted) if e is not None]
        if backup_id is not None:
            out = [e for e in out if e.backup_id == backup_id]
        return out


# ---- building events from what the service returns ------------------------------------------
def from_verification(record: Any, verification: Any, actor: str) -> HistoryEvent:
    """A verification or drill outcome; ``data`` is the verification's every field, unchanged."""
    data = verification.model_dump(mode="json")
    return HistoryEvent(
        at=verification.at, kind=verification.kind, outcome=verification.result, tenant=record.tenant,
        database=record.database, backup_id=record.id, actor=actor, duration_s=verification.duration_s,
        rto_s=data.get("rto_s"), size_bytes=record.size_bytes, detail=verification.detail, data=data,
    )


def verification_error(record: Any, drill: bool, error: DumpsafeError, actor: str, duration_s: float) -> HistoryEvent:
    """A verification that could not run (store down, no server): no verdict on the backup."""
    return HistoryEvent(
        at=utcnow(), kind="drill" if drill else "integrity", outcome="error", tenant=record.tenant,
        database=record.database, backup_id=record.id, actor=actor, duration_s=round(duration_s, 3), detail=error.message,
    )


def from_backup(record: Any, actor: str) -> HistoryEvent:
    return HistoryEvent(
        at=record.created_at, kind="backup", outcome="ok", tenant=record.tenant, database=record.database,
        backup_id=record.id, actor=actor, duration_s=record.duration_s, size_bytes=record.size_bytes,
        data={"store": record.store, "encryption": record.encryption, "completed_at": rfc3339(record.completed_at)},
    )


def scheduled_run(tenant: str, fire: datetime, started: datetime, *, ok: bool, backup_ids: list[str],
                  detail: str | None, duration_s: float | None) -> HistoryEvent:
    return HistoryEvent(
        at=started, kind="scheduled_backup", outcome="ok" if ok else "failed", tenant=tenant, actor="scheduler",
        backup_ids=backup_ids, detail=detail, duration_s=duration_s, data={"fire": rfc3339(fire)},
    )
