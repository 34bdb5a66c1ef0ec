"""CLI commands of the API fronts: API tokens, `serve` (REST + MCP over HTTP + scheduler), `mcp` (stdio).

cli.py registers them; they run on the server host only (never with --server).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dumpsafe.errors import DumpsafeError, UsageError
from dumpsafe.fronts import output
from dumpsafe.fronts.cli_common import JsonOpt

token_app = typer.Typer(help="API tokens for 'dumpsafe serve' (REST and MCP over HTTP).", no_args_is_help=True)


def _local_only(ctx: typer.Context, command: str) -> Any:
    """The CLI state (cli.State), refusing --server: these commands run on the server host."""
    st = ctx.obj
    if st.server:
        raise UsageError(f"'dumpsafe {command}' runs on the server host; drop --server/DUMPSAFE_SERVER")
    return st


def _token_store(ctx: typer.Context, command: str) -> Any:
    from dumpsafe.auth import TokenStore

    return TokenStore(_local_only(ctx, command).config().state_dir)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    tenant: Annotated[Optional[str], typer.Option("--tenant", help="Limit the token to this tenant.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Every tenant, and the audit log.")] = False,
    scope: Annotated[
        Optional[list[str]],
        typer.Option("--scope", help="backups:read; backups:write (all writes), or narrower: backups:create, backups:restore, backups:delete; repeatable."),
    ] = None,
    expires: Annotated[Optional[str], typer.Option("--expires", help="Lifetime like 30d, 12h, 2w (default: never).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="What the token is for.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token; its secret is printed once (on stdout) and stored only as a hash."""
    from dumpsafe.config import parse_duration

    store = _token_store(ctx, "token create")
    if admin == (tenant is not None):
        raise UsageError("pass exactly one of --tenant TENANT or --admin")
    if tenant is not None:
        ctx.obj.config().tenant(tenant)
    lifetime = None
    if expires is not None:
        try:
            lifetime = parse_duration(expires)
        except ValueError:
            raise UsageError(f"--expires {expires!r}: expected a duration like 30d, 12h or 2w") from None
    info, secret = store.create(tenant=tenant, scopes=list(scope or []), expires_in=lifetime, name=name)
    if as_json:
        output.emit_json({**info.public(), "token": secret})
        return
    who = f"tenant {tenant}" if tenant else "admin"
    until = f", expires {info.public()['expires_at']}" if info.expires_at else ""
    output.info(f"created token {info.id} ({who}; {', '.join(info.scopes)}{until}); the secret below is shown only once")
    sys.stdout.write(secret + "\n")


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    wide: Annotated[bool, typer.Option("--wide", "-w", help="Show every column in full, whatever the terminal width.")] = False,
) -> None:
    """List tokens (ids, tenants, scopes, expiry; never secrets)."""
    rows = [t.public() for t in _token_store(ctx, "token list").list()]
    if as_json:
        output.emit_json(rows)
        return
    if not rows:
        output.info("no tokens")
        return
    output.show_tokens(rows, wide)


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: Annotated[str, typer.Argument(help="Token ID (see 'dumpsafe token list').")]) -> None:
    """Revoke a token at once (the server reads the token file on every request); it stays
    listed as revoked, so the audit lines it left stay attributable."""
    _token_store(ctx, "token revoke").revoke(token_id)
    output.info(f"revoked token {token_id} (kept in 'dumpsafe token list' as revoked)")


def _recover_at_start(service: Any) -> None:
    """Finish or undo what a killed dumpsafe left (issue 13), before serving; a store that
    cannot be reached now is swept by the next write to it."""
    import logging

    from dumpsafe.errors import DumpsafeError

    log = logging.getLogger("dumpsafe.recover")
    try:
        for line in service.recover().lines():
            log.info(line)
    except DumpsafeError as e:
        log.warning("recovery at start skipped: %s", e.message)


