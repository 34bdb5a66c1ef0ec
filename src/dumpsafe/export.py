"""Export a backup readable without dumpsafe: its plain pg_dump custom-format archive (or the
uploads tar), decrypted and decompressed, streamed to a file or stdout with the stored bytes'
SHA-256 and size checked on the way (a mismatch is an IntegrityError once the stream ends;
the CLI then removes a partial --output file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

from dumpsafe import fetch
from dumpsafe.errors import UsageError
from dumpsafe.pipeline import CHUNK
from dumpsafe.restore import Restorer
from dumpsafe.context import ServiceContext


def record_layout(client_version: str | None, encrypted: bool) -> dict[str, Any]:
    """The ``tools`` and ``layout`` fields a new record carries, so it describes itself."""
    from importlib.metadata import version

    import zstandard

    tools = {"pg_dump": client_version or "unknown", "zstd": ".".join(map(str, zstandard.ZSTD_VERSION))
             + f" (python zstandard {version('zstandard')})"}
    if encrypted:
        tools["age"] = f"age v1 format (pyrage {version('pyrage')})"
    layout = (("each object is age-encrypted (decrypt with 'age -d -i KEY'), and inside that " if encrypted else "each object is ")
              + "zstd-compressed ('zstd -d'); role database: a pg_dump custom-format archive (pg_restore), "
              "role uploads: a tar archive in pax format (tar -x), role globals: pg_dumpall --globals-only SQL (psql)")
    return {"tools": tools, "layout": layout}


def export(svc: ServiceContext, backup_id: str, out: BinaryIO, *, uploads: bool = False, identity: Path | None = None,
           actor: str = "local") -> dict[str, Any]:
    """Copy one object's plain bytes into ``out``; return what was written (role, bytes, format)."""
    record = svc.get(backup_id)
    role = "uploads" if uploads else "database"
    with svc.audit.record("export", actor, backup_id=record.id, tenant=record.tenant, store=record.store) as ev:
        ev.extra["object"] = role
        ref = record.object(role)
        if ref is None:
            raise UsageError(f"backup {record.id} holds no {'uploads tree' if uploads else 'database dump'} to export"
                             + (" (leave out --uploads for the database)" if uploads else ""))
        identities = Restorer(svc).load_identities(record, identity)
        st = svc.store(record.store)
        fetch.check_sizes(st, record, [ref])

        def copy(stream: fetch.PlainStream) -> int:
            n = 0
            while chunk := stream.read(CHUNK):
                try:
                    out.write(chunk)
                except OSError as e:
                    raise fetch.LocalFailure(f"cannot write the export ({e.strerror}); nothing else was changed") from None
                n += len(chunk)
            return n

        n = fetch.consume(st, record, ref, copy, identities=identities)
        ev.size_bytes = n
        return {"backup_id": record.id, "object": role, "bytes": n,
                "format": "tar" if uploads else record.format, "sha256_checked": ref.sha256}


def export_to_file(svc: ServiceContext, backup_id: str, path: Path, **kw: Any) -> dict[str, Any]:
    """export() into ``path`` via a temporary sibling renamed on success; removed on any failure."""
    if path.exists() and path.is_dir():
        raise UsageError(f"--output {path} is a directory: name a file")
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        fh = open(tmp, "xb")
    except OSError as e:
        raise UsageError(f"cannot write --output {path} ({e.strerror}); name a file in a writable directory") from None
    ok = False
    try:
        with fh:
            info = export(svc, backup_id, fh, **kw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        ok = True
        return {**info, "output": str(path)}
    finally:
        if not ok:
            tmp.unlink(missing_ok=True)
