"""The ``dumpsafe backup`` commands: create, list, get, delete, export, verify, restore, copy,
pin/unpin, repair and history. Each parses, confirms, calls the service and renders."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from dumpsafe.errors import DumpsafeError, UsageError
from dumpsafe.fronts import output, output_restore
from dumpsafe.fronts.cli_common import IdArg, JsonOpt, WideOpt, confirm, local_state, state, validate_backup_id, warn_damaged
from dumpsafe.fronts.cli_evidence import backup_history_cmd

backup_app = typer.Typer(help="Create, list, inspect, verify, restore and delete backups.", no_args_is_help=True)

IdentityOpt = Annotated[
    Optional[Path],
    typer.Option("--identity", help="age identity file for encrypted backups [default: tenant identity_file, $DUMPSAFE_AGE_IDENTITY]."),
]


class RestoreMode(str, Enum):
    atomic = "atomic"
    clean = "clean"
    new = "new"


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
    svc = state(ctx).service()
    if not wait and hasattr(svc, "submit_create"):  # --no-wait against a queueing server
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
    from dumpsafe.listing import Lister

    st = state(ctx)  # locally not the whole service: listing needs no backup/restore stack
    svc = Lister(st.config(reading=True)) if st.server is None and st._service is None else st.service(reading=True)
    if as_json and isinstance(svc, Lister):  # 100,000 records: streamed JSON, no model each
        pieces, damaged = svc.list_json(tenant, database, store)
        output.write_pieces(pieces)
        warn_damaged(damaged)
        return
    records = svc.list(tenant, database, store)
    output.show_records(records, as_json, wide)
    warn_damaged(getattr(records, "damaged", ()))


@backup_app.command("get")
def backup_get(ctx: typer.Context, backup_id: IdArg, as_json: JsonOpt = False) -> None:
    """Show one backup's record."""
    validate_backup_id(backup_id)
    svc = state(ctx).service(reading=True)
    output.show_record(svc.get(backup_id), as_json)
    if not as_json:  # its verification history below the record ('backup history ID --json' for all)
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
    svc = state(ctx).service()
    rec = svc.get(backup_id)
    confirm(
        f"Delete backup {rec.id} ({rec.tenant}/{rec.database}, {output.human_size(rec.size_bytes)})?",
        yes,
        f"refusing to delete {backup_id} without confirmation (pass --yes)",
    )
    svc.delete(backup_id)
    output.info(f"deleted {backup_id}")


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
    svc = state(ctx).service()
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
    svc = state(ctx).service()
    try:
        record = svc.verify(backup_id, drill=drill, identity=identity, progress=output.progress_for(as_json))
    except DumpsafeError:
        if as_json:  # scripts still get the record with its failed last_verification
            try:
                output.emit_json(svc.get(backup_id).to_json_dict())
            except DumpsafeError:
                pass
        raise
    output_restore.show_verification(record, as_json)


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
    svc = state(ctx).service()
    if table or schema or into_schema is not None:  # some tables, into a new database or a new schema
        if no_uploads or uploads_to or keep_old or with_globals or no_owner or owner or no_tablespaces:
            raise UsageError("--table/--schema/--into-schema restore tables only: leave out the uploads, --keep-old, "
                             "--with-globals and ownership options")
        result = svc.restore(backup_id, tables=table or [], schemas=schema or [], mode=mode,
                             into_schema=into_schema, database=database, dry_run=dry_run, identity=identity,
                             progress=output.progress_for(as_json))
        output_restore.show_selective(result, as_json)
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
        output_restore.show_preflight(result, as_json)
        if not result.ok:
            sys.exit(1)
    else:
        output_restore.show_restore(result, as_json)


@backup_app.command("copy")
def backup_copy(
    ctx: typer.Context,
    backup_id: IdArg,
    to: Annotated[str, typer.Option("--to", help="Store name from the config to copy into.", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Copy a backup to another store, checking its SHA-256 on arrival (3-2-1)."""
    validate_backup_id(backup_id)
    rec = state(ctx).service().copy(backup_id, to=to, progress=output.progress_for(as_json))
    if as_json:
        output.emit_json(rec.to_json_dict())
    else:
        output.info(f"copied {rec.id} to store {to!r} ({rec.location}); checksums match")


@backup_app.command("pin")
def backup_pin(ctx: typer.Context, backup_id: IdArg) -> None:
    """Pin a backup: prune never removes it."""
    validate_backup_id(backup_id)
    state(ctx).service().pin(backup_id)
    output.info(f"pinned {backup_id}")


@backup_app.command("unpin")
def backup_unpin(ctx: typer.Context, backup_id: IdArg) -> None:
    """Unpin a backup: the retention policy decides again."""
    validate_backup_id(backup_id)
    state(ctx).service().unpin(backup_id)
    output.info(f"unpinned {backup_id}")


@backup_app.command("repair")
def backup_repair(ctx: typer.Context, backup_id: IdArg, as_json: JsonOpt = False) -> None:
    """Bring back a damaged or missing record: from its copy beside the objects, else rebuilt from them."""
    validate_backup_id(backup_id)
    result = local_state(ctx, "backup repair").service().repair(backup_id)
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


backup_app.command("history")(backup_history_cmd)
