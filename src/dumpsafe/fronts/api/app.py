"""The app factory: REST routes, MCP over streamable HTTP at /mcp, errors as {error, detail}."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from dumpsafe import __version__
from dumpsafe.auth import TokenStore
from dumpsafe.errors import AuthError, DumpsafeError, RateLimited
from dumpsafe.fronts.api.http_metrics import HttpMetrics
from dumpsafe.fronts.api.limits import MAX_BODY, BodyLimit
from dumpsafe.fronts.api.routes import audit, evidence, export, health, jobs, operations
from dumpsafe.fronts.api.work import limiter_for
from dumpsafe.fronts.mcp_server import HttpMcp
from dumpsafe.fronts.web.routes import router as dashboard
from dumpsafe.gate import Gate

log = logging.getLogger("dumpsafe.api")
ERROR_CLASS_HEADER = "X-Dumpsafe-Error"


def error_response(e: DumpsafeError) -> JSONResponse:
    # the class name lets the remote CLI raise the very same class (same exit code)
    headers = {ERROR_CLASS_HEADER: type(e).__name__}
    if isinstance(e, AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(e, RateLimited):
        headers["Retry-After"] = str(e.retry_after)
    return JSONResponse({"error": e.kind, "detail": e.message}, status_code=e.http_status, headers=headers)


def _validation_sentence(exc: RequestValidationError) -> str:
    errs = exc.errors()
    if not errs:
        return "malformed request"
    e = errs[0]
    loc = tuple(e.get("loc", ()))
    if loc == ("body",):
        if e.get("type") == "missing":
            return "a JSON body is required (see /openapi.json)"
        return "the body must be a JSON object (send Content-Type: application/json)"
    if e.get("type") == "json_invalid":
        return "the body is not valid JSON"
    where = ".".join(str(p) for p in loc if p != "body") or "body"
    return f"{where}: {e.get('msg', 'invalid value')}"


def create_app(
    service: Any,
    *,
    tokens: TokenStore | None = None,
    host: str = "127.0.0.1",
    mcp: bool = True,
    on_startup: list[Any] | None = None,
    gate: Gate | None = None,
    max_body: int = MAX_BODY,
) -> FastAPI:
    """Build the app around one service. ``on_startup`` objects get start()/stop() (the scheduler).
    ``gate`` authenticates every request (default: the token store with the standard backoff)."""
    tokens = tokens or TokenStore(service.state_dir)
    gate = gate or Gate(tokens, service.audit)
    long_work = limiter_for(service)
    mcp_http = HttpMcp(service, gate, host=host, limiter=long_work) if mcp else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if mcp_http is not None:
                await stack.enter_async_context(mcp_http.running())
            for obj in on_startup or []:
                obj.start()
                stack.callback(obj.stop)
            yield

    app = FastAPI(
        title="dumpsafe",
        version=__version__,
        description="Verified, atomically restorable backups of tenant PostgreSQL databases and their uploads.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their JavaScript from a CDN (blank offline):
        redoc_url=None,  # off; /openapi.json stays for any client or viewer
    )
    app.state.service = service
    app.state.tokens = tokens
    app.state.gate = gate
    app.state.registry = CollectorRegistry()
    app.state.long_work = long_work
    health.register_status(app.state.registry, service)

    @app.exception_handler(DumpsafeError)
    async def _dumpsafe_error(request: Request, e: DumpsafeError) -> JSONResponse:
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "usage", "detail": _validation_sentence(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            detail = f"no such endpoint: {request.method} {request.url.path} (see /openapi.json)"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path} (see /openapi.json)"
        return JSONResponse({"error": kind, "detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal", "detail": "internal error (see the server log)"}, status_code=500)

    app.include_router(health.router)
    app.include_router(operations.router)  # every operation of the registry
    app.include_router(audit.router)
    if getattr(service.config, "queue", None):  # issue 16: only where jobs exist
        app.include_router(jobs.router)
    app.include_router(evidence.router)  # issue 15
    app.include_router(export.router)  # issue 19: a streamed download, not a registry operation (no MCP/remote form)
    app.include_router(dashboard)  # issue 15: the dashboard at /
    if mcp_http is not None:
        app.router.routes.append(mcp_http.route("/mcp"))
    app.add_middleware(HttpMetrics, registry=app.state.registry)
    app.add_middleware(BodyLimit, limit=max_body)  # outermost of ours: 413 before anything reads the body
    return app
