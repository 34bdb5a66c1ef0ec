"""The backup write path: create one backup, copy one to another store, delete one.

Every write runs under a pending marker (``pending.py``) written before its first object
and removed after its record and its audit line, so a crash at any step is finished or
undone by the next sweep (``sweep.py``). Step boundaries carry failpoints
(``failpoints.py``) so tests kill there on purpose.

Order of a create: sweep dead writers -> marker -> uploads -> globals -> dump -> record
copy -> record (the commit marker) -> audit line -> marker removed.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from dumpsafe import __version__, crypto
from dumpsafe.engines import files, pgsnapshot, postgres
from dumpsafe.engines.inventory import schema_fingerprint
from dumpsafe.errors import BackupFailed, DumpsafeError, IntegrityError, first_line
from dumpsafe.export import record_layout
from dumpsafe.failpoints import failpoint
from dumpsafe.catalog import object_key, objects_prefix
from dumpsafe.models import BackupRecord, ObjectRef, UploadsInfo, new_backup_id
from dumpsafe.pending import Pending
from dumpsafe.pipeline import HashingReader, pack_stream
from dumpsafe.progress import Progress
from dumpsafe.storage import Store
from dumpsafe.sweep import remove_backup_objects

if TYPE_CHECKING:
    from dumpsafe.service import BackupService

DUMP_OBJECT = "database.dump.zst"
UPLOADS_OBJECT = "uploads.tar.zst"
GLOBALS_OBJECT = "globals.sql.zst"
COPY_CHUNK = 1 << 20
CLOCK_SLACK = timedelta(minutes=1)


def _cleanup(st: Store, bid: str, pending: Pending) -> None:
    """After a failed write: remove what it wrote, then its marker. If the store refuses,
    the marker stays and the next sweep finishes the job."""
    try:
        remove_backup_objects(st, bid)
        pending.done()
    except DumpsafeError:
        pending.release()


class BackupWriter:
    def __init__(self, svc: "BackupService"):
        self.svc = svc
        self.config = svc.config

    # ---- create ---------------------------------------------------------------------------
    def _sequence(self, store_name: str, tenant: str, db: str, started) -> tuple[int, float | None]:
        """Next sequence of this store/tenant/database, and how far the clock is behind the
        newest earlier backup (None when it is not behind by more than a minute)."""
        newest = self.svc.catalog(store_name).newest_of(tenant, db)  # by (sequence, created_at, id)
        if newest is None:
            return 1, None
        seq, created_at = newest
        behind = created_at - started
        return seq + 1, (round(behind.total_seconds(), 3) if behind > CLOCK_SLACK else None)

    def create_one(
        self, tenant: str, db: str, target: postgres.PgTarget, store_name: str, *,
        with_uploads: bool, label: str | None, pin: bool, actor: str, progress: Progress,
    ) -> BackupRecord:
        svc = self.svc
        tcfg = self.config.tenant(tenant)
        pending: Pending | None = None
        with svc.audit.record("create", actor, tenant=tenant, database=db, store=store_name) as ev:
            st = svc.store(store_name)
            svc.sweep_store(st)
            started = svc.clock()
            t0 = time.monotonic()
            bid = new_backup_id(tenant, db, started)
            ev.backup_id = bid
            sequence, behind = self._sequence(store_name, tenant, db, started)
            objects: list[ObjectRef] = []
            recipients = crypto.parse_recipients(tcfg.encrypt_to) if tcfg.encrypt_to else None
            pending = Pending(st, bid, "create", clock=svc.clock, actor=actor, tenant=tenant, database=db)
            with pending:
                failpoint("backup.after_pending")
                try:
                    with pgsnapshot.snapshot(target, db) as snap, ThreadPoolExecutor(2) as counter:
                        pg_dump, client_version = svc.pg_tool(target, "pg_dump", snap.server_major)
                        counts = counter.submit(self._count, snap)  # one session: one thread
                        schema = counter.submit(self._schema_fingerprint, target, db, pg_dump, snap)
                        uploads_info = None
                        if with_uploads:
                            ref, stats = self._write_uploads(st, bid, tenant, tcfg.uploads, recipients, progress)
                            objects.append(ref)
                            uploads_info = UploadsInfo(files=stats.files, bytes=stats.bytes, skipped=list(stats.skipped))
                            failpoint("backup.after_uploads_commit")
                        if tcfg.include_globals:
                            objects.append(self._write_globals(st, bid, target, snap.server_major, recipients))
                            failpoint("backup.after_globals_commit")
                        key = object_key(bid, DUMP_OBJECT + (".age" if recipients else ""))
                        with st.open_write(key) as w, progress.task(f"dump {tenant}/{db}") as advance:
                            with postgres.pg_dump_stream(target, db, snap, pg_dump) as out:
                                res = pack_stream(out, w, advance, recipients)
                        objects.insert(0, ObjectRef(role="database", key=key, size_bytes=res.stored_bytes, sha256=res.sha256,
                                                    raw_bytes=res.raw_bytes))
                        failpoint("backup.after_dump_commit")
                        try:
                            tables, inventory = counts.result()
                        except Exception as e:
                            raise BackupFailed(
                                f"tenant {tenant!r}: counting rows of database {db!r} failed: {first_line(e)}"
                            ) from None
                        schema_sha256 = schema.result()
                    record = BackupRecord(
                        id=bid, tenant=tenant, database=db, server_version=snap.server_version,
                        created_at=started, completed_at=svc.clock(), store=store_name,
                        location=st.url(objects_prefix(bid)), size_bytes=sum(o.size_bytes for o in objects),
                        sha256=objects[0].sha256, compression="zstd", encryption="age" if recipients else None,
                        tables=tables, table_keys="quoted", **inventory, schema_sha256=schema_sha256, uploads=uploads_info, objects=objects, client_version=client_version,
                        dumpsafe_version=__version__, label=label, pinned=pin,
                        duration_s=round(time.monotonic() - t0, 3), sequence=sequence, clock_behind_s=behind,
                        **record_layout(client_version, bool(recipients)),
                    )
                    # the commit marker, last (its copy beside the objects just before it)
                    record = svc.catalog(store_name).put(record, after_copy=lambda: failpoint("backup.after_record_copy"))
                    failpoint("backup.after_record_commit")
                except BaseException:
                    _cleanup(st, bid, pending)
                    raise
            ev.size_bytes = record.size_bytes
            if behind is not None:
                ev.extra["clock_behind_s"] = behind
        failpoint("backup.after_audit")
        pending.done()
        return record

    @staticmethod
    def _count(snap: pgsnapshot.DumpSnapshot) -> tuple[dict[str, int], dict]:
        tables = snap.count_tables()
        return tables, snap.inventory(tables)

    @staticmethod
    def _schema_fingerprint(target: postgres.PgTarget, db: str, pg_dump: str, snap: pgsnapshot.DumpSnapshot) -> str:
        with postgres.pg_dump_schema_stream(target, db, pg_dump, snap) as out:
            return schema_fingerprint(out)

    def _write_uploads(
        self, st: Store, bid: str, tenant: str, root: Path, recipients: list | None, progress: Progress
    ) -> tuple[ObjectRef, files.TreeStats]:
        key = object_key(bid, UPLOADS_OBJECT + (".age" if recipients else ""))
        with st.open_write(key) as w, progress.task(f"uploads {tenant}") as advance:
            with files.tar_stream(root, tenant) as tar:
                res = pack_stream(tar, w, advance, recipients)
        assert tar.stats is not None
        return ObjectRef(role="uploads", key=key, size_bytes=res.stored_bytes, sha256=res.sha256, raw_bytes=res.raw_bytes), tar.stats

    def _write_globals(self, st: Store, bid: str, target: postgres.PgTarget, major: int, recipients: list | None) -> ObjectRef:
        tool, _ = self.svc.pg_tool(target, "pg_dumpall", major)
        key = object_key(bid, GLOBALS_OBJECT + (".age" if recipients else ""))
        with st.open_write(key) as w:
            with postgres.pg_dumpall_globals_stream(target, tool) as out:
                res = pack_stream(out, w, None, recipients)
        return ObjectRef(role="globals", key=key, size_bytes=res.stored_bytes, sha256=res.sha256, raw_bytes=res.raw_bytes)

    # ---- copy -----------------------------------------------------------------------------
    def copy_objects(self, rec: BackupRecord, src: Store, dst: Store, progress: Progress, actor: str) -> tuple[BackupRecord, Pending]:
        """Stream every object to ``dst`` under a pending marker, then the record (last).
        Returns the copy's record and the marker (the caller removes it after its audit line)."""
        self.svc.sweep_store(dst)
        pending = Pending(dst, rec.id, "copy", clock=self.svc.clock, actor=actor, tenant=rec.tenant, database=rec.database)
        with pending:
            failpoint("copy.after_pending")
            try:
                for ref in rec.objects:
                    self._copy_object(rec, ref, src, dst, progress)
                    failpoint("copy.after_object_commit")
                copy_rec = rec.model_copy(
                    update={"store": dst.name, "location": dst.url(objects_prefix(rec.id)), "copies": [], "copy_of": rec.store}
                )
                copy_rec = self.svc.catalog(dst.name).put(copy_rec, after_copy=lambda: failpoint("copy.after_record_copy"))
                failpoint("copy.after_record_commit")
            except BaseException:
                _cleanup(dst, rec.id, pending)
                raise
        return copy_rec, pending

    def _copy_object(self, rec: BackupRecord, ref: ObjectRef, src: Store, dst: Store, progress: Progress) -> None:
        def mismatch(where: str) -> IntegrityError:
            return IntegrityError(
                f"integrity check failed: {ref.key} of backup {rec.id} {where} does not match the SHA-256 "
                f"recorded at backup time; nothing was copied to store {dst.name!r}"
            )

        with src.open_read(ref.key) as r, dst.open_write(ref.key, size_hint=ref.size_bytes) as w, progress.task(
            f"copy {rec.id} {ref.role} to {dst.name}", ref.size_bytes
        ) as advance:
            hr = HashingReader(r, advance)
            while chunk := hr.read(COPY_CHUNK):
                w.write(chunk)
            if hr.count != ref.size_bytes or hr.hexdigest != ref.sha256:
                raise mismatch(f"in store {src.name!r}")  # aborts the write: nothing committed
        # on arrival: read the committed object back from the target
        with dst.open_read(ref.key) as r:
            back = HashingReader(r)
            while back.read(COPY_CHUNK):
                pass
        if back.count != ref.size_bytes or back.hexdigest != ref.sha256:
            raise mismatch(f"as stored in {dst.name!r}")

    # ---- delete ---------------------------------------------------------------------------
    def delete_objects(self, rec: BackupRecord, actor: str) -> tuple[list[str], Pending]:
        """Unlist a backup (record copy, then record), then remove its objects, under a
        delete marker: a crash anywhere is finished by the next sweep. Returns the errors
        met (objects left for the sweep) and the marker (removed by the caller after audit)."""
        st = self.svc.store(rec.store)
        pending = Pending(st, rec.id, "delete", clock=self.svc.clock, actor=actor, tenant=rec.tenant, database=rec.database)
        errors: list[str] = []
        with pending:
            failpoint("delete.after_pending")
            self.svc.catalog(rec.store).remove(rec.id, after_copy=lambda: failpoint("delete.after_record_copy_removed"))
            failpoint("delete.after_record_removed")
            for o in rec.objects:
                try:
                    st.delete(o.key)
                except DumpsafeError as e:
                    errors.append(e.message)
                failpoint("delete.after_object_removed")
            if not errors:
                try:
                    remove_backup_objects(st, rec.id)  # anything else under its prefix
                except DumpsafeError as e:
                    errors.append(e.message)
        return errors, pending
