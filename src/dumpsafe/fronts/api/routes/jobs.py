"""/v1/jobs/{id} and the queued form of POST /v1/backups (issue 16), when a ``queue`` is configured.

A queued backup answers 202 with its job; the job is read back with the same tenant rules
as a backup: a tenant token sees only its tenant's jobs, and another tenant's job answers
exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel

from dumpsafe.access import host_paths
from dumpsafe.auth import READ
from dumpsafe.errors import NotFoundError
from dumpsafe.fronts.api.deps import Guarded
from dumpsafe.fronts.api.schemas import errors
from dumpsafe.operations import CreateBackup
from dumpsafe.queue import audited_defer

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JobId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A job ID (from a 202 answer).")]


class Job(BaseModel):
    id: int
    kind: str
    status: str
    tenant: str | None
    attempts: int
    worker: str | None = None
    backup_ids: list[str] = []
    error: str | None = None
    already_queued: bool = False


def _shown(svc: Any, info: Any) -> dict[str, Any]:
    out = info.to_json_dict()
    if not svc.caller.admin:
        out["worker"] = None  # host names stay with the operator
        if out["error"]:
            for p in host_paths(svc.service.config):
                out["error"] = out["error"].replace(p, "<host path>")
    return out


def submit_backup(svc: Any, queue: Any, body: CreateBackup) -> dict[str, Any]:
    """Check the caller may create this backup, then queue it (a waiting one for the tenant answers instead)."""
    svc.authorize_create(body.tenant, body.store)
    info = audited_defer(svc.service.audit, svc.caller.actor, "backup", body.tenant, lambda: queue.defer(
        "backup", body.tenant, None, **body.model_dump(exclude={"tenant"}), actor=svc.caller.actor))
    return _shown(svc, info)


@router.get("/{job_id}", response_model=Job, summary="A queued job's state (when a queue is configured)",
            responses=errors(403, 404, 502))
def get_job(job_id: JobId, svc: Guarded) -> dict[str, Any]:
    from dumpsafe.queue import queue_for

    svc.caller.require(READ)
    queue = queue_for(svc.service.config)
    if queue is None:
        raise NotFoundError(f"job {job_id} not found (no queue is configured: backups run at once)")
    info = queue.job(job_id)  # NotFoundError when absent
    if info.tenant is None or not svc.caller.sees(info.tenant):
        raise NotFoundError(f"job {job_id} not found")
    return _shown(svc, info)
