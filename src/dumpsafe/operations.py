"""The operations registry: every operation the REST, MCP and remote fronts offer, declared once.

An ``Operation`` names the service method that runs it (through access.GuardedService, which
checks the scope declared here and the tenant rule), its parameters (one pydantic model: the
REST query or body, the MCP tool's arguments, the remote client's keywords), whether a backup
ID names its tenant, and its result: the type on the wire and how the remote client rebuilds
the service's own object from it. api/routes/operations.py, mcp_server.py and remote.py are
generated from ``OPERATIONS``, so the three fronts offer the same operations with the same rules.
Adding a parameter to an operation is one field in its model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from dumpsafe import report_render
from dumpsafe.auth import CREATE, DELETE, READ, RESTORE
from dumpsafe.history import HistoryEvent
from dumpsafe.inputs import DbName, DbNames, Flag, Label, Name
from dumpsafe.models import BackupRecord
from dumpsafe.report_model import Report
from dumpsafe.restore_models import Preflight, RestorePlan, RestoreResult, SelectiveResult
from dumpsafe.retention import Decision
from dumpsafe.status import DatabaseStatus

Mode = Literal["atomic", "clean", "new"]
Kind = Literal["read", "additive", "idempotent", "destructive"]
SinceText = Annotated[str, StringConstraints(min_length=1, max_length=40)]
TableName = Annotated[str, StringConstraints(min_length=1, max_length=300)]
SchemaName = Annotated[str, StringConstraints(min_length=1, max_length=63)]
RoleName = Annotated[str, StringConstraints(min_length=1, max_length=63)]


# ---- parameters (REST: the body, or the query of a GET; MCP: the tool's arguments) ----------
class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListQuery(Params):
    tenant: Name | None = Field(default=None, description="Only this tenant.")
    database: DbName | None = Field(default=None, description="Only this database.")
    store: Name | None = Field(default=None, description="Only this store (a NAME from the config).")


class TenantQuery(Params):
    tenant: Name | None = Field(default=None, description="Only this tenant.")


class ReportQuery(Params):
    tenant: Name | None = Field(default=None, description="Only this tenant.")
    since: SinceText = Field(default="90d", description="A duration back from now (90d, 12h) or an RFC 3339 time.")


class CreateBackup(Params):
    tenant: Name = Field(description="Tenant name from the server's config.")
    databases: DbNames | None = Field(default=None, description="Only these databases (default: the tenant's).")
    store: Name | None = Field(default=None, description="Store NAME from the config (never a path).")
    uploads: Flag = Field(default=True, description="Include the tenant's uploads tree.")
    label: Label | None = Field(default=None, description="Free text kept in the record.")
    pin: Flag = Field(default=False, description="Pin the new backups: prune never removes them.")


class VerifyBody(Params):
    drill: Flag = Field(default=False, description="Also restore into a scratch database and compare row counts.")


class RestoreOptions(Params):
    """What a restore and its plan are asked (a new restore option is one field here)."""

    database: DbName | None = Field(default=None, description="Target database NAME (default: the backup's own); "
                                                              "a tenant token only its tenant's databases or restore_names.")
    mode: Mode | None = Field(default=None, description="atomic (default if the target exists), clean or new.")
    uploads: Flag = Field(default=True, description="Also restore the uploads tree into the tenant's configured path.")
    keep_old: Flag = Field(default=False, description="atomic: keep the replaced database under a new name.")
    with_globals: Flag = Field(default=False, description="First create the roles from the backup's globals object that "
                                                          "the server lacks (never altering existing ones; no passwords).")
    tables: list[TableName] | None = Field(default=None, max_length=1000, description=(
        "Restore only these tables (SCHEMA.TABLE or the record's key), with mode new or into_schema."))
    schemas: list[SchemaName] | None = Field(default=None, max_length=1000, description=(
        "Restore only the tables of these schemas (with mode new or into_schema)."))
    into_schema: SchemaName | None = Field(default=None, description=(
        "Put the selected tables into this NEW schema of the live database (never touches existing objects)."))


class RestoreBody(RestoreOptions):
    dry_run: Flag = Field(default=False, description="Check everything, change nothing; returns the preflight report.")
    no_owner: Flag = Field(default=False, description="The connecting user owns the database and its objects "
                                                      "(the backup's owner roles need not exist).")
    owner: RoleName | None = Field(default=None, description="This role owns the database and its objects instead of "
                                                               "the backup's owners (an admin token only).")
    no_tablespaces: Flag = Field(default=False, description="Put the database and its objects in the server's default "
                                                            "tablespace.")


class PruneBody(Params):
    tenant: Name | None = Field(default=None, description="Only this tenant (default: every visible one).")
    dry_run: Flag = Field(default=False, description="Decide and report; remove nothing.")


class CopyBody(Params):
    to: Name = Field(description="Store NAME from the config to copy into (a tenant token: its tenant's stores).")


# ---- results: the wire type, and the service's own object rebuilt from it ------------------
@dataclass(frozen=True)
class Result:
    wire: Any  # what REST documents as its response model and MCP returns
    dump: Callable[[Any], Any]  # the service's result -> the wire value
    load: Callable[[Any, BaseModel | None], Any]  # the wire JSON (and the parameters) -> the service's result


def plain(obj: Any) -> Any:
    """A result dataclass as JSON: all of its fields, then its to_json_dict() (what `--json` prints)."""
    return {**dataclasses.asdict(obj), **obj.to_json_dict()}


def plan_json(plan: RestorePlan | SelectiveResult) -> dict[str, Any]:
    return {**dataclasses.asdict(plan), "destructive": plan.destructive, "description": plan.describe()}


def _selective(p: BaseModel | None) -> bool:
    return bool(p is not None and (getattr(p, "tables", None) or getattr(p, "schemas", None)
                                   or getattr(p, "into_schema", None) is not None))


def _rebuild(cls: type) -> Callable[[Any], Any]:
    """A result dataclass from its JSON (unknown keys, such as derived ones, ignored)."""
    adapter = TypeAdapter(cls)
    return adapter.validate_python


RECORD = Result(BackupRecord, lambda r: r, lambda d, p: BackupRecord.model_validate(d))
RECORDS = Result(list[BackupRecord], lambda rs: rs, lambda d, p: [BackupRecord.model_validate(r) for r in d])
PLAN = Result(dict[str, Any], plan_json, lambda d, p: _rebuild(SelectiveResult if _selective(p) else RestorePlan)(d))
RESTORED = Result(dict[str, Any], plain, lambda d, p: _rebuild(
    SelectiveResult if _selective(p) else Preflight if getattr(p, "dry_run", False) else RestoreResult)(d))
DECISIONS = Result(list[dict[str, Any]], lambda ds: [plain(d) for d in ds], lambda d, p: [_rebuild(Decision)(x) for x in d])
STATUS = Result(list[dict[str, Any]], lambda rs: [plain(r) for r in rs], lambda d, p: [_rebuild(DatabaseStatus)(x) for x in d])
HISTORY = Result(list[dict[str, Any]], lambda es: es, lambda d, p: [HistoryEvent.model_validate(e) for e in d])
REPORT = Result(Report, lambda r: r, lambda d, p: Report.model_validate(d))


# ---- the operation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    name: str  # the method of BackupService, GuardedService and RemoteService
    tool: str  # the MCP tool's name (and the REST endpoint's function name)
    summary: str  # REST summary
    doc: str  # MCP tool description
    scope: str  # checked by access.GuardedService (access.scope_of)
    by_backup: bool  # tenant rule: the backup ID names the tenant (else the `tenant` parameter, None: every visible one)
    method: str
    path: str
    params: type[BaseModel] | None
    result: Result
    kind: Kind = "read"
    status: int = 200
    errors: tuple[int, ...] = (403, 404, 502)
    long: bool = False  # runs in a worker thread under the long-work limit
    wait: bool = False  # the remote client waits for the answer without a read timeout (long work always does)
    body_optional: bool = True  # REST: a POST's body may be left out
    positional: tuple[str, ...] = ()  # the remote client's positional arguments after the backup ID
    confirm: str | None = None  # MCP: refused without confirm=true, with this sentence ({backup_id})
    unless: str | None = None  # ... except when this flag parameter is true (a dry run)
    queued: bool = False  # REST: with a queue configured, answered 202 with a job
    tag: str = "backups"
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)
    formats: dict[str, tuple[str, Callable[[Any], str]]] = field(default_factory=dict)  # REST: ?format= renderings

    def fields(self) -> dict[str, Any]:
        return dict(self.params.model_fields) if self.params else {}


_QUEUED = {202: {"description": "Queued (a queue is configured): the job; follow it at /v1/jobs/{id}"}}
_BY_ID = "/v1/backups/{backup_id}"

OPERATIONS: tuple[Operation, ...] = (
    Operation("create", "create_backup", "Back up a tenant's databases",
              "Back up a tenant's databases (one backup each, uploads with the first); returns the records.",
              CREATE, False, "POST", "/v1/backups", CreateBackup, RECORDS, kind="additive", status=201,
              errors=(403, 404, 409, 502), long=True, body_optional=False, positional=("tenant",), queued=True,
              responses=_QUEUED),
    Operation("list", "list_backups", "List backups, newest first", "List backups, newest first.",
              READ, False, "GET", "/v1/backups", ListQuery, RECORDS, positional=("tenant", "database", "store")),
    Operation("get", "get_backup", "One backup's record",
              "One backup's record: size, checksum, table row counts, last verification.",
              READ, True, "GET", _BY_ID, None, RECORD),
    Operation("delete", "delete_backup", "Delete a backup (record first, then objects)",
              "Delete a backup for good (its record first, then its objects); returns the deleted record.",
              DELETE, True, "DELETE", _BY_ID, None, RECORD, kind="destructive", errors=(403, 404, 409, 502),
              confirm="refusing to delete {backup_id} without confirm: true"),
    Operation("verify", "verify_backup", "Check integrity (and with drill, restore-test)",
              "Check a backup's checksums (and with drill, prove it restores); returns the updated record.",
              CREATE, True, "POST", _BY_ID + "/verify", VerifyBody, RECORD, kind="idempotent",
              errors=(403, 404, 409, 422, 502), long=True),
    Operation("restore_plan", "restore_plan", "What a restore would do (cheap)",
              "What a restore would do (mode, target, whether it replaces anything), without changing anything.",
              RESTORE, True, "GET", _BY_ID + "/restore-plan", RestoreOptions, PLAN, errors=(403, 404, 409, 502)),
    Operation("restore", "restore_backup", "Restore a backup (integrity first, atomic)",
              "Restore a backup: integrity checked first, then atomically; dry_run reports without changing anything.",
              RESTORE, True, "POST", _BY_ID + "/restore", RestoreBody, RESTORED, kind="destructive",
              errors=(403, 404, 409, 422, 502), long=True,
              confirm="refusing to restore {backup_id} without confirm: true (or use dry_run: true)", unless="dry_run"),
    Operation("prune", "prune_backups", "Apply retention policies (one decision per backup)",
              "Apply the retention policies: one keep/remove decision per backup; dry_run removes nothing.",
              DELETE, False, "POST", "/v1/prune", PruneBody, DECISIONS, kind="destructive", long=True,
              positional=("tenant",), confirm="refusing to prune without confirm: true (or use dry_run: true)",
              unless="dry_run", tag="retention"),
    Operation("status", "backup_status", "Per tenant/database: last success, age, breach",
              "Per tenant/database: last success and its age, last failure, last drill, max_age breach.",
              READ, False, "GET", "/v1/status", TenantQuery, STATUS, positional=("tenant",), tag="retention"),
    Operation("pin", "pin_backup", "Pin: prune never removes it", "Pin a backup: prune never removes it.",
              CREATE, True, "POST", _BY_ID + "/pin", None, RECORD, kind="idempotent"),
    Operation("unpin", "unpin_backup", "Unpin: the retention policy decides again",
              "Unpin a backup: the retention policy decides again.",
              CREATE, True, "POST", _BY_ID + "/unpin", None, RECORD, kind="idempotent"),
    Operation("copy", "copy_backup", "Copy to another store, checksums checked",
              "Copy a backup to another configured store (a NAME), checksums checked on arrival.",
              CREATE, True, "POST", _BY_ID + "/copy", CopyBody, RECORD, kind="additive",
              errors=(403, 404, 409, 422, 502), long=True, body_optional=False),
    Operation("backup_history", "backup_history", "Every verification, drill and backup event of a backup",
              "Every verification, drill and backup event of a backup, oldest first (also of a deleted backup).",
              READ, True, "GET", _BY_ID + "/history", None, HISTORY, tag="evidence"),
    Operation("report", "report", "The evidence report (JSON: report_model.Report; also html or md)",
              "The evidence report as JSON (docs/report.schema.json): runs vs schedule, gaps, drills and RTO, copies, audit.",
              READ, False, "GET", "/v1/report", ReportQuery, REPORT, errors=(400, 403, 404, 502), wait=True,
              positional=("tenant",), tag="evidence",
              formats={"html": ("text/html", report_render.to_html), "md": ("text/markdown", report_render.to_markdown)}),
)

BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}


def scope_of(name: str) -> str:
    """The scope an operation needs (access.GuardedService checks it)."""
    return BY_NAME[name].scope
