"""Evidence (issue 15) beside the registry's report and history: charts, and who the caller is.

Same scope and tenant rules as every route (GuardedService): backups:read, a tenant
token only its tenant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from dumpsafe import report_render
from dumpsafe.access import tenant_stores
from dumpsafe.auth import CREATE, DELETE, READ, RESTORE
from dumpsafe.fronts.api.deps import CallerDep, Guarded
from dumpsafe.fronts.api.schemas import errors
from dumpsafe.inputs import Name

router = APIRouter(prefix="/v1", tags=["evidence"])
Since = Annotated[str, Query(min_length=1, max_length=40, description="A duration back from now (90d, 12h) or an RFC 3339 time.")]


@router.get("/charts", summary="Per tenant/database: backup size, duration and RTO charts as SVG",
            response_model=list[dict[str, str]], responses=errors(400, 403, 404, 502))
def charts(svc: Guarded, tenant: Annotated[Name | None, Query()] = None, since: Since = "90d") -> list[dict[str, str]]:
    rep = svc.report(tenant, since=since)
    return [{"tenant": t.tenant, "database": d.database, **report_render.charts(d)} for t in rep.tenants for d in t.databases]


@router.get("/whoami", summary="The caller: tenant (null: admin), scopes, and the stores it may copy to",
            response_model=dict[str, Any], responses=errors())
def whoami(request: Request, caller: CallerDep) -> dict[str, Any]:
    config = request.app.state.service.config
    stores = list(config.stores) if caller.admin else tenant_stores(config, caller.tenant)
    return {"actor": caller.actor, "tenant": caller.tenant, "admin": caller.admin, "stores": stores,
            "scopes": sorted(caller.scopes), "can": {s: caller.has(s) for s in (READ, CREATE, RESTORE, DELETE)}}
