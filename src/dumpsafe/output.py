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
