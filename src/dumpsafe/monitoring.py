"""What operators watch: status rows (with clock warnings) and the anomaly alert raised
after a backup much smaller than the recent ones.

The rules are pure (``status.compute``, ``anomaly.detect``); this module feeds them the
service's records, audit summary and drill history, and sends the alert.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from dumpsafe import anomaly, status as status_mod
from dumpsafe.backup import CLOCK_SLACK
from dumpsafe.listing import RecordList
from dumpsafe.models import BackupRecord
from dumpsafe.status import DatabaseStatus

if TYPE_CHECKING:
    from dumpsafe.service import BackupService

log = logging.getLogger(__name__)


def status(svc: BackupService, tenant: str | None = None, *, now: datetime | None = None) -> list[DatabaseStatus]:
    """Per tenant/database: last success and age, last failure and why, last drill,
    next scheduled run, and whether max_age is breached (absence of success)."""
    records = svc.list(tenant)
    unique = list({r.id: r for r in reversed(records)}.values())  # a copy in another store is the same backup
    now = now or svc.clock()
    # failures come from the audit log's small state file, never from re-reading the log
    rows = RecordList(status_mod.compute(svc.config, unique, svc.audit.failure_summary(tenant), now, tenant,
                                         restorable=svc.history.restorable(tenant, unique)))
    rows.damaged = records.damaged
    rows.warnings = clock_warnings(records, now)
    return rows


def check_anomaly(svc: BackupService, record: BackupRecord) -> list[str]:
    """Compare a fresh backup with the last 5 of its tenant/database; alert on a big drop.

    Never fails the backup it looks at: a listing or delivery problem is only logged.
    """
    from dumpsafe.notify import Event, EventKind, Notifier  # apprise loads only when a backup is checked

    try:
        history = svc.list(record.tenant, record.database, record.store)
        findings = anomaly.detect(record, history, svc.config.anomaly_drop)
        if findings:
            Notifier(svc.config).send(
                Event(
                    EventKind.ANOMALY,
                    record.tenant,
                    record.database,
                    f"backup {record.id} of {record.tenant}/{record.database} is much smaller than the recent ones",
                    backup_id=record.id,
                    details=tuple(findings),
                )
            )
        return findings
    except Exception as e:  # noqa: BLE001 - an alerting problem must not fail a committed backup
        log.warning("anomaly check of %s skipped: %s", record.id, type(e).__name__)
        return []


def clock_warnings(records: list[BackupRecord], now: datetime) -> list[str]:
    """A clock that went back more than a minute: behind the newest backup of a
    tenant/database (by sequence), or behind an earlier backup when that one was made."""
    out: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for r in records:  # newest first within each tenant/database
        key = (r.store, r.tenant, r.database)
        if key in seen:
            continue
        seen.add(key)
        if r.created_at - now > CLOCK_SLACK:
            out.append(f"the clock is {(r.created_at - now).total_seconds():.0f}s behind the newest backup of "
                       f"{r.tenant}/{r.database} ({r.id}); check the system clock")
        elif r.clock_behind_s:
            out.append(f"the clock was {r.clock_behind_s:.0f}s behind when {r.id} of {r.tenant}/{r.database} was made; "
                       "ordering and retention follow the backup sequence")
    return out
