"""What a restore is asked and answers: its plan, its result, a dry run's report, and the
options that carry the database's own properties over (the flow itself is restore.py)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

MODES = ("atomic", "clean", "new")


@dataclass
class RestorePlan:
    """What a restore would do, resolved without reading any object (cheap; fronts confirm on it)."""

    backup_id: str
    tenant: str
    database: str
    server: str
    mode: str
    target_exists: bool
    uploads_to: str | None
    uploads_dest_exists: bool
    keep_old: bool

    @property
    def destructive(self) -> bool:
        return (self.mode in ("atomic", "clean") and self.target_exists) or self.uploads_dest_exists

    def describe(self) -> str:
        what = {"atomic": "replace (atomic swap)", "clean": "overwrite in place (--clean)", "new": "create"}[self.mode]
        text = f"{what} database {self.database!r} on {self.server} from backup {self.backup_id}"
        if self.uploads_to:
            text += f", and {'replace' if self.uploads_dest_exists else 'create'} uploads tree {self.uploads_to}"
        return text


@dataclass
class RestoreResult:
    backup_id: str
    tenant: str
    database: str
    server: str
    mode: str
    tables: int
    rows: int
    uploads_to: str | None
    uploads: dict[str, int] | None
    kept_old: str | None
    duration_s: float
    dry_run: bool = False
    globals: dict[str, Any] | None = None  # with --with-globals: roles created, memberships, tablespaces skipped
    sessions_ended: int = 0  # atomic: other sessions on the replaced database, ended at the swap

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Preflight:
    """A dry run's report: everything checked, nothing changed."""

    backup_id: str
    tenant: str
    database: str
    server: str
    mode: str
    target_exists: bool
    integrity: list[dict[str, Any]]
    tables: dict[str, int]
    table_data_entries: int
    tables_without_data: list[str]
    would_drop: list[str]
    would_create: list[str]
    would_replace: list[str]
    would_keep: list[str]
    roles_needed: list[str]
    roles_missing: list[str]
    globals_roles_missing: list[str] | None  # roles the globals object defines that the target lacks (None: no globals)
    extensions_needed: list[str]
    extensions_missing: list[str]
    versions: dict[str, str | None]
    disk: list[dict[str, Any]]
    uploads_to: str | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = True
    database_properties: dict[str, Any] | None = None  # the backup's, as the record (or the archive) says
    property_changes: list[str] = field(default_factory=list)  # atomic: "<property> (before → after)"

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def restore_jobs(configured: int) -> int:
    """pg_restore --jobs: as configured, else one per core (at most 4) from 4 cores on and a
    single streamed job below, which needs no temp disk: on 2 cores plain pg_restore --jobs=2
    took 0.97x of one job on a one-big-table dump and 0.72x on the 9-table benchmark dataset
    (bench/RESULTS.md); restore_jobs = 2 spools the dump to a seekable file for it."""
    if configured:
        return configured
    cores = os.cpu_count() or 1
    return min(4, cores) if cores >= 4 else 1


def streams(configured: int) -> bool:
    """Whether an atomic/new restore streams the dump from the store into one pg_restore
    (no spool) rather than spooling it for ``pg_restore --jobs``."""
    return restore_jobs(configured) == 1


@dataclass(frozen=True)
class DbOptions:
    """How the database's own properties are carried over (--no-owner, --owner ROLE, --no-tablespaces)."""

    no_owner: bool = False
    owner: str | None = None
    no_tablespaces: bool = False

    def restore_args(self) -> tuple[str, ...]:
        args: list[str] = []
        if self.no_owner or self.owner:
            args.append("--no-owner")
        if self.owner:
            args.append(f"--role={self.owner}")
        if self.no_tablespaces:
            args.append("--no-tablespaces")
        return tuple(args)


@dataclass
class SelectiveResult:
    """What a selective restore did (or, with dry_run, would do)."""

    backup_id: str
    tenant: str
    database: str
    server: str
    mode: str  # "new" or "into-schema"
    into_schema: str | None
    tables: dict[str, int]  # record key -> rows (recorded for a dry run, restored otherwise)
    would_create: list[str]
    left_out: list[str]
    duration_s: float
    dry_run: bool = False
    integrity: str = "checked"
    notes: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def destructive(self) -> bool:
        return False  # it only ever creates (a new database, or a new schema beside the live data)

    def describe(self) -> str:
        where = f"schema {self.into_schema!r} of database" if self.into_schema else "new database"
        return f"restore {len(self.tables)} table(s) from backup {self.backup_id} into {where} {self.database!r}"
