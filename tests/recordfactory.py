"""Shared helpers for tests that need backup records without a database."""

from __future__ import annotations

from datetime import datetime, timezone


from dumpsafe.models import BackupRecord, Verification, new_backup_id


def make_record(
    created_at: datetime | str,
    *,
    tenant: str = "acme",
    database: str = "app",
    store: str = "local",
    pinned: bool = False,
    drill: str | None = None,
    verification_kind: str = "drill",
    size_bytes: int = 1000,
    tables: dict[str, int] | None = None,
) -> BackupRecord:
    if isinstance(created_at, str):
        created_at = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=timezone.utc)
    verification = None
    if drill is not None:
        verification = Verification(at=created_at, result=drill, detail="test", kind=verification_kind)
    return BackupRecord(
        id=new_backup_id(tenant, database, created_at),
        tenant=tenant,
        database=database,
        server_version="16.0",
        created_at=created_at,
        completed_at=created_at,
        store=store,
        location=f"objects/{tenant}/{database}",
        size_bytes=size_bytes,
        sha256="0" * 64,
        tables=tables or {},
        pinned=pinned,
        last_verification=verification,
    )


