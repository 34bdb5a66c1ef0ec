"""Rendering for the CLI: the same result as a Rich table or as JSON, from one call site."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from typing import TYPE_CHECKING

from rich.console import Console

from dumpsafe import tables
from dumpsafe.progress import NULL, Advance, Progress, Ticker

if TYPE_CHECKING:  # imported where used: `--help` and `backup list` load only what they need
    from rich.table import Table

    from dumpsafe.models import BackupRecord


def stdout() -> Console:
    # not a terminal (a pipe, a file, a test): wide enough that IDs never fold
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)


def terminal_width(wide: bool = False) -> int | None:
    """The width tables must fit: the terminal's; None (everything in full) with --wide or no terminal."""
    if wide or not sys.stdout.isatty():
        return None
    return Console().width


def print_table(columns: list[tables.Column], steps: list[tables.Step], wide: bool = False) -> None:
    """A table fitted to the terminal (see tables.py); --wide and pipes get every column in full."""
    width = terminal_width(wide)
    layout = tables.fit(columns, steps, width)
    Console(soft_wrap=False, width=max(layout.total, width or 0)).print(tables.render(layout))


def error_json(message: str, kind: str, exit_code: int) -> None:
    """Under --json an error is a JSON object on stderr, for scripts."""
    sys.stderr.write(json.dumps({"error": message, "kind": kind, "exit_code": exit_code}) + "\n")


def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def error(message: str) -> None:
    stderr().print(f"[bold red]error:[/] {message}", markup=True, highlight=False)


def info(message: str) -> None:
    stderr().print(message, highlight=False)


def _write_bytes(data: bytes) -> None:
    binary = getattr(sys.stdout, "buffer", None)
    if binary is None:  # a text-only stream (tests redirect stdout to StringIO)
        sys.stdout.write(data.decode())
        return
    sys.stdout.flush()
    binary.write(data)
    binary.flush()


def write_pieces(pieces: Any) -> None:
    """Write an iterable of bytes to stdout as it comes (a big JSON listing, issue 16)."""
    for piece in pieces:
        _write_bytes(piece)


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


def _short_verified(text: str) -> str:
    result, _, kind = text.partition(" (")
    word = {"passed": "ok", "failed": "FAILED"}.get(result, result)
    return f"drill {word}" if kind.startswith("drill") else word


def _minutes(text: str) -> str:
    return text[:16]


# least useful first: tenant and database are in the ID, and so is the creation second
RECORD_STEPS = [
    tables.drop("TENANT"), tables.drop("DATABASE"), tables.shorten("SHA-256", lambda s: s[:8]),
    tables.shorten("CREATED (UTC)", _minutes), tables.shorten("VERIFIED", _short_verified), tables.drop("SHA-256"),
    tables.drop("STORE"), tables.drop("NOTE"), tables.drop("VERIFIED"), tables.drop("CREATED (UTC)"), tables.drop("SIZE"),
]


def records_columns(records: Iterable[BackupRecord]) -> list[tables.Column]:
    records = list(records)

    def col(header: str, cells: Iterable[str], **kw: Any) -> tables.Column:
        return tables.Column(header, tuple(cells), **kw)

    return [
        col("ID", (r.id for r in records)),
        col("TENANT", (r.tenant for r in records)),
        col("DATABASE", (r.database for r in records)),
        col("CREATED (UTC)", (r.created_at.strftime("%Y-%m-%d %H:%M:%S") for r in records)),
        col("SIZE", (human_size(r.size_bytes) for r in records), justify="right"),
        col("SHA-256", (r.sha256[:12] for r in records)),
        col("STORE", (r.store for r in records)),
        col("VERIFIED", (_verified(r) for r in records)),
        col("NOTE", (" ".join(x for x in (("pinned" if r.pinned else ""), (r.label or "")) if x) or "-" for r in records),
            flex=True),
    ]


_RECORD_LIST = None


def show_records(records: list[BackupRecord], as_json: bool, wide: bool = False) -> None:
    global _RECORD_LIST
    if as_json:
        # pydantic's own serializer: the same JSON as to_json_dict(), without the stdlib's
        # pure-Python indenting encoder (10,000 records: ~0.1 s instead of ~1 s)
        if _RECORD_LIST is None:
            from pydantic import TypeAdapter

            from dumpsafe.models import BackupRecord

            _RECORD_LIST = TypeAdapter(list[BackupRecord])
        _write_bytes(_RECORD_LIST.dump_json(records, indent=2) + b"\n")
        return
    if not records:
        info("no backups")
        return
    print_table(records_columns(records), RECORD_STEPS, wide)


def show_record(record: BackupRecord, as_json: bool) -> None:
    if as_json:
        emit_json(record.to_json_dict())
        return
    from rich.table import Table

    from dumpsafe.models import rfc3339

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
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress as RichProgressBar,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

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
            yield Ticker(lambda n: self._bar.advance(tid, n), lambda text: self._bar.update(tid, description=text))
            if total is None:
                done = self._bar.tasks[[t.id for t in self._bar.tasks].index(tid)].completed
                self._bar.update(tid, total=done, completed=done)


def progress_for(as_json: bool) -> Progress:
    if as_json or not sys.stdout.isatty():
        return NULL
    return RichProgress()


# ---- restore & verify (issue 3) ---------------------------------------------------------------
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
    """A selective restore's result, or its dry run (issue 19)."""
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


