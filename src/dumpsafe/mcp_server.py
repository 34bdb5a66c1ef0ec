"""The MCP front (official ``mcp`` SDK): the same operations as REST, as typed tools.

Over stdio (``dumpsafe mcp``) the caller is the local operator, an admin. Over streamable
HTTP (``/mcp`` in ``dumpsafe serve``) every request carries a bearer token, checked by the
same TokenStore and held to the same scope and tenant rules (access.GuardedService).
Destructive tools (restore, delete) say so in their annotations and need ``confirm: true``
(a JSON boolean: "yes", 1 or "true" are refused); an unconfirmed call is audited as refused.
Every string argument is bounded and every flag strict, exactly as in REST (dumpsafe.inputs).
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any, AsyncIterator, Callable, Literal, TypeVar

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
from dumpsafe.access import GuardedService, offers
from dumpsafe.auth import LOCAL, Caller
from dumpsafe.errors import AuthError, DumpsafeError, RateLimited
from dumpsafe.gate import Gate, client_address
from dumpsafe.inputs import BackupIdText, DbName, DbNames, Flag, Label, Name
from dumpsafe.models import BackupRecord

CALLER_KEY = "dumpsafe.caller"
T = TypeVar("T")

INSTRUCTIONS = (
    "dumpsafe backs up tenant PostgreSQL databases and their uploads to off-host stores. "
    "Backup IDs come from list_backups. Stores are named in the server's config; never pass paths. "
    "restore_backup and delete_backup change data irreversibly and need confirm=true."
)

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
ADDITIVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False)

BackupId = Annotated[BackupIdText, Field(description="Backup ID, e.g. acme.app.20260101T023000Z.k3j7x2ab (see list_backups).")]
Confirm = Annotated[Flag, Field(description="Must be true (a JSON boolean): this changes data irreversibly.")]


def build_server(service: Any, *, local: bool, limiter: anyio.CapacityLimiter | None = None) -> MCPServer:
    """An MCP server on the service. ``local``: no token, the caller is the local admin (stdio).
    Long tools (create, verify, restore) run in threads under ``limiter``, shared with REST."""
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

    async def run_long(fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(run, fn, limiter=limiter)

    @mcp.tool(annotations=ADDITIVE)
    async def create_backup(
        ctx: Context,
        tenant: Annotated[Name, Field(description="Tenant name from the server's config.")],
        databases: Annotated[DbNames | None, Field(description="Only these databases (default: the tenant's).")] = None,
        store: Annotated[Name | None, Field(description="Store NAME from the config (default: the tenant's).")] = None,
        uploads: Annotated[Flag, Field(description="Include the tenant's uploads tree.")] = True,
        label: Annotated[Label | None, Field(description="Free text kept in the record.")] = None,
    ) -> list[BackupRecord]:
        """Back up a tenant's databases (one backup each, uploads with the first); returns the records."""
        svc = guarded(ctx)
        return await run_long(lambda: svc.create(tenant, databases=databases, store=store, uploads=uploads, label=label))

    @mcp.tool(annotations=READ_ONLY)
    def list_backups(
        ctx: Context,
        tenant: Annotated[Name | None, Field(description="Only this tenant.")] = None,
        database: Annotated[DbName | None, Field(description="Only this database.")] = None,
        store: Annotated[Name | None, Field(description="Only this store (a NAME from the config).")] = None,
    ) -> list[BackupRecord]:
        """List backups, newest first."""
        svc = guarded(ctx)
        return run(lambda: svc.list(tenant, database, store))

    @mcp.tool(annotations=READ_ONLY)
    def get_backup(ctx: Context, backup_id: BackupId) -> BackupRecord:
        """One backup's record: size, checksum, table row counts, last verification."""
        svc = guarded(ctx)
        return run(lambda: svc.get(backup_id))

    @mcp.tool(annotations=DESTRUCTIVE)
    def delete_backup(ctx: Context, backup_id: BackupId, confirm: Confirm = False) -> BackupRecord:
        """Delete a backup for good (its record first, then its objects); returns the deleted record."""
        svc = guarded(ctx)

        def go() -> BackupRecord:
            if confirm is not True:
                svc.refuse_unconfirmed("delete", backup_id, f"refusing to delete {backup_id} without confirm: true")
            return svc.delete(backup_id)

        return run(go)

    if offers(service, "verify"):

        @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                              open_world_hint=False))
        async def verify_backup(
            ctx: Context,
            backup_id: BackupId,
            drill: Annotated[Flag, Field(description="Also restore into a scratch database and compare row counts.")] = False,
        ) -> BackupRecord:
            """Check a backup's checksums (and with drill, prove it restores); returns the updated record."""
            svc = guarded(ctx)
            return await run_long(lambda: svc.verify(backup_id, drill=drill))

    if offers(service, "restore"):

        @mcp.tool(annotations=DESTRUCTIVE)
        async def restore_backup(
            ctx: Context,
            backup_id: BackupId,
            database: Annotated[DbName | None, Field(description="Target database NAME (default: the backup's own).")] = None,
            mode: Annotated[Literal["atomic", "clean", "new"] | None, Field(description="atomic (default if the target exists), clean or new.")] = None,
            uploads: Annotated[Flag, Field(description="Also restore the uploads tree to the tenant's configured path.")] = True,
            dry_run: Annotated[Flag, Field(description="Check everything and report; change nothing (no confirm needed).")] = False,
            with_globals: Annotated[Flag, Field(description="First create the roles from the backup's globals object that the "
                                                            "server lacks (existing roles untouched; no passwords).")] = False,
            confirm: Confirm = False,
            tables: Annotated[list[str] | None, Field(description=(
                "Restore only these tables (SCHEMA.TABLE), with mode new or into_schema (issue 19).")),] = None,
            schemas: Annotated[list[str] | None, Field(description="Restore only the tables of these schemas.")] = None,
            into_schema: Annotated[str | None, Field(description=(
                "Put the selected tables into this NEW schema of the live database, beside the live data "
                "(never touches existing objects).")), ] = None,
        ) -> dict[str, Any]:
            """Restore a backup: integrity checked first, then atomically; dry_run reports without changing anything.
            With tables/schemas: only those tables, into a new database (mode new) or a new schema (into_schema)."""
            svc = guarded(ctx)

            def go() -> dict[str, Any]:
                if not dry_run and confirm is not True:
                    svc.refuse_unconfirmed("restore", backup_id,
                                           f"refusing to restore {backup_id} without confirm: true (or use dry_run: true)")
                if tables or schemas or into_schema is not None:  # issue 19: a selective restore
                    return svc.restore_selective(backup_id, tables=tables or [], schemas=schemas or [], mode=mode,
                                                 into_schema=into_schema, database=database, dry_run=dry_run).to_json_dict()
                result = svc.restore(backup_id, database=database, mode=mode, uploads=uploads, dry_run=dry_run,
                                     with_globals=with_globals)
                return result.to_json_dict()

            return await run_long(go)

    if offers(service, "status"):

        @mcp.tool(annotations=READ_ONLY)
        def backup_status(
            ctx: Context, tenant: Annotated[Name | None, Field(description="Only this tenant.")] = None
        ) -> list[dict[str, Any]]:
            """Per tenant/database: last success and its age, last failure, last drill, max_age breach."""
            svc = guarded(ctx)
            return run(lambda: [row.to_json_dict() for row in svc.status(tenant)])

    # --- evidence (issue 15) ---
    @mcp.tool(annotations=READ_ONLY)
    def backup_history(ctx: Context, backup_id: BackupId) -> list[dict[str, Any]]:
        """Every verification, drill and backup event of a backup, oldest first (also of a deleted backup)."""
        svc = guarded(ctx)
        return run(lambda: svc.backup_history(backup_id))

    @mcp.tool(annotations=READ_ONLY)
    def report(
        ctx: Context,
        tenant: Annotated[Name | None, Field(description="Only this tenant.")] = None,
        since: Annotated[str, Field(min_length=1, max_length=40, description="A duration back from now (90d) or an RFC 3339 time.")] = "90d",
    ) -> dict[str, Any]:
        """The evidence report as JSON (docs/report.schema.json): runs vs schedule, gaps, drills and RTO, copies, audit."""
        svc = guarded(ctx)
        return run(lambda: svc.report(tenant, since=since).model_dump(mode="json"))

    return mcp


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
