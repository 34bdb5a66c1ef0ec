"""The configuration model: the TOML file users write, as typed and validated sections
(stores, tenants, retention, scheduler, drill servers, fronts).

Finding, reading and resolving the file is ``config_load``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from dumpsafe.errors import ConfigError, UnknownNameError
from dumpsafe.passwords import read_password

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_RESTORE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_*?-]{0,62}$")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """Parse "90s", "30m", "26h", "7d", "2w" into a timedelta."""
    m = _DURATION_RE.match(text)
    if not m:
        raise ValueError(f"expected a duration like 26h, 30m or 7d, got {text!r}")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalStoreConfig(_Strict):
    kind: Literal["local"]
    path: Path


# bucket names as the services accept them (S3 also allows legacy us-east-1 names)
_S3_BUCKET_RE = re.compile(r"^[A-Za-z0-9._-]{3,255}$")
_GCS_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9._~/-]*$")


def _check_prefix(v: str) -> str:
    parts = v.strip("/").split("/")
    if not _PREFIX_RE.match(v) or "//" in v or any(p in (".", "..") for p in parts):
        raise ValueError(f"prefix {v!r} may use letters, digits and . _ ~ - separated by single '/' (e.g. \"pg/\")")
    return v


class _ObjectStoreConfig(_Strict):
    @field_validator("prefix", check_fields=False)
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _check_prefix(v)


class S3StoreConfig(_ObjectStoreConfig):
    kind: Literal["s3"]
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    part_size_mb: int = Field(default=0, ge=0, le=5120)  # 0: chosen from the expected size
    upload_concurrency: int = Field(default=2, ge=1, le=16)  # parts in flight (memory: one part each)
    max_attempts: int = Field(default=5, ge=1, le=20)  # per request, transient errors only
    connect_timeout_s: float = Field(default=10, gt=0)
    read_timeout_s: float = Field(default=60, gt=0)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _S3_BUCKET_RE.match(v):
            raise ValueError(f"{v!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, '.' or '-')")
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"expected a URL like https://s3.example.com or http://127.0.0.1:9000, got {v!r}")
        return v


class GCSStoreConfig(_ObjectStoreConfig):
    kind: Literal["gcs"]
    bucket: str
    prefix: str = ""
    project: str | None = None
    chunk_size_mb: int = Field(default=8, ge=1, le=1024)  # resumable upload chunk (x 256 KiB)
    retry_deadline_s: float = Field(default=120, gt=0)  # transient errors retried until then
    timeout_s: float = Field(default=60, gt=0)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _GCS_BUCKET_RE.match(v):
            raise ValueError(f"{v!r} is not a valid GCS bucket name (3-63 lowercase letters, digits, '.', '_' or '-')")
        return v


StoreConfig = Annotated[
    Union[LocalStoreConfig, S3StoreConfig, GCSStoreConfig], Field(discriminator="kind")
]


class RetentionPolicy(_Strict):
    """Keep rules; kept = union of the rules. See retention.py."""

    last: int = Field(default=0, ge=0)
    hourly: int = Field(default=0, ge=0)
    daily: int = Field(default=0, ge=0)
    weekly: int = Field(default=0, ge=0)
    monthly: int = Field(default=0, ge=0)
    yearly: int = Field(default=0, ge=0)
    keep_verified: int = Field(default=0, ge=0)
    within: str | None = None  # keep everything newer than this duration ("2d")

    @field_validator("within")
    @classmethod
    def _within_duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @model_validator(mode="after")
    def _keeps_something(self) -> "RetentionPolicy":
        if not any((self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly, self.within)):
            raise ValueError("a retention policy that keeps nothing is refused (set last, daily, ... to at least 1)")
        return self


class PgServerConfig(_Strict):
    """How to reach a PostgreSQL server: shared by tenants and drill servers."""

    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    user: str = "postgres"
    password_env: str | None = None
    password_file: Path | None = None
    pg_bin_dir: Path | None = None

    @model_validator(mode="after")
    def _one_password_source(self) -> "PgServerConfig":
        if self.password_env and self.password_file:
            raise ValueError("set password_env or password_file, not both")
        return self


class DrillServerConfig(PgServerConfig):
    """A PostgreSQL server that restore drills run on, so the tenant's own server is not loaded."""


