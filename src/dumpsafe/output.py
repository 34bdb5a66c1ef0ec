"""Rendering for the CLI: the same result as a Rich table or as JSON, from one call site."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress as RichProgressBar,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from dumpsafe.models import BackupRecord, rfc3339
from dumpsafe.progress import NULL, Advance, Progress


def stdout() -> Console:
    # not a terminal (a pipe, a file, a test): wide enough that IDs never fold
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)


def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def error(message: str) -> None:
    stderr().print(f"[bold red]error:[/] {message}", markup=True, highlight=False)


def info(message: str) -> None:
    stderr().print(message, highlight=False)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _verified(r: BackupRecord) -> str:
    v = r.last_verification
    if v is None:
        return "-"
    return f"{v.result} ({v.kind})"


def records_table(records: Iterable[BackupRecord]) -> Table:
    t = Table(show_edge=False, header_style="bold")
    for col in ("ID", "TENANT", "DATABASE", "CREATED (UTC)", "SIZE", "SHA-256", "STORE", "VERIFIED", "NOTE"):
        t.add_column(col, no_wrap=col in ("ID", "CREATED (UTC)", "SIZE"), overflow="fold")
    for r in records:
        note = " ".join(x for x in (("pinned" if r.pinned else ""), (r.label or "")) if x)
        t.add_row(
            r.id, r.tenant, r.database, r.created_at.strftime("%Y-%m-%d %H:%M:%S"), human_size(r.size_bytes),
            r.sha256[:12], r.store, _verified(r), note or "-",
        )
    return t


def show_records(records: list[BackupRecord], as_json: bool) -> None:
    if as_json:
        emit_json([r.to_json_dict() for r in records])
        return
    if not records:
        info("no backups")
        return
    stdout().print(records_table(records))


def show_record(record: BackupRecord, as_json: bool) -> None:
    if as_json:
        emit_json(record.to_json_dict())
        return
    c = stdout()
    t = Table(show_header=False, show_edge=False, box=None)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    rows = [
        ("id", record.id),
        ("tenant / database", f"{record.tenant} / {record.database}"),
        ("created", rfc3339(record.created_at)),
        ("completed", rfc3339(record.completed_at)),
        ("server", f"PostgreSQL {record.server_version} (pg_dump {record.client_version or '?'})"),
        ("store", f"{record.store}  {record.location}"),
        ("size", f"{human_size(record.size_bytes)} ({record.size_bytes} bytes, {record.compression}"
                 f"{', ' + record.encryption if record.encryption else ''})"),
        ("sha256", record.sha256),
        ("uploads", f"{record.uploads.files} files, {human_size(record.uploads.bytes)}" if record.uploads else "-"),
        ("label", record.label or "-"),
        ("pinned", "yes" if record.pinned else "no"),
    ]
    if record.last_verification:
        v = record.last_verification
        rows.append(("last verification", f"{v.result} ({v.kind}) at {rfc3339(v.at)}: {v.detail}"))
    else:
        rows.append(("last verification", "never"))
    for k, v in rows:
        t.add_row(k, str(v))
    c.print(t)
    if record.tables:
        tt = Table(show_edge=False, header_style="bold")
        tt.add_column("TABLE")
        tt.add_column("ROWS", justify="right")
        for name, n in sorted(record.tables.items()):
            tt.add_row(name, f"{n:,}")
        c.print(tt)


class RichProgress:
    """A byte-counting bar per long task (dump, upload, download, restore)."""

    def __init__(self) -> None:
        self._bar = RichProgressBar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=stderr(),
            transient=False,
        )

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Advance]:
        with self._bar:
            tid = self._bar.add_task(description, total=total)
            yield lambda n: self._bar.advance(tid, n)
            if total is None:
                done = self._bar.tasks[[t.id for t in self._bar.tasks].index(tid)].completed
                self._bar.update(tid, total=done, completed=done)


def progress_for(as_json: bool) -> Progress:
    if as_json or not sys.stdout.isatty():
        return NULL
    return RichProgress()


# ---- restore & verify (issue 3) ---------------------------------------------------------------
def _kv_table(rows: list[tuple[str, str]]) -> Table:
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
        tt = Table(show_edge=False, header_style="bold")
        tt.add_column("TABLE")
        tt.add_column("ROWS", justify="right")
        for name, n in pf.tables.items():
            tt.add_row(name, f"{n:,}")
        c.print(tt)
    for p in pf.problems:
        error(p)
