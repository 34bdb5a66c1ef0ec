"""The snapshot a backup reads in: an exported REPEATABLE READ snapshot that pg_dump imports,
with the row counts and inventory taken in that same snapshot."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from dumpsafe.engines.inventory import count_tables, snapshot_inventory
from dumpsafe.engines.postgres import PgTarget
from dumpsafe.engines.sqlsession import open_session
from dumpsafe.errors import BackupFailed, SqlFailed


@dataclass
class DumpSnapshot:
    """An open REPEATABLE READ transaction whose snapshot pg_dump imports."""

    snapshot_id: str
    server_version: str
    server_major: int
    count_tables: Callable[[], dict[str, int]]  # exact counts in this same snapshot
    inventory: Callable[[dict[str, int]], dict[str, Any]]  # given count_tables(): the rest of what it holds, same snapshot


@contextmanager
def snapshot(target: PgTarget, dbname: str) -> Iterator[DumpSnapshot]:
    """Export a snapshot through the tenant's SQL session (psycopg directly, or psql through
    the exec channel); the transaction stays open, and is rolled back, around the block."""
    with open_session(target, dbname) as s:
        try:
            s.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snap, version, num = s.rows(
                "SELECT pg_export_snapshot(), current_setting('server_version'), current_setting('server_version_num')::int"
            )[0]
        except SqlFailed as e:
            raise BackupFailed(f"tenant {target.tenant!r}: cannot export a snapshot of database {dbname!r}: {e.message}") from None
        yield DumpSnapshot(snap, version.split()[0], int(num) // 10000, lambda: count_tables(s),
                           lambda tables: snapshot_inventory(s, tables))
