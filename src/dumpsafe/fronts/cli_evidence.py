"""`dumpsafe report` and `dumpsafe backup history` (issue 15): parse, call the service, render."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from dumpsafe.fronts import output


class ReportFormat(str, Enum):
    html = "html"
    md = "md"
    json = "json"


def report_cmd(
    ctx: typer.Context,
    tenant: Annotated[Optional[str], typer.Argument(help="Only this tenant (default: every tenant).")] = None,
    since: Annotated[str, typer.Option("--since", help="Window: a duration back from now (90d, 12h) or an RFC 3339 time.")] = "90d",
    fmt: Annotated[ReportFormat, typer.Option("--format", help="html (one self-contained file), md or json.")] = ReportFormat.html,
    out: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE instead of stdout.")] = None,
) -> None:
    """Evidence report: schedule vs runs, gaps over max_age, drills and RTO, integrity, encryption, copies, audit."""
    from dumpsafe.errors import UsageError
    from dumpsafe.report_render import render
    from dumpsafe.fsutil import replace_private

    text = render(ctx.obj.service(reading=True).report(tenant, since=since), fmt.value)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        replace_private(out, text.encode())  # the report names tenants and backups: 0600
    except OSError as e:
        raise UsageError(f"cannot write the report to {out}: {e.strerror} (choose another --output)") from None
    output.info(f"report written to {out}")



def backup_history_cmd(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(help="Backup ID (also of a deleted backup).", metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every verification, drill and backup event of one backup, oldest first."""
    from dumpsafe.errors import NotFoundError
    from dumpsafe.models import validate_backup_id

    validate_backup_id(backup_id)
    events = ctx.obj.service(reading=True).backup_history(backup_id)
    if as_json:
        output.emit_json([e.model_dump(mode="json") for e in events])
        return
    if not events:
        raise NotFoundError(f"backup {backup_id!r} has no history (see 'dumpsafe backup list')")
    output.show_history(events)
