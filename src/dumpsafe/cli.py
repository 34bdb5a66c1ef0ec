"""The command line: parse, confirm, call the service, render. No backup logic lives here."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from dumpsafe import __version__, output
from dumpsafe.errors import DumpsafeError, RefusedError, UsageError

from dumpsafe.cli_help import EXAMPLES, readable_help

if TYPE_CHECKING:  # config and models load pydantic: imported when a command needs them, not for --help
    from dumpsafe.config import Config


app = typer.Typer(
    name="dumpsafe",
    help="Verified, atomically restorable backups of tenant PostgreSQL databases and their uploads.",
    epilog=EXAMPLES,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
backup_app = typer.Typer(help="Create, list, inspect, verify, restore and delete backups.", no_args_is_help=True)
app.add_typer(backup_app, name="backup")


@dataclass
class State:
    config_path: Optional[Path] = None
    server: Optional[str] = None
    token: Optional[str] = field(default=None, repr=False)
    _config: Optional[Config] = None
    _service: Any = None

    def config(self, reading: bool = False) -> Config:
        """The config; ``reading`` commands (list, get, status) never notify, so skip checking notify URLs."""
        if self._config is None:
            from dumpsafe.config import load_config

            self._config = load_config(self.config_path, check_notify=not reading)
        return self._config

    def service(self, reading: bool = False) -> Any:
        """The service the commands call: local, or a REST client when --server is given."""
        if self._service is None and self.server:  # issue 6: the same commands over REST
            from dumpsafe.remote import RemoteService

            self._service = RemoteService(self.server, self.token)
        if self._service is None:
            from dumpsafe.service import BackupService

            self._service = BackupService(self.config(reading))
        return self._service


def validate_backup_id(value: str) -> str:
    from dumpsafe.models import validate_backup_id as check

    return check(value)


def _state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State)


def confirm(question: str, yes: bool, refusal: str) -> None:
    """Ask on a terminal; without one, only --yes proceeds."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise RefusedError(refusal)
    if not typer.confirm(question, default=False):
        raise RefusedError("cancelled; nothing was changed")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
WideOpt = Annotated[bool, typer.Option("--wide", "-w", help="Show every column in full, whatever the terminal width.")]
IdArg = Annotated[str, typer.Argument(help="Backup ID (see 'dumpsafe backup list').", show_default=False, metavar="ID")]


class RestoreMode(str, Enum):
    atomic = "atomic"
    clean = "clean"
    new = "new"


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


# ---- backup ---------------------------------------------------------------------------------
@backup_app.command("create")
def backup_create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="Tenant name from the config.")],
    database: Annotated[Optional[list[str]], typer.Option("--database", "-d", help="Only this database (repeatable).")] = None,
    store: Annotated[Optional[str], typer.Option("--store", help="Store name from the config.")] = None,
    no_uploads: Annotated[bool, typer.Option("--no-uploads", help="Skip the tenant's uploads tree.")] = False,
    label: Annotated[Optional[str], typer.Option("--label", help="Free text kept in the record.")] = None,
    pin: Annotated[bool, typer.Option("--pin", help="Never prune this backup.")] = False,
    as_json: JsonOpt = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help=(
        "With --server and a queue (the server answers 202): follow the job to its end and print the records "
        "(default), or print the job's ID (--json: the job) and return at once."))] = True,
) -> None:
    """Back up a tenant's databases (and uploads) to a store."""
    svc = _state(ctx).service()
    if not wait and hasattr(svc, "submit_create"):  # issue 16: --no-wait against a queueing server
        records, job = svc.submit_create(tenant, databases=database or None, store=store, uploads=not no_uploads,
                                         label=label, pin=pin)
        if job is not None:
            if as_json:
                output.emit_json(job)
            else:
                print(job["id"])
                output.info(f"queued as job {job['id']}{' (already waiting)' if job.get('already_queued') else ''}; "
                            f"GET /v1/jobs/{job['id']} shows its state")
            return
    else:
        records = svc.create(
            tenant, databases=database or None, store=store, uploads=not no_uploads, label=label, pin=pin,
            progress=output.progress_for(as_json),
        )
    for r in records:
        if getattr(r, "clock_behind_s", None):
            output.info(f"warning: the clock is {r.clock_behind_s:.0f}s behind the newest earlier backup of "
                        f"{r.tenant}/{r.database}; ordering and retention follow the backup sequence, not the clock")
    if as_json:
        output.emit_json([r.to_json_dict() for r in records])  # always an array, whatever the count
    else:
        output.show_records(records, False)


