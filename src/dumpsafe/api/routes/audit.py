"""/v1/audit: the audit log, newest first, paged; admin tokens only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from dumpsafe.api.deps import CallerDep
from dumpsafe.api.schemas import ERRORS, AuditPage
from dumpsafe.auth import READ

router = APIRouter(prefix="/v1", tags=["audit"], responses=ERRORS)


@router.get("/audit", response_model=AuditPage, summary="Audit log entries, newest first (admin)")
def audit(
    request: Request,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
    caller.require(READ)
    caller.require_admin()
    entries = list(request.app.state.service.audit.entries())
    entries.reverse()
    return AuditPage(entries=entries[offset : offset + limit], total=len(entries), offset=offset, limit=limit)