# ---- prune, status, tokens: tables fitted to the terminal ------------------------------------
def _col(header: str, cells: Iterable[str], **kw: Any) -> tables.Column:
    return tables.Column(header, tuple(cells), **kw)


PRUNE_STEPS = [tables.shorten("CREATED (UTC)", _minutes), tables.drop("STORE"), tables.drop("CREATED (UTC)")]


def show_prune(decisions: list, dry_run: bool, wide: bool = False) -> None:
    if decisions:
        print_table([
            _col("ID", (d.id for d in decisions)),
            _col("CREATED (UTC)", (d.created_at.strftime("%Y-%m-%d %H:%M:%S") for d in decisions)),
            _col("STORE", (d.store for d in decisions)),
            _col("ACTION", (d.action if d.keep or dry_run else "removed" for d in decisions)),
            _col("KEPT BY", (", ".join(d.reasons) or "-" for d in decisions), flex=True),
        ], PRUNE_STEPS, wide)
    removed = sum(not d.keep for d in decisions)
    verb = "would remove" if dry_run else "removed"
    info(f"{verb} {removed} of {len(decisions)} backups")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    from dumpsafe.status import human_duration

    return f"{human_duration(seconds)} ago"


STATUS_STEPS = [
    tables.shorten("NEXT RUN (UTC)", _minutes), tables.shorten("LAST DRILL", lambda s: s.split(" ")[0]),
    tables.drop("LAST DRILL"), tables.drop("NEXT RUN (UTC)"), tables.drop("MAX AGE"), tables.drop("RESTORABLE"),
]


def show_status(rows: list, wide: bool = False) -> None:
    print_table([
        _col("TENANT", (r.tenant for r in rows)),
        _col("DATABASE", (r.database or "-" for r in rows)),
        _col("LAST SUCCESS", (_ago(r.last_success_age_s) for r in rows)),
        _col("LAST FAILURE", (f"{r.last_failure_at:%Y-%m-%d %H:%M} {r.last_failure_error or ''}" if r.last_failure_at else "-"
                              for r in rows), flex=True),
        _col("LAST DRILL", (f"{r.last_drill_result} {r.last_drill_at:%Y-%m-%d %H:%M}" if r.last_drill_at else "-" for r in rows)),
        _col("RESTORABLE", (_ago(getattr(r, "last_restorable_age_s", None)) + (" OVERDUE" if getattr(r, "drill_overdue", False) else "")
                            for r in rows)),  # issue 15: last verified restorable (a passed drill)
        _col("NEXT RUN (UTC)", (f"{r.next_run_at:%Y-%m-%d %H:%M:%S}" if r.next_run_at else "-" for r in rows)),
        _col("MAX AGE", ("BREACHED" if r.breached else ("ok" if r.max_age_s is not None else "-") for r in rows)),
    ], STATUS_STEPS, wide)
    for r in rows:
        if r.breach:
            error(r.breach)
        if getattr(r, "drill_breach", None):
            error(r.drill_breach)


TOKEN_STEPS = [
    tables.shorten("CREATED", lambda s: s.replace("T", " ")[:16]), tables.shorten("EXPIRES", lambda s: s.replace("T", " ")[:16]),
    tables.shorten("REVOKED", lambda s: s.replace("T", " ")[:16]),
    tables.drop("CREATED"), tables.drop("NAME"), tables.drop("EXPIRES"),
]


def show_tokens(rows: list[dict[str, Any]], wide: bool = False) -> None:
    print_table([
        _col("ID", (r["id"] for r in rows)),
        _col("NAME", (r["name"] or "-" for r in rows)),
        _col("TENANT", (r["tenant"] or "(admin)" for r in rows)),
        _col("SCOPES", (" ".join(r["scopes"]) for r in rows), flex=True),
        _col("CREATED", (r["created_at"] for r in rows)),
        _col("EXPIRES", (r["expires_at"] or "never" for r in rows)),
        _col("REVOKED", (r.get("revoked_at") or "-" for r in rows)),
    ], TOKEN_STEPS, wide)


CHECK_STEPS = [tables.drop("CHECK")]


def show_checks(checks: list, wide: bool = False) -> None:
    print_table([
        _col("SUBJECT", (c.subject for c in checks)),
        _col("CHECK", (c.check for c in checks)),
        _col("RESULT", ("ok" if c.ok else "FAILED" for c in checks)),
        _col("DETAIL", (c.detail for c in checks), flex=True),
    ], CHECK_STEPS, wide)
    failed = sum(not c.ok for c in checks)
    info(f"{len(checks) - failed} of {len(checks)} checks passed" + (f"; {failed} failed" if failed else ""))


# ---- history (issue 15) -----------------------------------------------------------------------
HISTORY_STEPS = [tables.drop("ACTOR")]


def show_history(events: list) -> None:
    print_table([
        _col("TIME (UTC)", (f"{e.at:%Y-%m-%d %H:%M:%S}" for e in events)),
        _col("KIND", (e.kind for e in events)),
        _col("OUTCOME", (e.outcome for e in events)),
        _col("RTO", (f"{e.rto_s:.1f}s" if e.rto_s is not None else "-" for e in events)),
        _col("ACTOR", (e.actor for e in events)),
        _col("DETAIL", (e.detail or "-" for e in events), flex=True),
    ], HISTORY_STEPS, False)
