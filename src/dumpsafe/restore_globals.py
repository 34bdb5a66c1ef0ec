"""Roles for a restore with --with-globals: the backup's globals object read (hash-checked) and
parsed, the roles the server lacks created before the restore, and dropped again when the
restore fails before anything owns them (existing roles are never altered; no passwords)."""

from __future__ import annotations

from typing import Any

from dumpsafe import fetch
from dumpsafe.engines import databases as dbs
from dumpsafe.engines import pg_globals, postgres
from dumpsafe.models import BackupRecord


def read_globals(st: Any, record: BackupRecord, identities: list[Any] | None) -> pg_globals.Globals | None:
    """The backup's globals object, hash-checked, parsed (None when the backup has none)."""
    ref = record.object("globals")
    if ref is None:
        return None
    text = fetch.consume(st, record, ref, lambda stream: b"".join(iter(lambda: stream.read(1 << 16), b"")),
                         identities=identities)
    return pg_globals.parse_globals(text.decode("utf-8", "replace"))


def create_roles(target: postgres.PgTarget, database: str, record: BackupRecord,
                 glob: pg_globals.Globals) -> pg_globals.GlobalsResult:
    with dbs.admin(target, database) as s:
        return pg_globals.create_missing_roles(s, glob, dbs.existing_roles(s), record.id)


def drop_roles(target: postgres.PgTarget, database: str, names: list[str]) -> None:
    try:
        with dbs.admin(target, database) as s:
            pg_globals.drop_roles(s, names)
    except Exception:  # cleanup must not mask the real failure
        pass
