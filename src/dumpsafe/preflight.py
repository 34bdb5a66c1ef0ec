"""``restore --dry-run``: check everything a restore needs and report it; change nothing.

Each object is streamed once (hash + size checked, archive parsed on the way, nothing kept),
then the target server is only read: objects, roles, extensions, versions, free space.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dumpsafe import fetch, restore_globals
from dumpsafe.compare import clean_fixed_properties, known_tables
from dumpsafe.engines import files, postgres
from dumpsafe.engines import inventory, pg_globals
from dumpsafe.engines import databases as dbs
from dumpsafe.engines import dbspec
from dumpsafe.engines import toc as tocs
from dumpsafe.engines.sqlsession import open_session
from dumpsafe.engines.postgres import tool_version
from dumpsafe.errors import RestoreFailed
from dumpsafe.models import BackupRecord, ObjectRef
from dumpsafe.progress import Progress
from dumpsafe.restore_models import Preflight

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def tables_without_data(record: BackupRecord, toc: tocs.Toc) -> list[str]:
    """Record keys of tables the archive holds no TABLE DATA for."""
    have = set(toc.table_data())
    quoted = record.table_keys == "quoted"
    return sorted(k for k in record.tables if tocs.split_key(k, quoted) not in have)


def inspect_database(store, record: BackupRecord, ref: ObjectRef, tool: str, advance=None, identities=None) -> tocs.Toc:
    """Stream the dump once: hash it, decode it, read its TOC (and the roles its schema names)."""

    def read(stream: fetch.PlainStream) -> tocs.Toc:
        head = stream.read(5)
        if head != b"PGDMP":
            raise RestoreFailed(f"backup {record.id}: {ref.key} is not a pg_dump custom-format archive")
        sent = [False]

        def feed(n: int) -> bytes:
            if not sent[0]:
                sent[0] = True
                return head
            return stream.read(n)

        return tocs.read_toc(tool, feed, known_tables=known_tables(record))

    return fetch.consume(store, record, ref, read, advance, identities)


def inspect_uploads(store, record: BackupRecord, ref: ObjectRef, advance=None, identities=None) -> files.TreeStats:
    def scan(stream: fetch.PlainStream) -> files.TreeStats:
        try:
            return files.scan_tree_archive(stream)
        except files.UnsafeMember as e:
            raise RestoreFailed(f"backup {record.id}: the uploads archive is unsafe to extract: {e}") from None

    stats = fetch.consume(store, record, ref, scan, advance, identities)
    if record.uploads and (stats.files, stats.bytes) != (record.uploads.files, record.uploads.bytes):
        raise RestoreFailed(
            f"backup {record.id}: the uploads archive holds {stats.files} files / {stats.bytes} bytes, "
            f"the record says {record.uploads.files} / {record.uploads.bytes}"
        )
    return stats


def free_bytes(path: Path) -> int | None:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        s = os.statvfs(p)
    except OSError:
        return None
    return s.f_bavail * s.f_frsize


def preflight(restorer: Any, record: BackupRecord, plan: Any, target: postgres.PgTarget, up_ref: ObjectRef | None,
              progress: Progress) -> Any:
    svc = restorer.svc
    st = svc.store(record.store)
    db_ref = restorer._db_ref(record)
    problems: list[str] = []
    notes: list[str] = []
    fetch.check_sizes(st, record, list(record.objects))
    _, tool = restorer._tool(target, plan.database)
    integrity: list[dict[str, Any]] = []
    with progress.task(f"verify {record.id}", total=db_ref.size_bytes) as advance:
        toc = inspect_database(st, record, db_ref, restorer.toc_tool(record), advance, restorer.identities)
    integrity.append({"key": db_ref.key, "role": "database", "size_bytes": db_ref.size_bytes, "sha256": db_ref.sha256, "ok": True})
    if up_ref is not None:
        with progress.task(f"verify uploads {record.id}", total=up_ref.size_bytes) as advance:
            inspect_uploads(st, record, up_ref, advance, restorer.identities)
        integrity.append({"key": up_ref.key, "role": "uploads", "size_bytes": up_ref.size_bytes, "sha256": up_ref.sha256, "ok": True})
    glob = None
    for ref in fetch.other_objects(record):
        if ref.role == "globals":
            glob = restore_globals.read_globals(st, record, restorer.identities)  # hash-checked like every object
        else:
            fetch.check_whole(st, record, [ref], identities=restorer.identities)
        integrity.append({"key": ref.key, "role": ref.role, "size_bytes": ref.size_bytes, "sha256": ref.sha256, "ok": True})

    data_entries = toc.table_data()
    without_data = tables_without_data(record, toc)
    if without_data:
        problems.append(f"the archive has no TABLE DATA for {', '.join(without_data)}")

    dump_objs = toc.objects()
    spec = dbspec.parse_spec(toc.database_sql)
    opts = restorer.opts
    with dbs.admin(target, plan.database) as s:
        roles = dbs.existing_roles(s)
        available = dbs.available_extensions(s)
        server_version, _ = dbs.server_version(s)
        datadir = dbs.data_directory(s)
        live_props = inventory.database_properties(s, plan.database) if plan.target_exists else None
        if plan.mode != "clean":
            coming = set(glob.roles) if glob is not None and restorer.with_globals else set()
            problems += dbs.unsupported_properties(s, spec, owner=opts.owner, no_owner=opts.no_owner,
                                                   tablespaces=not opts.no_tablespaces, will_exist=coming)
    props = record.database_properties or (spec.describe() if spec else None)
    changes: list[str] = []
    if live_props is not None and props is not None:
        if plan.mode == "atomic":
            skip = {"allow_connections"} | ({"owner"} if opts.no_owner or opts.owner else set()) | \
                ({"tablespace"} if opts.no_tablespaces else set())
            changes = inventory.property_diffs(props, live_props, skip=skip)
        elif plan.mode == "clean":
            fixed = clean_fixed_properties(record, spec, live_props, plan.database, tablespaces=not opts.no_tablespaces)
            problems += fixed
            if not fixed:  # the property statements run and roll back: a role or grant that fails shows here
                with dbs.admin(target, plan.database) as s:
                    try:
                        dbs.replace_properties(s, plan.database, spec, owner=restorer._clean_owner(spec), probe=True)
                    except RestoreFailed as e:
                        problems.append(e.message)
    target_objs: set[tuple[str, str]] = set()
    if plan.target_exists:
        with open_session(target, plan.database) as s:
            target_objs = dbs.target_objects(s)
            if plan.mode == "clean" and target.exec_prefix:
                problems += dbs.clean_blockers(s)

    def fmt(objs: set[tuple[str, str]]) -> list[str]:
        return [f"{k.lower()} {n}" for k, n in sorted(objs)]

    drop = create = replace = keep = set()
    if plan.mode == "atomic":
        drop, create, replace = target_objs - dump_objs, dump_objs - target_objs, target_objs & dump_objs
    elif plan.mode == "clean":
        create, replace, keep = dump_objs - target_objs, target_objs & dump_objs, target_objs - dump_objs
    else:
        create = dump_objs

    needed = toc.roles - (toc.owners if opts.no_owner or opts.owner else set())
    if spec is not None and (opts.no_owner or opts.owner) and spec.owner not in spec.roles():
        needed.discard(spec.owner)
    if opts.owner:
        needed.add(opts.owner)
    roles_missing = sorted(needed - roles)
    globals_missing = pg_globals.missing_roles(glob, roles) if glob is not None else None
    if restorer.with_globals and globals_missing is not None:
        uncovered = [r for r in roles_missing if r not in glob.roles]
        if uncovered:
            problems.append(f"roles missing on {plan.server} and not in the backup's globals: {', '.join(uncovered)} "
                            "(create them first)")
        if glob.tablespaces:
            notes.append(f"tablespaces are not created by --with-globals: {', '.join(glob.tablespaces)}")
    elif roles_missing:
        hint = "restore with --with-globals to create them from the backup's globals" if globals_missing is not None and \
            set(roles_missing) <= set(glob.roles) else "create them first"
        problems.append(f"roles missing on {plan.server}: {', '.join(roles_missing)} ({hint})")
    ext_needed = toc.extensions()
    ext_missing = sorted(set(ext_needed) - available)
    if ext_missing:
        problems.append(f"extensions not available on {plan.server}: {', '.join(ext_missing)} (install their packages)")

    tv = tool_version(tool) if not target.exec_prefix else None
    dumped_by = toc.dumped_by or record.client_version
    dump_major = tocs.major_of(dumped_by)
    versions = {
        "pg_restore": f"{tv[0]}.{tv[1]}" if tv else ("exec" if target.exec_prefix else None),
        "pg_dump": dumped_by,
        "dumped_from_server": toc.dumped_from or record.server_version,
        "target_server": server_version,
        "archive_version": toc.header.get("Dump Version"),
    }
    if tv and dump_major and tv[0] < dump_major:
        problems.append(f"pg_restore {tv[0]}.{tv[1]} is older than the pg_dump {dumped_by} that wrote the archive")
    if tocs.major_of(versions["dumped_from_server"]) and tocs.major_of(server_version) and \
            tocs.major_of(server_version) < tocs.major_of(versions["dumped_from_server"]):
        problems.append(f"the target server ({server_version}) is older than the one dumped ({versions['dumped_from_server']})")

    raw = db_ref.raw_bytes or db_ref.size_bytes
    spool_root = Path(restorer.config.spool_dir or (Path(restorer.config.state_dir) / "spool"))
    from dumpsafe.restore_models import streams

    # atomic/new with one pg_restore job stream the dump from the store: no spool
    spooled = plan.mode == "clean" or not streams(restorer.config.restore_jobs)
    disk = [_disk("spool", spool_root, raw, "the decompressed dump")] if spooled else []
    if up_ref is not None and plan.uploads_to:
        need = record.uploads.bytes if record.uploads else (up_ref.raw_bytes or up_ref.size_bytes)
        disk.append(_disk("uploads", Path(plan.uploads_to).parent, need, "the staged tree beside the live one"))
    if datadir and target.host in LOCAL_HOSTS and not target.exec_prefix and Path(datadir).exists():
        disk.append(_disk("server", Path(datadir), raw, "at least the dump's size (indexes add more)"))
    else:
        disk.append({"where": "server", "path": datadir, "free_bytes": None, "need_bytes": raw, "ok": None,
                     "note": "server disk not visible from here; needs at least the dump's size"})
    for d in disk:
        if d["ok"] is False:
            problems.append(f"not enough free space for {d['note']} at {d['path']} ({d['free_bytes']} free, {d['need_bytes']} needed)")

    return Preflight(
        backup_id=record.id, tenant=record.tenant, database=plan.database, server=plan.server, mode=plan.mode,
        target_exists=plan.target_exists, integrity=integrity, tables=dict(sorted(record.tables.items())),
        table_data_entries=len(data_entries), tables_without_data=without_data,
        would_drop=fmt(drop), would_create=fmt(create), would_replace=fmt(replace), would_keep=fmt(keep),
        roles_needed=sorted(needed), roles_missing=roles_missing, globals_roles_missing=globals_missing,
        extensions_needed=ext_needed, extensions_missing=ext_missing,
        versions=versions, disk=disk, uploads_to=plan.uploads_to, problems=problems,
        notes=notes + [f"database property changes: {c}" for c in changes],
        database_properties=props, property_changes=changes,
    )


def _disk(where: str, path: Path, need: int, note: str) -> dict[str, Any]:
    free = free_bytes(path)
    return {"where": where, "path": str(path), "free_bytes": free, "need_bytes": need,
            "ok": None if free is None else free >= need, "note": note}