@backup_app.command("list")
def backup_list(
    ctx: typer.Context,
    tenant: Annotated[Optional[str], typer.Argument(help="Only this tenant.")] = None,
    database: Annotated[Optional[str], typer.Option("--database", "-d", help="Only this database.")] = None,
    store: Annotated[Optional[str], typer.Option("--store", help="Only this store.")] = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List backups, newest first (read from the stores themselves).

    On a terminal the table fits its width (columns the ID already holds go first); --wide shows all.
    """
    from dumpsafe.service import BackupService

    svc = _state(ctx).service(reading=True)
    if as_json and isinstance(svc, BackupService):  # 100,000 records: cached JSON, no model each (issue 16)
        pieces, damaged = svc.list_json(tenant, database, store)
        output.write_pieces(pieces)
        _warn_damaged(damaged)
        return
    records = svc.list(tenant, database, store)
    output.show_records(records, as_json, wide)
    _warn_damaged(getattr(records, "damaged", ()))


def _warn_damaged(damaged) -> None:
    """One stderr line per damaged record (stdout, and so --json, stays unchanged)."""
    for d in damaged:
        output.info(d.warning())


@backup_app.command("get")
def backup_get(ctx: typer.Context, backup_id: IdArg, as_json: JsonOpt = False) -> None:
    """Show one backup's record."""
    validate_backup_id(backup_id)
    svc = _state(ctx).service(reading=True)
    output.show_record(svc.get(backup_id), as_json)
    if not as_json:  # issue 15: its verification history below the record ('backup history ID --json' for all)
        events = svc.backup_history(backup_id)
        if events:
            output.show_history(events)


@backup_app.command("delete")
def backup_delete(
    ctx: typer.Context,
    backup_id: IdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a backup: its record first, then its objects."""
    validate_backup_id(backup_id)
    svc = _state(ctx).service()
    rec = svc.get(backup_id)
    confirm(
        f"Delete backup {rec.id} ({rec.tenant}/{rec.database}, {output.human_size(rec.size_bytes)})?",
        yes,
        f"refusing to delete {backup_id} without confirmation (pass --yes)",
    )
    svc.delete(backup_id)
    output.info(f"deleted {backup_id}")


# --- restore & verify (issue 3) ---
IdentityOpt = Annotated[
    Optional[Path],
    typer.Option("--identity", help="age identity file for encrypted backups [default: tenant identity_file, $DUMPSAFE_AGE_IDENTITY]."),
]


@backup_app.command("export")
def backup_export(
    ctx: typer.Context,
    backup_id: IdArg,
    output_: Annotated[str, typer.Option("--output", "-o", help="Write to this file, or - for stdout.")] = "-",
    identity: IdentityOpt = None,
    uploads: Annotated[bool, typer.Option("--uploads", help="Export the uploads tar instead of the database archive.")] = False,
) -> None:
    """Write a backup's plain pg_dump custom-format archive (or --uploads tar), SHA-256 checked on the way:
    readable with pg_restore (or tar) alone. A mismatch exits non-zero (and removes a partial --output file)."""
    validate_backup_id(backup_id)
    svc = _state(ctx).service()
    if type(svc).__name__ != "BackupService":
        raise UsageError("backup export is not available with --server yet (run it where the stores are reachable)")
    if output_ == "-":
        sys.stdout.flush()
        info = svc.export(backup_id, sys.stdout.buffer, uploads=uploads, identity=identity)
        sys.stdout.buffer.flush()
        output.info(f"exported {info['object']} of {info['backup_id']} ({info['bytes']:,} bytes, checksum verified)")
    else:
        info = svc.export(backup_id, Path(output_), uploads=uploads, identity=identity)
        output.info(f"exported {info['object']} of {info['backup_id']} to {info['output']} "
                    f"({info['bytes']:,} bytes, {info['format']}, checksum verified)")


@backup_app.command("verify")
def backup_verify(
    ctx: typer.Context,
    backup_id: IdArg,
    drill: Annotated[bool, typer.Option("--drill", help="Also restore into a scratch database and compare row counts.")] = False,
    identity: IdentityOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a backup's checksums and archive (with --drill: restore it for real); exit 1 if it fails."""
    validate_backup_id(backup_id)
    svc = _state(ctx).service()
    try:
        record = svc.verify(backup_id, drill=drill, identity=identity, progress=output.progress_for(as_json))
    except DumpsafeError:
        if as_json:  # scripts still get the record with its failed last_verification
            try:
                output.emit_json(svc.get(backup_id).to_json_dict())
            except DumpsafeError:
                pass
        raise
    output.show_verification(record, as_json)


@backup_app.command("restore")
def backup_restore(
    ctx: typer.Context,
    backup_id: IdArg,
    database: Annotated[Optional[str], typer.Option("--database", "-d", help="Target database [default: the backup's own].")] = None,
    mode: Annotated[
        Optional[RestoreMode],
        typer.Option("--mode", help="atomic (staging db + swap), clean (pg_restore --clean in one transaction) or new. "
                                    "[default: atomic if the target exists, else new]"),
    ] = None,
    no_uploads: Annotated[bool, typer.Option("--no-uploads", help="Leave the uploads tree alone.")] = False,
    uploads_to: Annotated[Optional[Path], typer.Option("--uploads-to", help="Restore the uploads tree into this directory.")] = None,
    keep_old: Annotated[bool, typer.Option("--keep-old", help="atomic: keep the replaced database under a new name.")] = False,
    identity: IdentityOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything and report; change nothing.")] = False,
    with_globals: Annotated[bool, typer.Option(
        "--with-globals", help="First create the roles from the backup's globals that the server lacks (no passwords).")] = False,
    no_owner: Annotated[bool, typer.Option(
        "--no-owner", help="The connecting user owns the database and its objects (the backup's owner roles need not exist).")] = False,
    owner: Annotated[Optional[str], typer.Option(
        "--owner", help="This role owns the database and its objects instead of the backup's owners.")] = None,
    no_tablespaces: Annotated[bool, typer.Option(
        "--no-tablespaces", help="Put the database and its objects in the server's default tablespace.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
    table: Annotated[Optional[list[str]], typer.Option(
        "--table", "-t", help="Restore only this table, SCHEMA.TABLE or as 'backup get' shows it (repeatable; "
                              "with --mode new or --into-schema).")] = None,
    schema: Annotated[Optional[list[str]], typer.Option(
        "--schema", help="Restore only the tables of this schema (repeatable; with --mode new or --into-schema).")] = None,
    into_schema: Annotated[Optional[str], typer.Option(
        "--into-schema", help="Put the selected tables into this NEW schema of the live database (never touches "
                              "existing objects).")] = None,
) -> None:
    """Restore a backup: integrity first, then atomically (nothing half-done is ever visible).
    With --table/--schema: only those tables, into a new database (--mode new) or a new schema (--into-schema)."""
    validate_backup_id(backup_id)
    mode = mode.value if isinstance(mode, RestoreMode) else mode
    svc = _state(ctx).service()
    if table or schema or into_schema is not None:  # issue 19: some tables, into a new database or a new schema
        if no_uploads or uploads_to or keep_old or with_globals or no_owner or owner or no_tablespaces:
            raise UsageError("--table/--schema/--into-schema restore tables only: leave out the uploads, --keep-old, "
                             "--with-globals and ownership options")
        result = svc.restore(backup_id, tables=table or [], schemas=schema or [], mode=mode,
                             into_schema=into_schema, database=database, dry_run=dry_run, identity=identity,
                             progress=output.progress_for(as_json))
        output.show_selective(result, as_json)
        return
    opts = dict(database=database, uploads=not no_uploads, uploads_to=uploads_to, keep_old=keep_old, with_globals=with_globals)
    if not dry_run:
        plan = svc.restore_plan(backup_id, mode=mode, **opts)
        if plan.destructive:
            # replacing a database ends the other sessions connected to it: say so before asking
            confirm(f"{plan.describe()[0].upper()}{plan.describe()[1:]} (other sessions on the target database "
                    "will be ended)?", yes,
                    f"refusing to {plan.describe()} without confirmation (pass --yes)")
        mode = plan.mode  # what was confirmed is what runs
    props = {k: v for k, v in (("no_owner", no_owner), ("owner", owner), ("no_tablespaces", no_tablespaces)) if v}
    result = svc.restore(backup_id, mode=mode, dry_run=dry_run, identity=identity, progress=output.progress_for(as_json),
                         **props, **opts)
    if dry_run:
        output.show_preflight(result, as_json)
        if not result.ok:
            sys.exit(1)
    else:
        output.show_restore(result, as_json)


# --- stores (issue 4) ---
index_app = typer.Typer(help="The catalog cache kept in state_dir (the records live in the stores).", no_args_is_help=True)
app.add_typer(index_app, name="index")


@backup_app.command("copy")
def backup_copy(
    ctx: typer.Context,
    backup_id: IdArg,
    to: Annotated[str, typer.Option("--to", help="Store name from the config to copy into.", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Copy a backup to another store, checking its SHA-256 on arrival (3-2-1)."""
    validate_backup_id(backup_id)
    rec = _state(ctx).service().copy(backup_id, to=to, progress=output.progress_for(as_json))
    if as_json:
        output.emit_json(rec.to_json_dict())
    else:
        output.info(f"copied {rec.id} to store {to!r} ({rec.location}); checksums match")


@index_app.command("rebuild")
def index_rebuild(
    ctx: typer.Context,
    store: Annotated[Optional[str], typer.Option("--store", help="Only this store.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-read every backup record from the store(s) into the local cache."""
    svc = _state(ctx).service()
    counts = svc.rebuild_index(store)
    _warn_damaged(getattr(svc, "last_damaged", ()))
    if as_json:
        output.emit_json(counts)
    else:
        for name, n in counts.items():
            output.info(f"store {name!r}: {n} backup{'s' if n != 1 else ''} indexed")

# --- retention/status (issue 5) ---
from dumpsafe.cli_setup import config_app, init_cmd, schedule_app  # noqa: E402  (commands live in cli_setup.py)

app.add_typer(schedule_app, name="schedule")


@app.command("prune")
def prune_cmd(
    ctx: typer.Context,
    tenant: Annotated[Optional[str], typer.Argument(help="Only this tenant.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; change nothing.")] = False,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Remove backups the retention policy no longer keeps (never the newest, never a pinned one)."""
    decisions = _state(ctx).service().prune(tenant, dry_run=dry_run)
    if as_json:
        output.emit_json([d.to_json_dict() for d in decisions])
        return
    output.show_prune(decisions, dry_run, wide)


@backup_app.command("pin")
def backup_pin(ctx: typer.Context, backup_id: IdArg) -> None:
    """Pin a backup: prune never removes it."""
    validate_backup_id(backup_id)
    _state(ctx).service().pin(backup_id)
    output.info(f"pinned {backup_id}")


@backup_app.command("unpin")
def backup_unpin(ctx: typer.Context, backup_id: IdArg) -> None:
    """Unpin a backup: the retention policy decides again."""
    validate_backup_id(backup_id)
    _state(ctx).service().unpin(backup_id)
    output.info(f"unpinned {backup_id}")


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

    rows = _state(ctx).service(reading=True).status(tenant)
    _warn_damaged(getattr(rows, "damaged", ()))
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


# --- crash safety (issue 13) ---
def _local(ctx: typer.Context, command: str) -> State:
    from dumpsafe.errors import UsageError

    st = _state(ctx)
    if st.server:
        raise UsageError(f"'dumpsafe {command}' runs on the host with the config; drop --server/DUMPSAFE_SERVER")
    return st


@backup_app.command("repair")
def backup_repair(ctx: typer.Context, backup_id: IdArg, as_json: JsonOpt = False) -> None:
    """Bring back a damaged or missing record: from its copy beside the objects, else rebuilt from them."""
    validate_backup_id(backup_id)
    result = _local(ctx, "backup repair").service().repair(backup_id)
    if as_json:
        output.emit_json(result.to_json_dict())
        return
    rec = result.record
    if result.source == "sound":
        output.info(f"the record of {rec.id} is sound; nothing to repair")
    elif result.source == "copy":
        output.info(f"restored the record of {rec.id} from its copy; check it with 'dumpsafe backup verify {rec.id}'")
    else:
        output.info(f"rebuilt the record of {rec.id} from its objects (unproven: {', '.join(rec.repaired['unproven'])}); "
                    f"check it with 'dumpsafe backup verify {rec.id}'")


@app.command("recover")
def recover_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Finish or undo interrupted operations: sweep what killed backups, copies and deletes left, replay killed restores."""
    report = _local(ctx, "recover").service().recover()
    if as_json:
        output.emit_json(report.to_json_dict())
        return
    for line in report.lines():
        output.info(line)


# --- serve, tokens, mcp (issue 6) ---
from dumpsafe.cli_api import audit_app, mcp_cmd, serve_cmd, token_app, worker_cmd  # noqa: E402  (commands live in cli_api.py)

app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.command("serve")(serve_cmd)
app.command("mcp")(mcp_cmd)
app.command("worker")(worker_cmd)  # issue 16: queued jobs
app.command("init")(init_cmd)  # issue 14: a newcomer's first steps
app.add_typer(config_app, name="config")
from dumpsafe.cli_evidence import backup_history_cmd, report_cmd  # noqa: E402  (issue 15)

app.command("report")(report_cmd)
backup_app.command("history")(backup_history_cmd)


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
            from dumpsafe.errors import UsageError

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
    from dumpsafe.demo import run_demo

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