def serve_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8421,
    no_scheduler: Annotated[bool, typer.Option("--no-scheduler", help="Do not run scheduled backups.")] = False,
    tls_cert: Annotated[Optional[Path], typer.Option("--tls-cert", help="Serve HTTPS with this PEM certificate (chain).")] = None,
    tls_key: Annotated[Optional[Path], typer.Option("--tls-key", help="The PEM private key of --tls-cert.")] = None,
) -> None:
    """Serve the REST API, MCP over HTTP at /mcp, /metrics, and the backup scheduler."""
    import uvicorn

    from dumpsafe.fronts.api import create_app
    from dumpsafe.service import BackupService

    import logging

    config = _local_only(ctx, "serve").config()
    tls = _tls_options(tls_cert, tls_key)
    handler = logging.StreamHandler()  # the scheduler's and the API's own lines, beside uvicorn's
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    logging.getLogger("dumpsafe").addHandler(handler)
    logging.getLogger("dumpsafe").setLevel(logging.INFO)
    logging.getLogger("dumpsafe").propagate = False
    service = BackupService(config)
    _recover_at_start(service)
    if config.queue:  # issue 16: the scheduler and the API queue jobs for `dumpsafe worker`
        from dumpsafe.queue import queue_for

        queue_for(config).ensure_schema()
    background: list[Any] = []
    if not no_scheduler:
        from dumpsafe.scheduler import Scheduler

        background.append(Scheduler(service, config))
    from dumpsafe.fronts.api.accesslog import log_config

    uvicorn.run(create_app(service, host=host, on_startup=background), host=host, port=port, log_level="info",
                log_config=log_config(), **tls)


def worker_cmd(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=32, help="Jobs this worker runs at once.")] = 1,
    heartbeat_s: Annotated[float, typer.Option("--heartbeat", min=0.1, help="Seconds between heartbeats (and stalled-job checks).")] = 10.0,
    stalled_after_s: Annotated[float, typer.Option("--stalled-after", min=0.5, help="A worker silent this many seconds is dead: its jobs run again elsewhere.")] = 30.0,
    poll_s: Annotated[float, typer.Option("--poll", min=0.05, help="Seconds between queue polls (new jobs also arrive by LISTEN/NOTIFY).")] = 2.0,
) -> None:
    """Run queued jobs (backup, drill, prune, copy) from the configured `queue`; any number of hosts."""
    import logging

    from dumpsafe import worker

    config = _local_only(ctx, "worker").config()
    if not config.queue:
        src = config.source or "dumpsafe.toml"
        raise UsageError(f"{src}: no queue is configured; set queue = \"postgresql://user@host/db\" to run workers "
                         "(without one, 'dumpsafe serve' runs every job itself)")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    for name in ("dumpsafe", "procrastinate"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).propagate = False
    worker.run(config, concurrency=concurrency, heartbeat_s=heartbeat_s, stalled_after_s=stalled_after_s, poll_s=poll_s)


def _tls_options(cert: Path | None, key: Path | None) -> dict[str, str]:
    """uvicorn's own ssl options, after a check that gives one sentence instead of a traceback."""
    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise UsageError("pass both --tls-cert and --tls-key (PEM files), or neither")
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise UsageError(f"--tls-cert {cert} / --tls-key {key}: cannot load them ({getattr(e, 'strerror', None) or e}); "
                         "pass a PEM certificate and its private key") from None
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def mcp_cmd(ctx: typer.Context) -> None:
    """Serve MCP on stdin/stdout as the local operator (an admin), for a local agent."""
    from dumpsafe.fronts.mcp_server import run_stdio
    from dumpsafe.service import BackupService

    run_stdio(BackupService(_local_only(ctx, "mcp").config()))


audit_app = typer.Typer(help="The audit log (state_dir/audit.jsonl).", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Check the audit log's hash chain; exit 1 naming the first broken line."""
    from dumpsafe.audit import AuditLog

    log = AuditLog(_local_only(ctx, "audit verify").config().state_dir)
    report = log.verify()
    if as_json:
        output.emit_json({"ok": report.ok, "lines": report.lines, "unchained": report.unchained,
                          "broken_line": report.broken_line, "reason": report.reason, "path": str(log.path)})
    if not report.ok:
        raise DumpsafeError(f"{log.path}: line {report.broken_line} breaks the hash chain: {report.reason} "
                            "(compare with a copy of the log kept elsewhere)")
    if not as_json:
        extra = f" ({report.unchained} older lines before the chain began)" if report.unchained else ""
        output.info(f"{log.path}: {report.lines} lines, hash chain intact{extra}")
