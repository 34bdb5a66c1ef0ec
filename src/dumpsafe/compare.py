"""What a restored database must equal: the record's counts (tables, partitioned tables,
materialized views, large objects) and the properties a clean restore cannot change."""

from __future__ import annotations

import os
from typing import Any

from dumpsafe.engines import inventory
from dumpsafe.engines import dbspec
from dumpsafe.engines import toc as tocs
from dumpsafe.engines.postgres import PgTarget
from dumpsafe.engines.sqlsession import open_session
from dumpsafe.models import BackupRecord


def clean_fixed_properties(record: BackupRecord, spec: dbspec.DbSpec | None, live: dict[str, Any], name: str, *,
                           tablespaces: bool = True) -> list[str]:
    """clean restores into the existing database: properties it cannot change must already match."""
    props = record.database_properties or (spec.describe() if spec else None)
    if props is None:
        return []
    keys = ("encoding", "locale_provider", "collate", "ctype", "icu_locale") + (("tablespace",) if tablespaces else ())
    fixed = [k for k in keys if k in props and props[k] != live[k]]
    if not fixed:
        return []
    return [f"database {name!r} differs from the backup in " + ", ".join(f"{k} ({live[k]!r}, backup {props[k]!r})" for k in fixed)
            + "; clean cannot change these in place (restore with --mode atomic)"]


def known_tables(record: BackupRecord) -> set[tuple[str, str]]:
    """(schema, table) of every table the record counts, whatever its key style."""
    return {tocs.split_key(k, record.table_keys == "quoted") for k in record.tables}


def counted_in_parallel(target: PgTarget, dbname: str) -> dict[str, Any]:
    """``check_contents``' keywords to count a staging or scratch database (nobody else writes
    to it) over one session per core, up to 4; over an exec channel (one psql each) in one."""
    if target.exec_prefix:
        return {}
    return {"more": lambda: open_session(target, dbname), "workers": min(4, os.cpu_count() or 1)}


def check_contents(record: BackupRecord, s: Any, *, extra_tables_ok: bool = False,
                   more: inventory.MoreSessions | None = None, workers: int = 1,
                   known: dict[int, int] | None = None) -> tuple[dict[str, int], str]:
    """Count what the record counted, in the restored database: (table counts, '' or what differs).
    ``known``: tables already counted as they were loaded (by OID), not counted again.

    Tables, partitioned parents and large objects must match exactly; materialized views must
    exist and be populated (or not) as recorded: pg_restore refreshes them, it does not restore stale rows."""
    counts = inventory.count_tables(s, quoted=record.table_keys == "quoted", more=more, workers=workers,
                                   known=known)
    if extra_tables_ok:  # clean leaves the target's own tables alone
        counts = {k: v for k, v in counts.items() if k in record.tables}
    via_root = inventory.loaded_via_root(s, quoted=record.table_keys == "quoted")
    parts = [compare_counts(_by_root(record.tables, via_root), _by_root(counts, via_root))]
    if record.partitioned is not None or record.matviews is not None:
        rels = inventory.count_relations(s, counts if record.table_keys == "quoted" and not extra_tables_ok else None)
        if record.partitioned is not None:
            got = rels["partitioned"] if not extra_tables_ok else {k: v for k, v in rels["partitioned"].items() if k in record.partitioned}
            parts.append(compare_counts(record.partitioned, got, what="partitioned table"))
        if record.matviews is not None:
            diffs = [f"{k} (recorded {_populated(record.matviews.get(k, 'absent'))}, restored {_populated(rels['matviews'].get(k, 'absent'))})"
                     for k in sorted(set(record.matviews) | (set() if extra_tables_ok else set(rels["matviews"])))
                     if _populated(record.matviews.get(k, "absent")) != _populated(rels["matviews"].get(k, "absent"))]
            if diffs:
                parts.append("materialized views differ: " + ", ".join(diffs))
    if record.large_objects is not None:
        lo = inventory.large_objects(s)
        want = {"count": record.large_objects.count, "bytes": record.large_objects.bytes}
        if lo != want:
            parts.append(f"large objects differ (recorded {want['count']} / {want['bytes']} bytes, "
                         f"restored {lo['count']} / {lo['bytes']} bytes)")
    return counts, "; ".join(p for p in parts if p)


def _by_root(counts: dict[str, int], via_root: dict[str, str]) -> dict[str, int]:
    """``counts`` with the partitions pg_dump loads through their root summed under
    "ROOT's partitions" (their rows may land in other partitions of it: inventory.loaded_via_root)."""
    if not via_root:
        return counts
    out: dict[str, int] = {}
    for k, n in counts.items():
        group = f"{via_root[k]}'s partitions" if k in via_root else k
        out[group] = out.get(group, 0) + n
    return out


def _populated(v: Any) -> str:
    return "absent" if v == "absent" else ("not populated" if v is None else "populated")


def compare_counts(expected: dict[str, int], actual: dict[str, int | None], what: str = "table") -> str:
    """'' when equal, else a sentence naming every differing table."""
    diffs = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want != got:
            w = "absent" if want is None else f"{want} rows"
            g = "absent" if got is None else f"{got} rows"
            diffs.append(f"{name} (recorded {w}, restored {g})")
    if not diffs:
        return ""
    return f"row counts differ for {len(diffs)} {what}{'s' if len(diffs) > 1 else ''}: " + ", ".join(diffs)
