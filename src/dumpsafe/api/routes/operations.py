"""Routes that join as the service offers them: verify, restore, prune, status.

``OPTIONAL`` maps a service method to the router exposing it; app.py includes a router only
when its method exists, so the API never advertises what the service cannot do.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dumpsafe.api.deps import Guarded
from dumpsafe.api.routes import export as export_routes
from dumpsafe.api.routes.backups import BackupId
from dumpsafe.api.schemas import errors
from dumpsafe.api.work import long_work
from dumpsafe.inputs import DbName, Flag, Name, QueryFlag
from dumpsafe.models import BackupRecord

Mode = Literal["atomic", "clean", "new"]
TableName = Annotated[str, Field(min_length=1, max_length=300)]
SchemaName = Annotated[str, Field(min_length=1, max_length=63)]


def plain(obj: Any) -> Any:
    """A service result as JSON: its to_json_dict() (what `--json` prints) over all of its
    fields, so the remote CLI can rebuild the very same object."""
    fields = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else {}
    return {**fields, **obj.to_json_dict()} if hasattr(obj, "to_json_dict") else obj


class VerifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    drill: Flag = Field(default=False, description="Also restore into a scratch database and compare row counts.")


class RestoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    database: DbName | None = Field(default=None, description="Target database NAME (default: the backup's own); "
                                                              "a tenant token only its tenant's databases or restore_names.")
    mode: Mode | None = Field(default=None, description="atomic (default if the target exists), clean or new.")
    uploads: Flag = Field(default=True, description="Also restore the uploads tree into the tenant's configured path.")
    keep_old: Flag = Field(default=False, description="atomic: keep the replaced database under a new name.")
    dry_run: Flag = Field(default=False, description="Check everything, change nothing; returns the preflight report.")
    with_globals: Flag = Field(default=False, description="First create the roles from the backup's globals object that "
                                                          "the server lacks (never altering existing ones; no passwords).")
    # issue 19: a selective restore (tables only; uploads are left alone)
    tables: list[TableName] | None = Field(default=None, max_length=1000, description=(
        "Restore only these tables (SCHEMA.TABLE or the record's key), with mode new or into_schema."))
    schemas: list[SchemaName] | None = Field(default=None, max_length=1000, description="Restore only the tables of these schemas.")
    into_schema: SchemaName | None = Field(default=None, description=(
        "Put the selected tables into this NEW schema of the live database (never touches existing objects)."))


def _selective(b: RestoreBody | None = None, **q: Any) -> dict[str, Any] | None:
    """The selective restore's arguments, when the request names tables, schemas or into_schema."""
    tables, schemas, into = (b.tables, b.schemas, b.into_schema) if b else (q["tables"], q["schemas"], q["into_schema"])
    if not (tables or schemas or into is not None):
        return None
    if b is not None and (b.keep_old or b.with_globals):
        from dumpsafe.errors import UsageError

        raise UsageError("a selective restore (tables, schemas, into_schema) restores tables only: leave out keep_old and with_globals")
    return dict(tables=tables or [], schemas=schemas or [], into_schema=into)


class PruneBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: Name | None = Field(default=None, description="Only this tenant (default: every visible one).")
    dry_run: Flag = False


class CopyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Name = Field(description="Store NAME from the config to copy into (a tenant token: its tenant's stores).")


verify = APIRouter(prefix="/v1/backups", tags=["backups"])
restore = APIRouter(prefix="/v1/backups", tags=["backups"])
prune = APIRouter(prefix="/v1", tags=["retention"])
status = APIRouter(prefix="/v1", tags=["retention"])


@verify.post("/{backup_id}/verify", response_model=BackupRecord, summary="Check integrity (and with drill, restore-test)",
             responses=errors(403, 404, 409, 422, 502))
async def verify_backup(request: Request, backup_id: BackupId, svc: Guarded, body: VerifyBody | None = None) -> BackupRecord:
    return await long_work(request, svc.verify, backup_id, drill=(body or VerifyBody()).drill)


@restore.get("/{backup_id}/restore-plan", response_model=dict[str, Any], summary="What a restore would do (cheap)",
             responses=errors(403, 404, 409, 502))
