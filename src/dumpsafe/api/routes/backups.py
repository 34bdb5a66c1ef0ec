"""/v1/backups: create, list, get, delete (verify and restore join as the service offers them).

Quick handlers are plain functions (FastAPI runs them in its thread pool); a backup goes
through work.long_work, so it neither blocks the event loop nor starves the reads.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from dumpsafe.api.deps import Guarded
from dumpsafe.api.schemas import CreateBackup, errors
from dumpsafe.api.work import long_work
from dumpsafe.inputs import MAX_ID, DbName, Name
from dumpsafe.models import BackupRecord

router = APIRouter(prefix="/v1/backups", tags=["backups"])
BackupId = Annotated[str, Path(min_length=1, max_length=MAX_ID, description="A backup ID (see list).")]


@router.post("", status_code=201, response_model=list[BackupRecord], summary="Back up a tenant's databases",
             responses={**errors(403, 404, 409, 502), 202: {"description": "Queued (a queue is configured): the job; "
                                                            "follow it at /v1/jobs/{id}"}})
async def create_backup(request: Request, body: CreateBackup, svc: Guarded) -> list[BackupRecord]:
    if getattr(svc.service.config, "queue", None):  # issue 16: the workers run it
        from dumpsafe.api.routes.jobs import submit_backup
        from dumpsafe.queue import queue_for

        import anyio.to_thread

        job = await anyio.to_thread.run_sync(submit_backup, svc, queue_for(svc.service.config), body)
        return JSONResponse(job, status_code=202, headers={"Location": f"/v1/jobs/{job['id']}"})
    return await long_work(
        request, svc.create,
        body.tenant, databases=body.databases, store=body.store, uploads=body.uploads, label=body.label, pin=body.pin,
    )


@router.get("", response_model=list[BackupRecord], summary="List backups, newest first", responses=errors(403, 404, 502))
def list_backups(
    svc: Guarded,
    tenant: Annotated[Name | None, Query(description="Only this tenant.")] = None,
    database: Annotated[DbName | None, Query(description="Only this database.")] = None,
    store: Annotated[Name | None, Query(description="Only this store (a NAME from the config).")] = None,
) -> list[BackupRecord]:
    return svc.list(tenant, database, store)


@router.get("/{backup_id}", response_model=BackupRecord, summary="One backup's record", responses=errors(403, 404, 502))
def get_backup(backup_id: BackupId, svc: Guarded) -> BackupRecord:
    return svc.get(backup_id)


@router.delete("/{backup_id}", response_model=BackupRecord, summary="Delete a backup (record first, then objects)",
               responses=errors(403, 404, 409, 502))
def delete_backup(backup_id: BackupId, svc: Guarded) -> BackupRecord:
    return svc.delete(backup_id)
