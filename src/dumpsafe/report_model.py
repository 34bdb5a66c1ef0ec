"""The evidence report's JSON form: stable and documented (docs/report.schema.json is
generated from these models, and a test keeps the two equal).

Additive changes only within a ``schema_version``: new optional keys may appear, no key is
removed or renamed. Times are RFC 3339 UTC, durations in seconds, sizes in bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")  # times serialize as RFC 3339 ("...Z" for UTC)


class Gap(_M):
    """A stretch between two successful backups (or from the last one to the report's end:
    ``open``) longer than ``max_age``."""

    start: datetime
    end: datetime
    seconds: float
    open: bool = False


class Failure(_M):
    at: datetime
    detail: str | None = None
    source: Literal["scheduled_run", "audit"]


class ScheduleEvidence(_M):
    """A tenant's schedule against what actually ran."""

    schedule: str | None = Field(description="the configured cron expression (None: not scheduled)")
    expected_runs: int | None = Field(description="fire times of the schedule inside the window")
    expected_runs_exact: bool = Field(default=True, description="false: more than 2,000 fires, extrapolated from their rate")
    scheduled_runs: int
    scheduled_ok: int
    scheduled_failed: int
    success_rate: float | None = Field(description="scheduled_ok / scheduled_runs (None: no scheduled run)")


class Drill(_M):
    at: datetime
    backup_id: str | None
    outcome: Literal["passed", "failed", "error"]
    rto_s: float | None
    duration_s: float | None
    detail: str | None
    result: dict[str, Any] = Field(default_factory=dict, description="the drill's own result as recorded (what was compared, each difference)")


class RtoStats(_M):
    count: int
    min_s: float | None
    median_s: float | None
    max_s: float | None


class IntegrityEvidence(_M):
    passed: int
    failed: int
    error: int
    last_at: datetime | None
    last_outcome: str | None


class EncryptionEvidence(_M):
    configured: bool = Field(description="the tenant has encrypt_to recipients")
    encrypted: int
    total: int


class BackupEvidence(_M):
    id: str
    created_at: datetime
    size_bytes: int
    duration_s: float | None
    sha256_prefix: str
    encryption: str | None
    stores: list[str] = Field(description="every store that holds this backup")
    off_site: bool = Field(description="at least one copy is in an object store (s3/gcs)")
    meets_3_2_1: bool = Field(description="two or more stores hold it and one is off-site (with the live database: three copies)")
    last_verification: str | None = Field(description="'passed drill', 'failed integrity', ... or None")


class DatabaseReport(_M):
    database: str
    max_age_s: float | None
    max_drill_age_s: float | None
    backups_in_window: int = Field(description="successful backups made inside the window (history and records)")
    last_success_at: datetime | None
    gaps: list[Gap]
    failures: list[Failure]
    drills: list[Drill]
    rto: RtoStats
    last_verified_restorable_at: datetime | None
    integrity: IntegrityEvidence
    encryption: EncryptionEvidence
    backups: list[BackupEvidence] = Field(description="backups that exist now, newest first")
    sizes: list[tuple[datetime, int]] = Field(description="(time, size_bytes) of every backup in the window")
    durations: list[tuple[datetime, float]] = Field(description="(time, seconds) of every backup in the window")


class PruneRun(_M):
    at: datetime
    removed: int | None
    kept: int | None
    outcome: str


class RetentionEvidence(_M):
    policy: dict[str, Any] | None
    prunes: list[PruneRun]


class TenantReport(_M):
    tenant: str
    schedule: ScheduleEvidence
    retention: RetentionEvidence
    scheduled_failures: list[Failure]
    databases: list[DatabaseReport]


class AuditExcerpt(_M):
    chain_ok: bool
    chain: str = Field(description="the result of verifying the audit log's hash chain, in one sentence")
    lines: int
    entries: list[dict[str, Any]] = Field(description="audit lines of the window about the report's tenants, newest first")
    truncated: bool


class Report(_M):
    schema_version: Literal[1] = SCHEMA_VERSION
    generated_at: datetime
    since: datetime
    until: datetime
    tenants: list[TenantReport]
    audit: AuditExcerpt


def json_schema() -> dict[str, Any]:
    return Report.model_json_schema(mode="serialization")
