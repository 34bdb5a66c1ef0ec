"""The backup record (the sidecar JSON committed last beside every backup) and IDs."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_serializer

from dumpsafe.errors import UsageError

RECORD_VERSION = 2  # 2: records carry record_sha256 (a checksum of their own content)

# tenant . encoded-database . UTC second . random: split on "." is unambiguous because
# tenant names cannot contain "." and database names are escaped (see encode_db).
ID_RE = re.compile(
    r"^(?P<tenant>[A-Za-z0-9][A-Za-z0-9_-]{0,62})\.(?P<db>[A-Za-z0-9_~-]{1,200})\."
    r"(?P<ts>\d{8}T\d{6}Z)\.(?P<rand>[a-z2-7]{8})$"
)
_SAFE_DB = re.compile(r"[A-Za-z0-9_-]")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def encode_db(name: str) -> str:
    """Escape a database name into the ID alphabet: bytes outside [A-Za-z0-9_-] become ~XX."""
    out = []
    for ch in name:
        if _SAFE_DB.match(ch):
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def new_backup_id(tenant: str, database: str, when: datetime) -> str:
    rand = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(8))
    return f"{tenant}.{encode_db(database)}.{when.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}.{rand}"


def validate_backup_id(value: str) -> str:
    """Return the ID if well formed, else raise a UsageError (exit 2)."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):  # fullmatch: no trailing newline
        shown = value if isinstance(value, str) and len(value) < 120 else "(value)"
        raise UsageError(
            f"{shown!r} is not a backup ID (IDs look like acme.app.20260101T023000Z.k3j7x2ab; see 'dumpsafe backup list')"
        )
    return value


_QUOTED_KEY = re.compile(r'("(?:[^"]|"")*"|[^".]+)\.("(?:[^"]|"")*"|[^".]+)')


def split_table_key(key: str, quoted: bool) -> tuple[str, str]:
    """A record's table key -> (schema, table). Quoted keys (quote_ident style) split exactly;
    plain keys of older records split at the first dot, as they were written."""
    m = _QUOTED_KEY.fullmatch(key) if quoted else None
    if not m:
        s, _, t = key.partition(".")
        return s, t
    return tuple(p[1:-1].replace('""', '"') if p.startswith('"') else p for p in m.groups())  # type: ignore[return-value]


class ObjectRef(BaseModel):
    """One stored object of a backup: where it is and what its bytes must hash to."""

    model_config = ConfigDict(extra="allow")

    role: Literal["database", "uploads", "globals"]
    key: str
    size_bytes: int
    sha256: str
    raw_bytes: int | None = None  # before compression/encryption


class Verification(BaseModel):
    model_config = ConfigDict(extra="allow")

    at: datetime
    result: Literal["passed", "failed"]
    detail: str
    kind: Literal["integrity", "drill"] = "integrity"
    duration_s: float | None = None

    @field_serializer("at")
    def _ser_at(self, v: datetime) -> str:
        return rfc3339(v)


class UploadsInfo(BaseModel):
    files: int
    bytes: int
    skipped: list[str] = Field(default_factory=list)  # entries that changed type mid-walk (engines/files.py)

    @model_serializer(mode="wrap")
    def _ser(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if not self.skipped:
            data.pop("skipped", None)  # the contract's {"files", "bytes"} unless something was skipped
        return data


class LargeObjectsInfo(BaseModel):
    count: int
    bytes: int


class BackupRecord(BaseModel):
    """The contract record. Required keys are never removed or renamed."""

    model_config = ConfigDict(extra="allow")

    id: str
    tenant: str
    database: str
    engine: Literal["postgres"] = "postgres"
    server_version: str
    status: Literal["completed"] = "completed"
    created_at: datetime
    completed_at: datetime
    store: str
    location: str
    size_bytes: int
    sha256: str
    compression: str = "zstd"
    encryption: Literal["age"] | None = None
    tables: dict[str, int] = Field(default_factory=dict)
    uploads: UploadsInfo | None = None
    last_verification: Verification | None = None
    # additions
    record_version: int = RECORD_VERSION
    format: str = "pg_dump-custom"
    objects: list[ObjectRef] = Field(default_factory=list)
    client_version: str | None = None
    dumpsafe_version: str | None = None
    label: str | None = None
    pinned: bool = False
    duration_s: float | None = None
    copies: list[str] = Field(default_factory=list)
    # what the backup's snapshot held besides table rows (absent in records written before they were kept)
    table_keys: Literal["plain", "quoted"] = "plain"  # "quoted": keys are quote_ident(schema).quote_ident(table)
    partitioned: dict[str, int] | None = None  # partitioned parents: rows through the parent
    matviews: dict[str, int | None] | None = None  # materialized views: rows, null when not populated
    large_objects: LargeObjectsInfo | None = None
    database_properties: dict[str, Any] | None = None  # owner, encoding, locale, tablespace, settings, grants, ...
    schema_sha256: str | None = None  # SHA-256 of the normalized pg_dump --schema-only of the snapshot
    # crash safety (issue 13)
    sequence: int | None = None  # grows per store/tenant/database; orders listing and retention
    clock_behind_s: float | None = None  # the clock was this far behind the newest earlier backup
    repaired: dict[str, Any] | None = None  # set by 'backup repair': from what, and what is unproven
    record_sha256: str | None = None  # SHA-256 of the record's own content (see catalog.encode_record)
    # readable without dumpsafe (issue 19): how each object was written, so a person can undo it by hand
    tools: dict[str, str] | None = None  # pg_dump, zstd and (when encrypted) age versions that wrote the objects
    layout: str | None = None  # one sentence: object = [age](zstd(content)), and what each role's content is

    @field_serializer("created_at", "completed_at")
    def _ser_dt(self, v: datetime) -> str:
        return rfc3339(v)

    def tables_by_name(self) -> dict[tuple[str, str], int]:
        """Row counts keyed by (schema, table), whatever the record's key style."""
        return {split_table_key(k, self.table_keys == "quoted"): n for k, n in self.tables.items()}

    def object(self, role: str) -> ObjectRef | None:
        return next((o for o in self.objects if o.role == role), None)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
