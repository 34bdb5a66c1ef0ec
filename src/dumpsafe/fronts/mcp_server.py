"""The MCP front (official ``mcp`` SDK): the operations registry (dumpsafe.operations) as typed tools.

Over stdio (``dumpsafe mcp``) the caller is the local operator, an admin. Over streamable
HTTP (``/mcp`` in ``dumpsafe serve``) every request carries a bearer token, checked by the
same TokenStore and held to the same scope and tenant rules (access.GuardedService).
Destructive tools (restore, delete, prune) say so in their annotations and need ``confirm: true``
(a JSON boolean: "yes", 1 or "true" are refused); an unconfirmed call is audited as refused.
Every string argument is bounded and every flag strict, exactly as in REST (dumpsafe.inputs).
"""

from __future__ import annotations

import contextlib
import inspect
import json
from typing import Annotated, Any, AsyncIterator, Callable, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import Field
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dumpsafe import __version__
from dumpsafe.access import GuardedService
from dumpsafe.auth import LOCAL, Caller
from dumpsafe.errors import AuthError, DumpsafeError, RateLimited
from dumpsafe.gate import Gate, client_address
from dumpsafe.inputs import BackupIdText, Flag
from dumpsafe.operations import OPERATIONS, Operation

CALLER_KEY = "dumpsafe.caller"
T = TypeVar("T")

INSTRUCTIONS = (
    "dumpsafe backs up tenant PostgreSQL databases and their uploads to off-host stores. "
    "Backup IDs come from list_backups. Stores are named in the server's config; never pass paths. "
    "restore_backup, delete_backup and prune_backups change data irreversibly and need confirm=true "
    "(restore and prune not with dry_run=true)."
)

HINTS = {  # what each kind of operation tells the agent (operations.Operation.kind)
    "read": ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
    "additive": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
    "idempotent": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
    "destructive": ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False),
}

BackupId = Annotated[BackupIdText, Field(description="Backup ID, e.g. acme.app.20260101T023000Z.k3j7x2ab (see list_backups).")]
Confirm = Annotated[Flag, Field(description="Must be true (a JSON boolean): this changes data irreversibly.")]
_KW = inspect.Parameter.KEYWORD_ONLY


def _signature(op: Operation) -> inspect.Signature:
    """The tool's arguments: the backup ID, the operation's parameters, and confirm if it destroys."""
    params = [inspect.Parameter("ctx", _KW, annotation=Context)]
    if op.by_backup:
        params.append(inspect.Parameter("backup_id", _KW, annotation=BackupId))
    for name, f in op.fields().items():
        hint = Annotated[(f.annotation, *f.metadata, Field(description=f.description))]  # type: ignore[misc]
        default = inspect.Parameter.empty if f.is_required() else f.get_default(call_default_factory=True)
        params.append(inspect.Parameter(name, _KW, annotation=hint, default=default))
    if op.confirm:
        params.append(inspect.Parameter("confirm", _KW, annotation=Confirm, default=False))
    return inspect.Signature(params, return_annotation=op.result.wire)


def build_server(service: Any, *, local: bool, limiter: anyio.CapacityLimiter | None = None) -> MCPServer:
    """An MCP server on the service: one tool per operation of the registry. ``local``: no token,
    the caller is the local admin (stdio). Long tools run in threads under ``limiter``, shared with REST."""
    mcp = MCPServer("dumpsafe", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")

    def guarded(ctx: Context) -> GuardedService:
        request = ctx.request_context.request
        caller: Caller | None = LOCAL if local else None
        if request is not None:
            caller = request.scope.get(CALLER_KEY)
        if caller is None:
            raise ToolError("unauthorized: missing bearer token")
        return GuardedService(service, caller)

    def run(fn: Callable[[], T]) -> T:
        try:
            return fn()
        except DumpsafeError as e:
            raise ToolError(f"{e.kind}: {e.message}") from None

    for op in OPERATIONS:
        mcp.add_tool(_tool(op, guarded, run, limiter), name=op.tool, description=op.doc, annotations=HINTS[op.kind])
    return mcp


def _tool(op: Operation, guarded: Callable[[Context], GuardedService], run: Callable[[Callable[[], Any]], Any],
          limiter: anyio.CapacityLimiter | None) -> Callable[..., Any]:
    def call(svc: GuardedService, kw: dict[str, Any]) -> Any:
        confirmed = kw.pop("confirm", False)
        if op.confirm and confirmed is not True and not (op.unless and kw.get(op.unless)):
            svc.refuse_unconfirmed(op.name, op.confirm.format(**kw), backup_id=kw.get("backup_id"), tenant=kw.get("tenant"))
        return op.result.dump(getattr(svc, op.name)(**kw))

    async def tool(ctx: Context, **kw: Any) -> Any:
        svc = guarded(ctx)
        if op.long:
            return await anyio.to_thread.run_sync(run, lambda: call(svc, kw), limiter=limiter)
        return await anyio.to_thread.run_sync(run, lambda: call(svc, kw))

    tool.__signature__ = _signature(op)  # type: ignore[attr-defined]
    tool.__annotations__ = {"ctx": Context, "return": op.result.wire}
    tool.__name__ = tool.__qualname__ = op.tool
    return tool


class HttpMcp:
    """The MCP server as an ASGI route behind bearer-token authentication."""

    def __init__(self, service: Any, gate: Gate, *, host: str = "127.0.0.1",
                 limiter: anyio.CapacityLimiter | None = None):
        self.gate = gate
        self.server = build_server(service, local=False, limiter=limiter)
        # stateless: every POST stands alone and is authenticated on its own. Host/Origin
        # checks (DNS-rebinding protection) are off: a rebinding page cannot send the bearer
        # token, and behind a reverse proxy the Host header is the public name.
        self.server.streamable_http_app(
            stateless_http=True, json_response=True, host=host,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self.asgi = StreamableHTTPASGIApp(self.server.session_manager)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.server.session_manager.run():
            yield

    def route(self, path: str) -> Route:
        return Route(path, endpoint=_Authenticated(self), methods=["GET", "POST", "DELETE"], include_in_schema=False)


class _Authenticated:
    def __init__(self, http: HttpMcp):
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, value = auth.partition(" ")
        try:
            token = value.strip() if scheme.lower() == "bearer" else None
            caller = await anyio.to_thread.run_sync(self.http.gate.check, token, client_address(scope))
        except (AuthError, RateLimited) as e:
            body = json.dumps({"error": e.kind, "detail": e.message}).encode()
            headers = [(b"content-type", b"application/json")]
            if isinstance(e, RateLimited):
                headers.append((b"retry-after", str(e.retry_after).encode()))
            else:
                headers.append((b"www-authenticate", b"Bearer"))
            await send({"type": "http.response.start", "status": e.http_status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        scope[CALLER_KEY] = caller
        await self.http.asgi(scope, receive, send)


def run_stdio(service: Any) -> None:
    """``dumpsafe mcp``: serve MCP on stdin/stdout as the local operator."""
    anyio.run(build_server(service, local=True).run_stdio_async)
