"""Anomaly detection: a dump that shrank suspiciously compared with its recent history.

A backup is anomalous when its size, or any table's row count, fell by more than
``drop`` (0.5 = 50 %) against the median of the last ``window`` backups of the same
tenant/database. A table that the newest earlier backup had and this one lacks counts
as 0 rows: a dropped table is the classic accident. Pure: no I/O, no clock.
"""

from __future__ import annotations

from statistics import median
from typing import Iterable

from dumpsafe.models import BackupRecord

WINDOW = 5


def _fell(value: float, baseline: float, drop: float) -> bool:
    return baseline > 0 and value < baseline * (1 - drop)


def _pct(value: float, baseline: float) -> str:
    return f"{(1 - value / baseline) * 100:.0f} %"


def detect(new: BackupRecord, history: Iterable[BackupRecord], drop: float, window: int = WINDOW) -> list[str]:
    """Sentences describing each drop; empty when the backup looks normal.

    ``history`` may hold any records: only earlier backups of the same tenant/database
    count, and only the ``window`` most recent of those.
    """
    previous = sorted(
        (
            r
            for r in history
            if r.tenant == new.tenant and r.database == new.database and r.id != new.id and r.created_at < new.created_at
        ),
        key=lambda r: r.created_at,
        reverse=True,
    )[:window]
    if not previous:
        return []
    findings: list[str] = []
    size_base = median(r.size_bytes for r in previous)
    if _fell(new.size_bytes, size_base, drop):
        findings.append(
            f"size fell {_pct(new.size_bytes, size_base)}: {new.size_bytes} bytes against a median of {size_base:.0f} over the last {len(previous)} backups"
        )
    # by (schema, table): records before and after quoted keys name the same table differently
    cur, prev = new.tables_by_name(), [r.tables_by_name() for r in previous]
    label = {n: k for r in (previous[0], new) for n, k in zip(r.tables_by_name(), r.tables)}
    for name in sorted(set(cur) | set(prev[0])):
        table = label[name]
        counts = [p[name] for p in prev if name in p]
        if not counts:
            continue
        base = median(counts)
        rows = cur.get(name, 0)
        if _fell(rows, base, drop):
            gone = "" if name in cur else " (table missing from this backup)"
            findings.append(
                f"table {table} fell {_pct(rows, base)}: {rows} rows against a median of {base:.0f}{gone}"
            )
    return findings
