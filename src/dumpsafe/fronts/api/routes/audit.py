"""/v1/audit: the audit log, newest first, paged from the end of the file; admin tokens only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from dumpsafe.auth import READ
from dumpsafe.fronts.api.deps import CallerDep
from dumpsafe.fronts.api.schemas import AuditPage, errors

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit", response_model=AuditPage, summary="Audit log entries, newest first (admin)", responses=errors(403))
def audit(
    request: Request,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> AuditPage:
    caller.require(READ)
    caller.require_admin()
    log = request.app.state.service.audit
    return AuditPage(entries=log.newest(offset, limit), total=log.count(), offset=offset, limit=limit)