class TenantConfig(PgServerConfig):
    databases: list[str] | None = None
    uploads: Path | None = None
    exec: list[str] | None = None
    store: str | None = None
    copy_to: list[str] = Field(default_factory=list)
    schedule: str | None = None
    drill_schedule: str | None = None
    timezone: str | None = None
    retention: RetentionPolicy | None = None
    max_age: str | None = None
    max_drill_age: str | None = None  # status/alerts: no drill passed within it = overdue (issue 15)
    encrypt_to: list[str] = Field(default_factory=list)
    identity_file: Path | None = None
    include_globals: bool = False
    notify: list[str] = Field(default_factory=list)
    drill_server: str | None = None  # a [drill_servers.NAME]; default: the global drill_server, else this server
    # names (globs) a tenant token may restore into besides the tenant's own databases: see access.py
    restore_names: list[str] = Field(default_factory=list)

    @field_validator("restore_names")
    @classmethod
    def _restore_names(cls, v: list[str]) -> list[str]:
        for pat in v:
            if not _RESTORE_NAME_RE.fullmatch(pat) or len(pat.encode()) > 63:
                raise ValueError(
                    f"{pat!r} is not a restore name pattern (letters, digits, '_', '-' and the wildcards '*' '?', "
                    "starting with at least one letter or digit, e.g. \"app_restored_*\")"
                )
        return v

    @field_validator("max_age", "max_drill_age")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("encrypt_to")
    @classmethod
    def _recipients(cls, v: list[str]) -> list[str]:
        from dumpsafe.crypto import parse_recipient

        for r in v:
            parse_recipient(r)
        return v

    @property
    def max_age_delta(self) -> timedelta | None:
        return parse_duration(self.max_age) if self.max_age else None

    @property
    def max_drill_age_delta(self) -> timedelta | None:
        return parse_duration(self.max_drill_age) if self.max_drill_age else None

    # --- schedules and alerts (issue 5) ---
    @field_validator("schedule", "drill_schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            from dumpsafe.cron import parse_schedule

            parse_schedule(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            from dumpsafe.cron import parse_timezone

            parse_timezone(v)
        return v

    @field_validator("notify")
    @classmethod
    def _notify_urls(cls, v: list[str], info: ValidationInfo) -> list[str]:
        return _check_notify(v, info)

    def parsed_schedule(self, drill: bool = False):
        """The tenant's (drill) schedule as a cron.Schedule in its timezone, or None."""
        from dumpsafe.cron import parse_schedule

        text = self.drill_schedule if drill else self.schedule
        return parse_schedule(text, self.timezone) if text else None


class SchedulerConfig(_Strict):
    """``[scheduler]``: how ``dumpsafe serve`` runs the tenants' schedules."""

    jitter: str | None = None  # random delay before each run, e.g. "30s"
    grace: str = "1h"  # a run missed while down runs once on start if this recent
    prune_after_backup: bool = True

    @field_validator("jitter", "grace")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class Config(_Strict):
    state_dir: Path = Path(".dumpsafe")
    default_store: str | None = None
    pg_bin_dir: Path | None = None
    retention: RetentionPolicy | None = None
    notify: list[str] = Field(default_factory=list)
    anomaly_drop: float = Field(default=0.5, gt=0, le=1)
    max_parallel: int = Field(default=2, ge=1)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    stores: dict[str, StoreConfig] = Field(default_factory=dict)
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    spool_dir: Path | None = None  # where restores spool a dump (default: <state_dir>/spool)
    restore_jobs: int = Field(default=0, ge=0)  # pg_restore --jobs; 0: 1 below 4 cores (streamed), else one per core, at most 4
    drill_server: str | None = None
    drill_servers: dict[str, DrillServerConfig] = Field(default_factory=dict)
    metrics_unauthenticated: bool = False  # serve: /metrics without a token shows every tenant (issue 12)
    # issue 16: a control-plane PostgreSQL job queue (procrastinate); None: everything in-process
    queue: str | None = None  # "postgresql://user@host:5432/dbname", never with a password in it
    queue_password_env: str | None = None
    queue_password_file: Path | None = None
    max_parallel_per_server: int = Field(default=2, ge=1)  # jobs at once per tenant database server
    queue_retry_attempts: int = Field(default=5, ge=1, le=50)  # transient failures (database down, store 5xx)
    queue_retry_wait_s: float = Field(default=10, gt=0)  # first backoff; doubles per attempt
    # where the file was read from; not a TOML key
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("stores", "tenants")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not NAME_RE.fullmatch(name):
                raise ValueError(
                    f"name {name!r} must be 1-63 letters, digits, '_' or '-', starting with a letter or digit"
                )
        return v

    @field_validator("notify")
    @classmethod
    def _notify_urls(cls, v: list[str], info: ValidationInfo) -> list[str]:
        return _check_notify(v, info)

    @field_validator("queue")
    @classmethod
    def _queue_url(cls, v: str | None) -> str | None:
        from dumpsafe.queue_config import check_queue_url

        return None if v is None else check_queue_url(v)

    @model_validator(mode="after")
    def _references(self) -> "Config":
        if self.queue_password_env and self.queue_password_file:
            raise ValueError("set queue_password_env or queue_password_file, not both")
        if self.default_store and self.default_store not in self.stores:
            raise ValueError(f"default_store: no store named {self.default_store!r} (define [stores.{self.default_store}])")
        if self.drill_server and self.drill_server not in self.drill_servers:
            raise ValueError(f"drill_server: no drill server named {self.drill_server!r} (define [drill_servers.{self.drill_server}])")
        for tname, t in self.tenants.items():
            if t.drill_server and t.drill_server not in self.drill_servers:
                raise ValueError(
                    f"tenants.{tname}.drill_server: no drill server named {t.drill_server!r} (define [drill_servers.{t.drill_server}])"
                )
            for ref in ([t.store] if t.store else []) + list(t.copy_to):
                if ref not in self.stores:
                    raise ValueError(f"tenants.{tname}: no store named {ref!r} (define [stores.{ref}])")
            _no_foreign_restore_names(tname, t, self.tenants)
        return self

    # ---- lookups used by the service -------------------------------------------------
    def tenant(self, name: str) -> TenantConfig:
        try:
            return self.tenants[name]
        except KeyError:
            known = ", ".join(sorted(self.tenants)) or "none"
            raise UnknownNameError(f"unknown tenant {name!r} (configured tenants: {known})") from None

    def store_for(self, tenant: str, override: str | None = None) -> str:
        """The store name a tenant's backups go to."""
        name = override or self.tenant(tenant).store or self.default_store
        if name is None:
            if len(self.stores) == 1:
                return next(iter(self.stores))
            raise ConfigError(
                f"tenant {tenant!r} has no store (set tenants.{tenant}.store or default_store, or pass --store)"
            )
        if name not in self.stores:
            raise UnknownNameError(f"unknown store {name!r} (configured stores: {', '.join(sorted(self.stores)) or 'none'})")
        return name

    def retention_for(self, tenant: str) -> RetentionPolicy | None:
        return self.tenant(tenant).retention or self.retention

    def notify_for(self, tenant: str) -> list[str]:
        return list(self.notify) + list(self.tenant(tenant).notify)


def _no_foreign_restore_names(tname: str, t: TenantConfig, tenants: dict[str, TenantConfig]) -> None:
    """A tenant's restore_names must not cover a database another tenant lists (same server or not)."""
    from fnmatch import fnmatchcase

    for other, o in tenants.items():
        for db in (o.databases or []) if other != tname else []:
            hit = next((p for p in t.restore_names if fnmatchcase(db, p)), None)
            if hit:
                raise ValueError(
                    f"tenants.{tname}.restore_names: {hit!r} matches database {db!r} of tenant {other!r} "
                    "(pick a pattern in the tenant's own namespace, e.g. a prefix)"
                )


def tenant_password(name: str, t: TenantConfig) -> str | None:
    """Read the tenant's password from its env var or file. Never echo it."""
    return read_password(f"tenant {name!r}", t.password_env, t.password_file)


def drill_password(name: str, d: DrillServerConfig) -> str | None:
    """Read a drill server's password from its env var or file. Never echo it."""
    return read_password(f"drill server {name!r}", d.password_env, d.password_file)


def _check_notify(urls: list[str], info: ValidationInfo) -> list[str]:
    """apprise checks each URL; commands that never notify (list, get, status) skip loading it (~0.2 s)."""
    if (info.context or {}).get("check_notify", True):
        from dumpsafe.notify import check_urls

        check_urls(urls)
    return urls
