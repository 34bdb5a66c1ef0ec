"""Evidence (issue 15): the report, a backup's history, charts, and who the caller is.

Same scope and tenant rules as every route (GuardedService): backups:read, a tenant
token only its tenant."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from dumpsafe.api.deps import CallerDep, Guarded
from dumpsafe.api.routes.backups import BackupId
from dumpsafe.api.schemas import errors
from dumpsafe.inputs import Name
from dumpsafe.report_model import Report

router = APIRouter(prefix="/v1", tags=["evidence"])
Since = Annotated[str, Query(min_length=1, max_length=40, description="A duration back from now (90d, 12h) or an RFC 3339 time.")]


@router.get("/report", summary="The evidence report (JSON: report_model.Report; also html or md)",
            response_model=Report, responses={**errors(400, 403, 404, 502),
                                              200: {"content": {"text/html": {}, "text/markdown": {}}}})
def report(
    svc: Guarded,
    tenant: Annotated[Name | None, Query(description="Only this tenant.")] = None,
    since: Since = "90d",
    format: Annotated[Literal["json", "html", "md"], Query(description="json (default), html or md.")] = "json",
) -> Any:
    from dumpsafe import report_render

    rep = svc.report(tenant, since=since)
    if format == "html":
        return HTMLResponse(report_render.to_html(rep))
    if format == "md":
        return PlainTextResponse(report_render.to_markdown(rep), media_type="text/markdown")
    return Response(report_render.to_json(rep), media_type="application/json")


@router.get("/charts", summary="Per tenant/database: backup size, duration and RTO charts as SVG",
            response_model=list[dict[str, str]], responses=errors(400, 403, 404, 502))
def charts(svc: Guarded, tenant: Annotated[Name | None, Query()] = None, since: Since = "90d") -> list[dict[str, str]]:
    from dumpsafe import report_render

    rep = svc.report(tenant, since=since)
    return [{"tenant": t.tenant, "database": d.database, **report_render.charts(d)} for t in rep.tenants for d in t.databases]


@router.get("/backups/{backup_id}/history", summary="Every verification, drill and backup event of a backup",
            response_model=list[dict[str, Any]], responses=errors(403, 404, 502))
def backup_history(backup_id: BackupId, svc: Guarded) -> list[dict[str, Any]]:
    return svc.backup_history(backup_id)


@router.get("/whoami", summary="The caller: tenant (null: admin), scopes, and the stores it may copy to",
            response_model=dict[str, Any], responses=errors())
def whoami(request: Request, caller: CallerDep) -> dict[str, Any]:
    from dumpsafe.access import tenant_stores
    from dumpsafe.auth import CREATE, DELETE, READ, RESTORE

    config = request.app.state.service.config
    stores = list(config.stores) if caller.admin else tenant_stores(config, caller.tenant)
    return {"actor": caller.actor, "tenant": caller.tenant, "admin": caller.admin, "stores": stores,
            "scopes": sorted(caller.scopes), "can": {s: caller.has(s) for s in (READ, CREATE, RESTORE, DELETE)}}