def restore_plan(
    backup_id: BackupId,
    svc: Guarded,
    database: Annotated[DbName | None, Query()] = None,
    mode: Annotated[Mode | None, Query()] = None,
    uploads: Annotated[QueryFlag, Query()] = True,
    keep_old: Annotated[QueryFlag, Query()] = False,
    with_globals: Annotated[QueryFlag, Query()] = False,
    tables: Annotated[list[TableName] | None, Query(max_length=1000)] = None,
    schemas: Annotated[list[SchemaName] | None, Query(max_length=1000)] = None,
    into_schema: Annotated[SchemaName | None, Query()] = None,
) -> dict[str, Any]:
    sel = _selective(tables=tables, schemas=schemas, into_schema=into_schema)
    if sel is not None:  # issue 19: the selective dry run lists exactly what would be created
        res = svc.restore_selective(backup_id, database=database, mode=mode, dry_run=True, **sel)
        where = f"schema {res.into_schema!r} of database" if res.into_schema else "new database"
        return {**plain(res), "destructive": False,
                "description": f"restore {len(res.tables)} table(s) from backup {res.backup_id} into {where} {res.database!r}"}
    plan = svc.restore_plan(backup_id, database=database, mode=mode, uploads=uploads, keep_old=keep_old,
                            with_globals=with_globals)
    return {**dataclasses.asdict(plan), "destructive": plan.destructive, "description": plan.describe()}


@restore.post("/{backup_id}/restore", response_model=dict[str, Any], summary="Restore a backup (integrity first, atomic)",
              responses=errors(403, 404, 409, 422, 502))
async def restore_backup(request: Request, backup_id: BackupId, svc: Guarded, body: RestoreBody | None = None) -> dict[str, Any]:
    b = body or RestoreBody()
    sel = _selective(b)
    if sel is not None:  # issue 19
        return plain(await long_work(request, svc.restore_selective, backup_id, database=b.database, mode=b.mode,
                                     dry_run=b.dry_run, **sel))
    return plain(await long_work(
        request, svc.restore, backup_id,
        database=b.database, mode=b.mode, uploads=b.uploads, keep_old=b.keep_old, dry_run=b.dry_run,
        with_globals=b.with_globals,
    ))


@prune.post("/prune", response_model=list[dict[str, Any]], summary="Apply retention policies (one decision per backup)",
            responses=errors(403, 404, 502))
async def prune_backups(request: Request, svc: Guarded, body: PruneBody | None = None) -> list[dict[str, Any]]:
    b = body or PruneBody()
    return [plain(d) for d in await long_work(request, svc.prune, b.tenant, dry_run=b.dry_run)]


@status.get("/status", response_model=list[dict[str, Any]], summary="Per tenant/database: last success, age, breach",
            responses=errors(403, 404, 502))
def backup_status(svc: Guarded, tenant: Annotated[Name | None, Query()] = None) -> list[dict[str, Any]]:
    return [plain(row) for row in svc.status(tenant)]


pin = APIRouter(prefix="/v1/backups", tags=["backups"], responses=errors(403, 404, 502))
copy = APIRouter(prefix="/v1/backups", tags=["backups"])


@pin.post("/{backup_id}/pin", response_model=BackupRecord, summary="Pin: prune never removes it")
def pin_backup(backup_id: BackupId, svc: Guarded) -> BackupRecord:
    return svc.pin(backup_id)


@pin.post("/{backup_id}/unpin", response_model=BackupRecord, summary="Unpin: the retention policy decides again")
def unpin_backup(backup_id: BackupId, svc: Guarded) -> BackupRecord:
    return svc.unpin(backup_id)


@copy.post("/{backup_id}/copy", response_model=BackupRecord, summary="Copy to another store, checksums checked",
           responses=errors(403, 404, 409, 422, 502))
async def copy_backup(request: Request, backup_id: BackupId, body: CopyBody, svc: Guarded) -> BackupRecord:
    return await long_work(request, svc.copy, backup_id, to=body.to)


OPTIONAL = {"verify": verify, "restore": restore, "prune": prune, "status": status, "pin": pin, "copy": copy}
OPTIONAL["export"] = export_routes.router  # issue 19
