"""``backup verify``: prove a backup is intact, and with ``--drill`` that it restores.

Without a drill every object is streamed once through its checks (hash and size, zstd
decoding, the dump's TOC, the uploads archive's members) and nothing is kept. A drill
streams the dump like an atomic restore (spools it for ``restore_jobs`` > 1; the hash is
checked when pg_restore has read it all), restores it into a scratch database (on the tenant's
server or a configured drill server) with the backup's own database properties, compares
what the record says the database held (per-table rows, partitioned tables, materialized
views, large objects, database properties, the schema fingerprint) and the archive's
sequence values, measures the time a restore takes (RTO) and always drops the scratch database.
The outcome is written into the record's ``last_verification``, pass or fail.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from dumpsafe import fetch, profile, restore_journal
from dumpsafe.engines import postgres
from dumpsafe.engines import inventory
from dumpsafe.engines import databases as dbs
from dumpsafe.engines import dbspec
from dumpsafe.engines import toc as tocs
from dumpsafe.engines.databases import finish
from dumpsafe.engines.sqlsession import open_session
from dumpsafe.config import drill_password
from dumpsafe.errors import ConflictError, DumpsafeError, IntegrityError, ObjectMissing, RestoreFailed, ToolFailed
from dumpsafe.models import BackupRecord, Verification, utcnow
from dumpsafe.preflight import inspect_database, inspect_uploads, tables_without_data
from dumpsafe.progress import NULL, Progress
from dumpsafe.compare import check_contents, counted_in_parallel, known_tables
from dumpsafe.restore import Restorer
from dumpsafe.restore_models import streams
from dumpsafe.context import ServiceContext

# failures that say something about the backup (recorded as a failed verification);
# anything else (store unreachable, bad config) is an error of the attempt, not a verdict
VERDICT_ERRORS = (IntegrityError, ObjectMissing, RestoreFailed)
SCRATCH_PREFIX = "dumpsafe_drill_"


class Verifier:
    # tables are counted as pg_restore loads them (inventory.CountAsLoaded); False counts them
    # only after the load, so that a change made to the scratch database in ``before_compare`` shows
    count_as_loaded = True

    def __init__(self, service: ServiceContext):
        self.svc = service
        self.config = service.config
        self.identities: list[Any] | None = None
        self.swept: list[str] = []

    def verify(self, backup_id: str, *, drill: bool = False, identity: Path | None = None, actor: str = "local",
               progress: Progress = NULL) -> BackupRecord:
        record = self.svc.get(backup_id)
        with self.svc.audit.record("verify", actor, backup_id=record.id, tenant=record.tenant, database=record.database,
                                   store=record.store) as ev:
            ev.size_bytes = record.size_bytes
            ev.extra["drill"] = drill
            t0 = time.monotonic()
            extra: dict[str, Any] = {}
            self.identities = Restorer(self.svc).load_identities(record, identity)  # missing: usage error, no verdict
            failure: DumpsafeError | None = None
            try:
                detail = self._drill(record, extra, progress) if drill else self._integrity(record, progress)
            except VERDICT_ERRORS as e:
                failure, detail = e, e.message
            v = Verification(at=utcnow(), result="failed" if failure else "passed", detail=detail,
                             kind="drill" if drill else "integrity", duration_s=round(time.monotonic() - t0, 3), **extra)
            # re-read just before writing: a pin or label set meanwhile is kept, and a backup
            # deleted meanwhile is not brought back as a record without objects
            current = self.svc.catalog(record.store).get(record.id)
            updated = (current or record).model_copy(update={"last_verification": v})
            if current is not None:
                self.svc.save_record(updated)
            ev.extra.update({k: v for k, v in extra.items() if k in ("rto_s", "server", "tables")})
            if self.swept:
                ev.extra["swept"] = self.swept
            if failure is not None:
                raise failure
            return updated

    # ---- integrity only ------------------------------------------------------------------------
    def _integrity(self, record: BackupRecord, progress: Progress) -> str:
        st = self.svc.store(record.store)
        db_ref = Restorer._db_ref(record)
        up_ref = record.object("uploads")
        fetch.check_sizes(st, record, [r for r in record.objects])
        tool = Restorer(self.svc).toc_tool(record)  # local: reading a TOC needs no server
        with progress.task(f"verify {record.id}", total=db_ref.size_bytes) as advance:
            toc = inspect_database(st, record, db_ref, tool, advance, self.identities)
        missing = tables_without_data(record, toc)
        if missing:
            raise RestoreFailed(f"backup {record.id}: the archive holds no data for {', '.join(missing)}")
        parts = [f"{len(record.objects)} object{'s' if len(record.objects) != 1 else ''} match their SHA-256",
                 f"archive readable ({len(toc.entries)} TOC entries, {len(toc.table_data())} with table data)"]
        if up_ref is not None:
            with progress.task(f"verify uploads {record.id}", total=up_ref.size_bytes) as advance:
                stats = inspect_uploads(st, record, up_ref, advance, self.identities)
            parts.append(f"uploads archive readable ({stats.files} files)")
        fetch.check_whole(st, record, fetch.other_objects(record), identities=self.identities)
        return "; ".join(parts)

    # ---- drill -----------------------------------------------------------------------------------
    def drill_target(self, record: BackupRecord) -> postgres.PgTarget:
        tcfg = self.config.tenant(record.tenant)
        name = tcfg.drill_server or self.config.drill_server
        if name is None:
            return self.svc.pg_target(record.tenant)
        d = self.config.drill_servers[name]
        password = drill_password(name, d)
        bin_dirs = tuple(p for p in (d.pg_bin_dir, self.config.pg_bin_dir) if p)
        return postgres.PgTarget(tenant=record.tenant, host=d.host, port=d.port, user=d.user, password=password,
                                 bin_dirs=bin_dirs)

    def _drill(self, record: BackupRecord, extra: dict[str, Any], progress: Progress) -> str:
        restore_journal.replay(self.svc, record.tenant)  # a killed restore of this tenant is finished or undone first
        restorer = Restorer(self.svc)
        st = self.svc.store(record.store)
        db_ref = Restorer._db_ref(record)
        up_ref = record.object("uploads")
        fetch.check_sizes(st, record, list(record.objects))
        target = self.drill_target(record)
        scratch = SCRATCH_PREFIX + secrets.token_hex(6)
        extra["server"] = target.where()
        t0 = time.monotonic()
        profile.start()
        with restorer.spool_dir() as tmp:
            major, tool = restorer._tool(target, scratch)
            toc_tool = restorer.toc_tool(record)
            dump: Path | fetch.Streamed
            if streams(self.config.restore_jobs):  # one pg_restore job: streamed from the store, hash checked at its end
                dump = fetch.Streamed(st, record, db_ref, self.identities)
                toc = fetch.head(st, record, db_ref, lambda read: tocs.read_toc(
                    toc_tool, read, known_tables=known_tables(record)), self.identities)
                profile.mark("read TOC (object head)")
            else:
                dump = tmp / "database.dump"
                with progress.task(f"fetch {record.id}", total=db_ref.size_bytes) as advance:
                    fetch.spool(st, record, db_ref, dump, advance, self.identities)
                with open(dump, "rb") as fh:
                    toc = tocs.read_toc(toc_tool, fh, known_tables=known_tables(record))
                profile.mark("spool + read TOC")
            spec = dbspec.parse_spec(toc.database_sql)
            with dbs.admin(target, scratch) as s:
                unsupported = dbs.unsupported_properties(s, spec, owner=None, no_owner=False, tablespaces=True)
                missing_ext = sorted(set(toc.extensions()) - dbs.available_extensions(s))
            if missing_ext:
                unsupported.append(f"extensions not available there: {', '.join(missing_ext)} (install their packages)")
            if unsupported:
                raise ConflictError(f"the drill server {target.where()} cannot hold this backup's database as it was: "
                                    + "; ".join(unsupported) + " (or configure a drill_server that can)")
            if up_ref is not None:
                with progress.task(f"verify uploads {record.id}", total=up_ref.size_bytes) as advance:
                    inspect_uploads(st, record, up_ref, advance, self.identities)
            fetch.check_whole(st, record, fetch.other_objects(record), identities=self.identities)
            self.swept = dbs.sweep_orphans(target)
            profile.mark("checks (server, uploads, other objects)")
            t_restore = time.monotonic()
            with dbs.claimed(target, scratch):
                with dbs.admin(target, scratch) as conn:
                    dbs.create_database(conn, scratch, spec, encoding=toc.encoding)
                profile.mark("create scratch database")
                try:
                    with progress.task(f"drill restore {record.id}",
                                       total=db_ref.raw_bytes if isinstance(dump, fetch.Streamed) else None) as restorer.advance:
                        early = restorer.load(target, tool, scratch, dump, f"drill {record.id}",
                                              fresh=self.count_as_loaded)
                        profile.mark("pg_restore" + (" (streamed + hash)" if isinstance(dump, fetch.Streamed) else ""))
                        with dbs.admin(target, scratch) as conn:
                            dbs.apply_properties(conn, scratch, spec)
                            finish(conn, scratch, spec)
                        restore_s = time.monotonic() - t_restore
                        profile.mark("database properties")
                        self.before_compare(target, scratch)
                        diffs, compared, counts = self._compare(record, target, scratch, major, toc_tool, dump, early)
                        profile.mark("compare: the rest")
                finally:
                    drop_error = dbs.drop_database(target, scratch)
                profile.mark("drop scratch database")
            if drop_error:
                raise RestoreFailed(f"drill restored fine but the scratch database {scratch!r} on {target.where()} "
                                    f"could not be dropped ({drop_error}); drop it by hand")
        rto = time.monotonic() - t0
        profile.report("verify --drill")
        extra.update(rto_s=round(rto, 3), restore_s=round(restore_s, 3), tables=len(counts), compared=compared)
        if diffs:
            raise RestoreFailed("drill failed: " + "; ".join(diffs) + " (compared " + ", ".join(compared) + ")")
        return (f"restored {len(counts)} tables ({sum(counts.values())} rows) into a scratch database on {target.where()} "
                f"in {rto:.1f}s (RTO); equal to the backup: " + ", ".join(compared))

    def before_compare(self, target: postgres.PgTarget, scratch: str) -> None:
        """Called between the scratch restore and the comparison (tests damage the scratch database here)."""

    def _compare(self, record: BackupRecord, target: postgres.PgTarget, scratch: str, major: int, toc_tool: str,
                 dump: "Path | fetch.Streamed", early: dict[int, int] | None = None) -> tuple[list[str], list[str], dict[str, int]]:
        """Everything the record (and the archive) says the database held, against the scratch
        database (``early``: tables counted as they were loaded, by OID)."""
        diffs: list[str] = []
        compared = [f"row counts of {len(record.tables)} tables"]
        with open_session(target, scratch) as s:
            counts, mismatch = check_contents(record, s, known=early, **counted_in_parallel(target, scratch))
            profile.mark("compare: row counts")
            if record.partitioned is not None:
                compared.append(f"{len(record.partitioned)} partitioned tables")
            if record.matviews is not None:
                compared.append(f"{len(record.matviews)} materialized views (populated or not)")
            if record.large_objects is not None:
                compared.append(f"{record.large_objects.count} large objects ({record.large_objects.bytes} bytes)")
            if mismatch:
                diffs.append(mismatch)
            want_seq = tocs.archive_sequences(toc_tool, str(dump) if isinstance(dump, Path) else (
                lambda fn: fetch.head(dump.store, record, dump.ref, fn, dump.identities)))
            got_seq = inventory.sequences(s)
            compared.append(f"{len(want_seq)} sequence values")
            seq_diffs = [f"{k} (archive {want_seq.get(k)}, restored {got_seq.get(k)})"
                         for k in sorted(set(want_seq) | set(got_seq)) if want_seq.get(k) != got_seq.get(k)]
            if seq_diffs:
                diffs.append("sequence values differ: " + ", ".join(seq_diffs))
            profile.mark("compare: sequences (archive head)")
        if record.database_properties is not None:
            with dbs.admin(target, scratch) as s:
                got = inventory.database_properties(s, scratch)
            compared.append("database properties")
            prop = inventory.property_diffs(record.database_properties, got)  # "(restored → recorded)"
            if prop:
                diffs.append("database properties differ (restored → recorded): " + ", ".join(prop))
            profile.mark("compare: database properties")
        pg_dump, dump_version = self.svc.pg_tool(target, "pg_dump", major, error=ToolFailed) if record.schema_sha256 else (None, None)
        if record.schema_sha256 and tocs.major_of(dump_version) != tocs.major_of(record.client_version or dump_version):
            # another major's pg_dump writes the same schema differently: no honest comparison
            compared.append(f"schema fingerprint not compared (pg_dump {dump_version} here, {record.client_version} at backup)")
        elif record.schema_sha256:
            with postgres.pg_dump_schema_stream(target, scratch, pg_dump, error=ToolFailed) as out:
                got_sha = inventory.schema_fingerprint(out)
            compared.append("schema fingerprint")
            if got_sha != record.schema_sha256:
                diffs.append(f"schema fingerprint differs (recorded {record.schema_sha256[:12]}…, restored {got_sha[:12]}…)")
            profile.mark("compare: schema fingerprint (pg_dump -s)")
        return diffs, compared, counts
