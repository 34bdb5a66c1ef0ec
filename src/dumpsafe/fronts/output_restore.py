"""What the CLI prints for restores and verifications: the result of a restore (whole or
selective), of a dry run (the preflight report) and of a verification; JSON with --json."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dumpsafe.fronts.output import emit_json, error, human_size, stdout

if TYPE_CHECKING:  # rich's Table loads when a report is printed, not for --help
    from rich.table import Table

    from dumpsafe.models import BackupRecord


def _kv_table(rows: list[tuple[str, str]]) -> Table:
    from rich.table import Table

    t = Table(show_header=False, show_edge=False, box=None)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for k, v in rows:
        t.add_row(k, v)
    return t


def show_verification(record: BackupRecord, as_json: bool) -> None:
    if as_json:
        emit_json(record.to_json_dict())
        return
    v = record.last_verification
    rows = [("backup", record.id), ("result", f"{v.result} ({v.kind})"), ("detail", v.detail)]
    extra = v.model_extra or {}
    if "rto_s" in extra:
        rows.append(("restore time (RTO)", f"{extra['rto_s']:.1f}s on {extra.get('server', '?')}"))
    stdout().print(_kv_table(rows))


def show_restore(result, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_json_dict())
        return
    rows = [
        ("restored", f"{result.backup_id} -> {result.database} on {result.server} ({result.mode})"),
        ("tables", f"{result.tables} ({result.rows:,} rows, counts match the record)"),
        ("uploads", f"{result.uploads['files']} files into {result.uploads_to}" if result.uploads else "-"),
        ("took", f"{result.duration_s:.1f}s"),
    ]
    if result.kept_old:
        rows.append(("previous database kept as", result.kept_old))
    if getattr(result, "sessions_ended", 0):
        rows.append(("other sessions ended", f"{result.sessions_ended} (connected to the replaced database)"))
    if result.globals is not None:
        g = result.globals
        rows.append(("roles created", ", ".join(g["roles_created"]) or "none (all present)"))
        if g["memberships_granted"]:
            rows.append(("memberships", ", ".join(g["memberships_granted"])))
        if g["tablespaces_skipped"]:
            rows.append(("tablespaces skipped", ", ".join(g["tablespaces_skipped"]) + " (create them on the server by hand)"))
        if g["roles_created"]:
            rows.append(("passwords", g["passwords"]))
    stdout().print(_kv_table(rows))


def show_selective(result, as_json: bool) -> None:
    """A selective restore's result, or its dry run."""
    if as_json:
        emit_json(result.to_json_dict())
        return
    where = f"schema {result.into_schema!r} of " if result.into_schema else "new database "
    head = "would restore" if result.dry_run else "restored"
    rows = [(head, f"{len(result.tables)} table(s) of {result.backup_id} into {where}{result.database!r} on {result.server}")]
    rows += [(k, f"{n:,} rows" + ("" if result.dry_run else ", matches the record")) for k, n in result.tables.items()]
    if result.dry_run:
        rows.append(("would create", "\n".join(result.would_create)))
    if result.left_out:
        rows.append(("left out", "\n".join(result.left_out)))
    if not result.dry_run:
        rows.append(("took", f"{result.duration_s:.1f}s"))
    stdout().print(_kv_table(rows))


def show_preflight(pf, as_json: bool) -> None:
    if as_json:
        emit_json(pf.to_json_dict())
        return
    c = stdout()
    verdict = "ready to restore" if pf.ok else f"{len(pf.problems)} problem(s)"
    v = pf.versions
    disk = "; ".join(
        f"{d['where']}: {human_size(d['free_bytes']) if d['free_bytes'] is not None else 'unknown'} free, "
        f"{human_size(d['need_bytes'])} needed" + ("" if d["ok"] is not False else " (NOT ENOUGH)")
        for d in pf.disk
    )
    rows = [
        ("dry run", f"{pf.backup_id} -> {pf.database} on {pf.server} ({pf.mode}); nothing was changed"),
        ("verdict", verdict),
        ("integrity", ", ".join(f"{i['role']} ok" for i in pf.integrity) + " (SHA-256 and size match)"),
        ("tables", f"{len(pf.tables)} in the record, {pf.table_data_entries} TABLE DATA entries in the archive"),
        ("would drop", ", ".join(pf.would_drop) or "-"),
        ("would create", ", ".join(pf.would_create) or "-"),
        ("would replace", ", ".join(pf.would_replace) or "-"),
    ]
    if pf.would_keep:
        rows.append(("left as they are", ", ".join(pf.would_keep)))
    rows += [
        ("roles needed", ", ".join(pf.roles_needed) or "-"),
        ("roles missing", ", ".join(pf.roles_missing) or "none"),
        ("roles in globals missing", "-" if pf.globals_roles_missing is None else (", ".join(pf.globals_roles_missing) or "none")),
        ("extensions", ", ".join(pf.extensions_needed) or "-"),
        ("extensions missing", ", ".join(pf.extensions_missing) or "none"),
        ("versions", f"pg_restore {v['pg_restore']}, archive by pg_dump {v['pg_dump']} from server "
                     f"{v['dumped_from_server']}, target server {v['target_server']}"),
        ("disk", disk),
        ("uploads", pf.uploads_to or "-"),
    ]
    rows += [("note", n) for n in pf.notes]
    c.print(_kv_table(rows))
    if pf.tables:
        from rich.table import Table

        tt = Table(show_edge=False, header_style="bold")
        tt.add_column("TABLE")
        tt.add_column("ROWS", justify="right")
        for name, n in pf.tables.items():
            tt.add_row(name, f"{n:,}")
        c.print(tt)
    for p in pf.problems:
        error(p)
