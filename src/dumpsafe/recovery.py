"""Recovery of interrupted operations, and repair of damaged records.

``recover`` (``dumpsafe recover``; ``serve`` runs it at start) sweeps every store of what
dead writers left (``sweep.py``): uncommitted objects and unfinished uploads removed,
interrupted deletes finished, orphans removed. Every write sweeps its own store first.
A write that committed but died before its audit line gets that line now (``recovered``
set), and one that died uncommitted gets a failed line, so the audit log has no gap.
The restore journal adds its own replay here.

``repair`` brings back a damaged or missing record: from the sound copy beside its
objects, else rebuilt from the objects with the facts they prove.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

import zstandard

from dumpsafe.errors import ConflictError, DamagedRecord, DumpsafeError, NotFoundError
from dumpsafe.catalog import objects_prefix, record_copy_key
from dumpsafe.models import ID_RE, BackupRecord, ObjectRef, UploadsInfo, rfc3339, validate_backup_id
from dumpsafe.pending import marker_key, read_marker
from dumpsafe.pipeline import CHUNK, HashingReader
from dumpsafe.sweep import SweepReport, sweep

if TYPE_CHECKING:
    from dumpsafe.service import BackupService

__all__ = ["sweep", "report_sweep", "recover", "repair", "RecoveryReport"]

_ROLES = {"database.dump.zst": "database", "uploads.tar.zst": "uploads", "globals.sql.zst": "globals"}


# Other recoverable operations plug in here (the restore journal will): each step gets the
# service, finishes or undoes what it finds, and returns report lines (JSON-able too).
STEPS: list[Callable[["BackupService"], list[str]]] = []


@dataclass
class RecoveryReport:
    stores: list[SweepReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # lines from the registered STEPS

    def to_json_dict(self) -> dict[str, Any]:
        return {
            s.store: {
                "removed_uncommitted": sorted(s.removed),
                "committed": sorted(m.backup_id for m in s.committed),
                "finished_deletes": sorted(m.backup_id for m in s.finished_deletes),
                "orphans_removed": sorted(s.orphans),
                "missing_records": sorted(s.missing_records),
                "aborted_uploads": s.aborted_uploads,
                "temp_files": s.temp_files,
            }
            for s in self.stores
        } | ({"notes": self.notes} if self.notes else {})

    def lines(self) -> list[str]:
        out = []
        for s in self.stores:
            parts = [f"{len(s.removed)} uncommitted backup(s) removed", f"{len(s.committed)} committed write(s) closed",
                     f"{len(s.finished_deletes)} delete(s) finished", f"{len(s.orphans)} orphan(s) removed",
                     f"{s.aborted_uploads} unfinished upload(s) aborted"]
            out.append(f"store {s.store!r}: " + ", ".join(parts))
            out += [f"warning: backup {b} in store {s.store!r} has objects and a record copy but no record; "
                    f"run 'dumpsafe backup repair {b}'" for b in s.missing_records]
        return out + self.notes


def _audited(svc: "BackupService", backup_id: str, store: str) -> set[tuple[str, str]]:
    """(action, outcome) of the audit lines about this backup in this store."""
    return {(e.get("action"), e.get("outcome")) for e in svc.audit.entries()
            if e.get("backup_id") == backup_id and e.get("store") == store}


def _audit(svc: "BackupService", action: str, marker_data: dict, backup_id: str, store: str, error: str | None) -> None:
    fields = dict(backup_id=backup_id, tenant=marker_data.get("tenant"), database=marker_data.get("database"), store=store)
    try:
        with svc.audit.record(action, str(marker_data.get("actor") or "local"), **fields) as ev:
            ev.extra["recovered"] = True
            if error:
                raise DumpsafeError(error)
    except DumpsafeError:
        pass


def report_sweep(svc: "BackupService", rep: SweepReport) -> SweepReport:
    """Close the audit gaps a sweep found: one line per interrupted write, none twice."""
    for m in rep.committed:
        if (m.op, "ok") not in _audited(svc, m.backup_id, rep.store):
            _audit(svc, m.op, m.data, m.backup_id, rep.store, None)
    for m in rep.dead:
        if (m.op, "failed") not in _audited(svc, m.backup_id, rep.store):
            _audit(svc, m.op, m.data, m.backup_id, rep.store,
                   f"interrupted: the process died before backup {m.backup_id} was committed; its leftovers were removed")
    for m in rep.finished_deletes:
        if ("delete", "ok") not in _audited(svc, m.backup_id, rep.store):
            _audit(svc, "delete", m.data, m.backup_id, rep.store, None)
    return rep


def recover(svc: "BackupService", *, actor: str = "local") -> RecoveryReport:
    out = RecoveryReport()
    for name in svc.config.stores:
        st = svc.store(name)
        out.stores.append(report_sweep(svc, sweep(st, svc.clock(), full=True)))
    for step in STEPS:
        out.notes += step(svc)
    return out


# ---- repair ---------------------------------------------------------------------------------
def _decode_db(encoded: str) -> str:
    out, i = bytearray(), 0
    while i < len(encoded):
        if encoded[i] == "~":
            out.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            out += encoded[i].encode()
            i += 1
    return out.decode("utf-8")


def _hash(st: Any, key: str) -> tuple[str, int]:
    with st.open_read(key) as r:
        h = HashingReader(r)
        while h.read(CHUNK):
            pass
    return h.hexdigest, h.count


def _count_uploads(st: Any, key: str) -> UploadsInfo:
    files = size = 0
    with st.open_read(key) as r, zstandard.ZstdDecompressor().stream_reader(r) as raw:
        with tarfile.open(fileobj=raw, mode="r|") as tar:
            for m in tar:
                if m.isfile():
                    files += 1
                    size += m.size
    return UploadsInfo(files=files, bytes=size)


def _rebuild(svc: "BackupService", store: str, backup_id: str, now: datetime) -> BackupRecord | None:
    """A record from what the objects prove: their keys, sizes and SHA-256 (taken now), and
    the tenant, database and second the ID names. The rest is marked unproven."""
    st = svc.store(store)
    keys = [o.key for o in st.list(objects_prefix(backup_id)) if o.key != record_copy_key(backup_id)]
    objects: list[ObjectRef] = []
    for key in sorted(keys):
        name = key.rsplit("/", 1)[1]
        role = _ROLES.get(name.removesuffix(".age"))
        if role is None:
            continue
        sha, size = _hash(st, key)
        objects.append(ObjectRef(role=role, key=key, size_bytes=size, sha256=sha))
    db = next((o for o in objects if o.role == "database"), None)
    if db is None:
        return None
    objects.sort(key=lambda o: o.role != "database")
    encrypted = db.key.endswith(".age")
    unproven = ["server_version", "tables", "completed_at", "sequence", "object SHA-256 (taken at repair time)"]
    uploads = None
    up = next((o for o in objects if o.role == "uploads"), None)
    if up is not None:
        if encrypted:
            unproven.append("uploads")
        else:
            uploads = _count_uploads(st, up.key)
    m = ID_RE.match(backup_id)
    assert m is not None
    created = datetime.strptime(m["ts"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    return BackupRecord(
        id=backup_id, tenant=m["tenant"], database=_decode_db(m["db"]), server_version="unknown",
        created_at=created, completed_at=created, store=store, location=st.url(objects_prefix(backup_id)),
        size_bytes=sum(o.size_bytes for o in objects), sha256=db.sha256, encryption="age" if encrypted else None,
        tables={}, uploads=uploads, objects=objects,
        repaired={"at": rfc3339(now), "from": "objects", "unproven": unproven},
    )


@dataclass
class RepairResult:
    record: BackupRecord
    source: str  # "copy", "objects" or "sound" (nothing to repair)

    def to_json_dict(self) -> dict[str, Any]:
        return {"repaired_from": self.source, "record": self.record.to_json_dict()}


def repair(svc: "BackupService", backup_id: str, *, actor: str = "local") -> RepairResult:
    validate_backup_id(backup_id)
    tenant = backup_id.split(".", 1)[0]
    with svc.audit.record("repair", actor, backup_id=backup_id, tenant=tenant) as ev:
        repaired: RepairResult | None = None
        sound: BackupRecord | None = None
        for name in svc.stores_for(backup_id, None):
            st = svc.store(name)
            cat = svc.catalog(name)
            try:
                current = cat.get(backup_id)
            except DamagedRecord:
                current = None
            if current is not None:
                sound = sound or current
                continue
            marker = read_marker(st, marker_key(backup_id)) if st.exists(marker_key(backup_id)) else None
            if marker is not None and marker.alive(svc.clock()):
                raise ConflictError(f"backup {backup_id} is being written in store {name!r} right now; nothing to repair yet")
            svc.sweep_store(st)
            copy = cat.get_copy(backup_id)
            if copy is not None:
                rec, how = copy, "copy"
            else:
                rec, how = _rebuild(svc, name, backup_id, svc.clock()), "objects"
                if rec is None:
                    continue
            rec = cat.put(rec)
            ev.store, ev.database, ev.size_bytes = name, rec.database, rec.size_bytes
            ev.extra.setdefault("repaired", []).append({"store": name, "from": how})
            repaired = repaired or RepairResult(rec, how)
        if repaired is not None:
            return repaired
        if sound is not None:
            ev.extra["repaired"] = []
            return RepairResult(sound, "sound")
        raise NotFoundError(f"backup {backup_id!r} not found: no record, record copy or objects in any store")
