"""The REST routes of the operations registry (dumpsafe.operations): one route per operation.

Each route's path, method, status, parameters (a GET's query, a POST's JSON body), response
model and documented errors come from its Operation; the handler calls the GuardedService
method of the same name (scope and tenant rules) and answers the registry's wire form of the
result. Long work runs through work.long_work; quick reads run in FastAPI's thread pool.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Callable, Literal

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Strict
from pydantic.fields import FieldInfo

from dumpsafe.access import GuardedService
from dumpsafe.fronts.api.deps import Guarded
from dumpsafe.fronts.api.routes.jobs import submit_backup
from dumpsafe.fronts.api.schemas import errors
from dumpsafe.fronts.api.work import long_work
from dumpsafe.inputs import MAX_ID, QueryFlag
from dumpsafe.operations import OPERATIONS, Operation
from dumpsafe.queue import queue_for
from dumpsafe.report_render import to_json

BackupId = Annotated[str, Path(min_length=1, max_length=MAX_ID, description="A backup ID (see list).")]
JSON_FORMAT = ("application/json", to_json)

_KW = inspect.Parameter.KEYWORD_ONLY


def _query(field: FieldInfo) -> Any:
    """A parameter model's field as a query parameter (a strict flag reads ``true``/``false``)."""
    if field.annotation is bool and any(isinstance(m, Strict) for m in field.metadata):
        return Annotated[QueryFlag, Query(description=field.description)]
    if field.metadata:
        return Annotated[(field.annotation, *field.metadata, Query(description=field.description))]  # type: ignore[misc]
    return Annotated[field.annotation, Query(description=field.description)]


def _signature(op: Operation) -> inspect.Signature:
    params = [inspect.Parameter("request", _KW, annotation=Request)]
    if op.by_backup:
        params.append(inspect.Parameter("backup_id", _KW, annotation=BackupId))
    if op.params is not None and op.method == "GET":
        for name, f in op.fields().items():
            params.append(inspect.Parameter(name, _KW, annotation=_query(f), default=f.get_default(call_default_factory=True)))
    elif op.params is not None:
        if op.body_optional:
            params.append(inspect.Parameter("body", _KW, annotation=op.params | None, default=None))
        else:
            params.append(inspect.Parameter("body", _KW, annotation=op.params))
    params.append(inspect.Parameter("svc", _KW, annotation=Guarded))
    if op.formats:
        names = ["json", *op.formats]
        doc = f"{names[0]} (default), {', '.join(names[1:-1])}{' or ' if len(names) > 2 else ''}{names[-1]}."
        params.append(inspect.Parameter("format", _KW, default="json",
                                        annotation=Annotated[Literal[tuple(names)], Query(description=doc)]))  # type: ignore[misc]
    return inspect.Signature(params)


def _arguments(op: Operation, kw: dict[str, Any]) -> tuple[dict[str, Any], BaseModel | None]:
    """The service call's keyword arguments, and the parameters as their model."""
    args = {"backup_id": kw["backup_id"]} if op.by_backup else {}
    if op.params is None:
        return args, None
    if op.method == "GET":
        params: BaseModel = op.params.model_construct(**{k: kw[k] for k in op.fields()})
    else:
        params = kw.get("body") or op.params()
    return {**args, **params.model_dump()}, params


def _answer(op: Operation, value: Any, fmt: str) -> Any:
    if op.formats:
        media_type, render = op.formats.get(fmt, JSON_FORMAT)
        return Response(render(value), media_type=media_type)
    return op.result.dump(value)


def _endpoint(op: Operation) -> Callable[..., Any]:
    def call(svc: GuardedService, args: dict[str, Any]) -> Any:
        return getattr(svc, op.name)(**args)

    if op.long:
        async def endpoint(**kw: Any) -> Any:
            svc, request = kw["svc"], kw["request"]
            args, params = _arguments(op, kw)
            if op.queued and svc.service.config.queue:  # the workers run it (issue 16)
                job = await anyio.to_thread.run_sync(submit_backup, svc, queue_for(svc.service.config), params)
                return JSONResponse(job, status_code=202, headers={"Location": f"/v1/jobs/{job['id']}"})
            return _answer(op, await long_work(request, call, svc, args), kw.get("format", "json"))
    else:
        def endpoint(**kw: Any) -> Any:  # type: ignore[misc]
            args, _ = _arguments(op, kw)
            return _answer(op, call(kw["svc"], args), kw.get("format", "json"))

    endpoint.__signature__ = _signature(op)  # type: ignore[attr-defined]
    endpoint.__name__ = endpoint.__qualname__ = op.tool
    endpoint.__doc__ = None
    return endpoint


def _responses(op: Operation) -> dict[int | str, dict[str, Any]]:
    out = {**errors(*op.errors), **op.responses}
    if op.formats:
        out[200] = {"content": {media_type: {} for media_type, _ in op.formats.values()}}
    return out


router = APIRouter()
for _op in OPERATIONS:
    router.add_api_route(
        _op.path, _endpoint(_op), methods=[_op.method], status_code=_op.status, response_model=_op.result.wire,
        summary=_op.summary, responses=_responses(_op), tags=[_op.tag], name=_op.tool,
    )
