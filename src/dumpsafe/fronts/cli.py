"""The command line: parse, confirm, call the service, render. No backup logic lives here."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from dumpsafe import __version__
from dumpsafe.errors import DumpsafeError, UsageError
from dumpsafe.fronts import output
from dumpsafe.fronts.cli_api import audit_app, mcp_cmd, serve_cmd, token_app, worker_cmd
from dumpsafe.fronts.cli_backup import backup_app
from dumpsafe.fronts.cli_common import JsonOpt, State, WideOpt, local_state, state, warn_damaged
from dumpsafe.fronts.cli_evidence import report_cmd
from dumpsafe.fronts.cli_help import EXAMPLES, readable_help
from dumpsafe.fronts.cli_setup import config_app, init_cmd, schedule_app


app = typer.Typer(
    name="dumpsafe",
    help="Verified, atomically restorable backups of tenant PostgreSQL databases and their uploads.",
    epilog=EXAMPLES,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
index_app = typer.Typer(help="The catalog cache kept in state_dir (the records live in the stores).", no_args_is_help=True)
app.add_typer(backup_app, name="backup")
app.add_typer(index_app, name="index")
app.add_typer(schedule_app, name="schedule")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(config_app, name="config")


class StatusFormat(str, Enum):
    table = "table"
    json = "json"
    prometheus = "prometheus"


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"dumpsafe {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", help="Config file [default: $DUMPSAFE_CONFIG, else ./dumpsafe.toml]."),
    ] = None,
    server: Annotated[
        Optional[str], typer.Option("--server", envvar="DUMPSAFE_SERVER", help="Run against a remote 'dumpsafe serve'.")
    ] = None,
    token: Annotated[
        Optional[str],
        typer.Option("--token", envvar="DUMPSAFE_TOKEN", help="API token for --server (prefer $DUMPSAFE_TOKEN).", show_default=False),
    ] = None,
) -> None:
    ctx.obj = State(config_path=config, server=server, token=token)


@index_app.command("rebuild")
def index_rebuild(
    ctx: typer.Context,
    store: Annotated[Optional[str], typer.Option("--store", help="Only this store.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-read every backup record from the store(s) into the local cache."""
    svc = state(ctx).service()
    counts = svc.rebuild_index(store)
    warn_damaged(getattr(svc, "last_damaged", ()))
    if as_json:
        output.emit_json(counts)
    else:
        for name, n in counts.items():
            output.info(f"store {name!r}: {n} backup{'s' if n != 1 else ''} indexed")


@app.command("prune")
def prune_cmd(
    ctx: typer.Context,
    tenant: Annotated[Optional[str], typer.Argument(help="Only this tenant.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; change nothing.")] = False,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Remove backups the retention policy no longer keeps (never the newest, never a pinned one)."""
    decisions = state(ctx).service().prune(tenant, dry_run=dry_run)
    if as_json:
        output.emit_json([d.to_json_dict() for d in decisions])
        return
    output.show_prune(decisions, dry_run, wide)


@app.command("status")
def status_cmd(
    ctx: typer.Context,
    tenant: Annotated[Optional[str], typer.Argument(help="Only this tenant.")] = None,
    as_json: JsonOpt = False,
    fmt: Annotated[
        StatusFormat, typer.Option("--format", help="table, json or prometheus (text for node_exporter's textfile collector).")
    ] = StatusFormat.table,
    wide: WideOpt = False,
) -> None:
    """Last success, last failure, last drill and next run per tenant/database. Exit 1 on any max_age breach."""
    from dumpsafe.status import any_breach

    rows = state(ctx).service(reading=True).status(tenant)
    warn_damaged(getattr(rows, "damaged", ()))
    for w in getattr(rows, "warnings", ()):
        output.info(f"warning: {w}")
    if as_json or fmt is StatusFormat.json:
        output.emit_json([r.to_json_dict() for r in rows])
    elif fmt is StatusFormat.prometheus:
        from dumpsafe import metrics

        sys.stdout.write(metrics.render(rows))
    else:
        output.show_status(rows, wide)
    if any_breach(rows):
        raise typer.Exit(1)


@app.command("recover")
def recover_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Finish or undo interrupted operations: sweep what killed backups, copies and deletes left, replay killed restores."""
    report = local_state(ctx, "recover").service().recover()
    if as_json:
        output.emit_json(report.to_json_dict())
        return
    for line in report.lines():
        output.info(line)


app.command("serve")(serve_cmd)
app.command("mcp")(mcp_cmd)
app.command("worker")(worker_cmd)  # queued jobs
app.command("init")(init_cmd)  # a newcomer's first steps
app.command("report")(report_cmd)


@app.command("keygen")
def keygen_cmd(
    out: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the identity to FILE (mode 0600) instead of stdout.")] = None,
) -> None:
    """Make an age identity (keep it with the tenant) and its recipient (put it in encrypt_to)."""
    from dumpsafe.crypto import keygen, write_identity

    text, _identity, recipient = keygen()
    if out:
        try:
            write_identity(out, text)
        except OSError as e:
            where = out.parent if isinstance(e, FileNotFoundError) else out
            raise UsageError(f"cannot write the identity to {out}: {e.strerror} ({where}; create the directory "
                             "or choose another --output)") from None
        output.info(f"identity written to {out}")
        sys.stdout.write(recipient + "\n")
    else:
        sys.stdout.write(text)
    output.info(f"recipient (for encrypt_to): {recipient}")


@app.command("demo")
def demo_cmd(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo directory and stop only the database.")] = False,
) -> None:
    """Throwaway PostgreSQL + sample data + uploads: the whole cycle, with the real CLI."""
    from dumpsafe.demo.tour import run_demo

    run_demo(keep=keep)


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place errors become messages and exit codes."""
    args = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in args or "--format=json" in args or _format_json(args)
    try:
        command = typer.main.get_command(app)
        readable_help(command)
        if not as_json:
            command(args=args, prog_name="dumpsafe")
        else:  # click's own usage errors (a bad flag or choice) become JSON too
            try:
                code = command.main(args=args, prog_name="dumpsafe", standalone_mode=False)
            except _click_error() as e:
                output.error_json(e.format_message(), "usage", e.exit_code)
                sys.exit(e.exit_code)
            sys.exit(code if isinstance(code, int) else 0)
    except DumpsafeError as e:
        if as_json:
            output.error_json(e.message, e.kind, e.exit_code)
        else:
            output.error(e.message)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        output.error("interrupted")
        sys.exit(130)


def _format_json(args: list[str]) -> bool:
    return any(a == "--format" and b == "json" for a, b in zip(args, args[1:]))


def _click_error() -> type[Exception]:
    try:  # Typer >= 0.22 carries its own copy of click
        from typer._click.exceptions import ClickException
    except ImportError:
        from click.exceptions import ClickException
    return ClickException
