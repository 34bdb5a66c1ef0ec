"""Restore a backup without ever leaving a half-overwritten database or uploads tree.

Order of work (each step only starts when the one before succeeded):
1. plan: resolve target database, mode and uploads destination; refuse bad combinations.
2. integrity: stage the uploads tree beside the live one (hash checked, unsafe members
   refused); clean mode (and a parallel restore, ``restore_jobs`` > 1) spools the dump (hash
   + size checked). A mismatch aborts here: nothing touched.
3. database: atomic/new restore into a staging database (single job: streamed from the store
   straight into pg_restore while its hash is computed; the hash and size must match before
   the swap), compare row counts with the record, then swap by rename (one transaction);
   clean runs pg_restore --clean in one transaction from the verified spool. Any failure
   drops the staging database.
4. uploads: swap the staged tree in by rename, right after the database swap; the replaced
   database is dropped after both swaps.
From step 3 on every step is journaled first (``restore_journal.py``): a restore killed at any
point is finished or undone by the next command that touches the tenant, or ``recover``.
"""

from __future__ import annotations

import os
import secrets
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dumpsafe import fetch, profile, restore_globals, restore_journal, restore_uploads
from dumpsafe.fetch import Streamed
from dumpsafe.engines import files, postgres
from dumpsafe.engines import pg_globals
from dumpsafe.compare import check_contents, clean_fixed_properties, counted_in_parallel, known_tables
from dumpsafe.engines import inventory
from dumpsafe.engines import databases as dbs
from dumpsafe.engines import dbspec
from dumpsafe.engines import pg_restore as pgr
from dumpsafe.engines import toc as tocs
from dumpsafe.engines.sqlsession import open_session
from dumpsafe.errors import ConflictError, RestoreFailed, ToolFailed, UsageError
from dumpsafe.failpoints import failpoint
from dumpsafe.models import BackupRecord, ObjectRef
from dumpsafe.progress import NULL, Advance, Progress, describe
from dumpsafe.restore_models import MODES, DbOptions, Preflight, RestorePlan, RestoreResult, restore_jobs, streams
from dumpsafe.context import ServiceContext


class Restorer:
    """The restore flow; BackupService.restore/restore_plan delegate here."""

    def __init__(self, service: ServiceContext):
        self.svc = service
        self.config = service.config
        self.sessions_ended = 0  # atomic: the other sessions the swap ended
        self.identities: list[Any] | None = None
        self.swept: list[str] = []  # orphaned staging/scratch databases dropped on the way
        self.recovered: list[str] = []  # interrupted restores of this tenant finished or undone first
        self.with_globals = False
        self.opts = DbOptions()
        self.advance: Advance = lambda n: None  # the running restore task's progress

    def load_identities(self, record: BackupRecord, identity: Path | None) -> list[Any] | None:
        """age identities for an encrypted backup (--identity, the tenant's identity_file, $DUMPSAFE_AGE_IDENTITY)."""
        if not record.encryption:
            return None
        from dumpsafe import crypto

        t = self.config.tenants.get(record.tenant)
        return crypto.load_identities(identity, t.identity_file if t else None, f"backup {record.id}")

    # ---- plan ------------------------------------------------------------------------------
    def plan(self, record: BackupRecord, *, database: str | None, mode: str | None, uploads: bool,
             uploads_to: Path | None, keep_old: bool,
             with_globals: bool = False) -> tuple[RestorePlan, postgres.PgTarget, ObjectRef | None]:
        if mode is not None and mode not in MODES:
            raise UsageError(f"unknown restore mode {mode!r} (use atomic, clean or new)")
        if with_globals and record.object("globals") is None:
            raise UsageError(f"backup {record.id} holds no globals object, so --with-globals has no roles to create "
                             f"(set include_globals = true for tenant {record.tenant!r} in later backups)")
        target_db = dbs.check_db_name(database or record.database)
        target = self.svc.pg_target(record.tenant)
        with dbs.admin(target, target_db) as conn:
            exists = dbs.database_exists(conn, target_db)
        mode = mode or ("atomic" if exists else "new")
        where = f"{target.where()} (tenant {record.tenant!r})"
        if mode == "new" and exists:
            raise ConflictError(
                f"database {target_db!r} already exists on {where}; use --mode atomic to replace it or --database to pick a new name"
            )
        if mode == "clean" and not exists:
            raise ConflictError(f"database {target_db!r} does not exist on {where}; use --mode new to create it")
        if keep_old and mode != "atomic":
            raise UsageError("--keep-old only applies to --mode atomic")
        up_ref = record.object("uploads") if uploads else None
        dest: Path | None = None
        if uploads_to is not None and uploads and record.object("uploads") is None:
            raise UsageError(f"backup {record.id} holds no uploads tree, so --uploads-to has nothing to restore")
        if up_ref is not None:
            dest = uploads_to or self.config.tenant(record.tenant).uploads
            if dest is None:
                raise UsageError(
                    f"backup {record.id} holds an uploads tree but tenant {record.tenant!r} has no uploads directory "
                    "(pass --uploads-to DIR or --no-uploads)"
                )
            # a symlinked uploads path (/srv/acme/uploads -> /data/uploads): stage and swap beside the
            # real tree, so the link keeps working and the rename stays on one filesystem
            dest = Path(os.path.realpath(dest))
            if dest == Path(dest.anchor):
                raise UsageError("refusing to restore uploads over the filesystem root")
            if dest.exists() and not dest.is_dir():
                raise UsageError(f"uploads destination {dest} exists and is not a directory")
        plan = RestorePlan(
            backup_id=record.id, tenant=record.tenant, database=target_db, server=target.where(), mode=mode,
            target_exists=exists, uploads_to=str(dest) if dest else None,
            uploads_dest_exists=bool(dest and dest.exists() and any(dest.iterdir())), keep_old=keep_old,
        )
        return plan, target, up_ref

    # ---- restore ---------------------------------------------------------------------------
    def restore(self, backup_id: str, *, database: str | None = None, mode: str | None = None, uploads: bool = True,
                uploads_to: Path | None = None, keep_old: bool = False, dry_run: bool = False, identity: Path | None = None,
                with_globals: bool = False, actor: str = "local", progress: Progress = NULL, no_owner: bool = False,
                owner: str | None = None, no_tablespaces: bool = False) -> RestoreResult | Preflight:
        if no_owner and owner:
            raise UsageError("--no-owner and --owner are exclusive (--owner ROLE already replaces the backup's owners)")
        self.opts = DbOptions(no_owner=no_owner, owner=owner, no_tablespaces=no_tablespaces)
        profile.start()
        record = self.svc.get(backup_id)
        with self.svc.audit.record("restore", actor, backup_id=record.id, tenant=record.tenant,
                                   database=database or record.database, store=record.store) as ev:
            ev.extra.update(mode=mode, dry_run=dry_run, with_globals=with_globals)
            if no_owner or owner or no_tablespaces:
                ev.extra.update(no_owner=no_owner, owner=owner, no_tablespaces=no_tablespaces)
            plan, target, up_ref = self.plan(record, database=database, mode=mode, uploads=uploads,
                                             uploads_to=uploads_to, keep_old=keep_old, with_globals=with_globals)
            ev.extra.update(mode=plan.mode, target=f"{plan.server}/{plan.database}", uploads_to=plan.uploads_to)
            ev.size_bytes = record.size_bytes
            self.identities = self.load_identities(record, identity)
            self.with_globals = with_globals
            if dry_run:
                pf = self._preflight(record, plan, target, up_ref, progress)
                ev.extra["problems"] = len(pf.problems)
                return pf
            with self._lock(record.tenant, plan.database):
                self.recovered = restore_journal.replay(self.svc, record.tenant, held=(record.tenant, plan.database))
                result = self._restore(record, plan, target, up_ref, progress)
            ev.extra["kept_old"] = result.kept_old
            if result.sessions_ended:
                ev.extra["sessions_ended"] = result.sessions_ended
            if self.recovered:
                ev.extra["recovered"] = self.recovered
            if result.globals is not None:
                ev.extra["roles_created"] = result.globals["roles_created"]
            if self.swept:
                ev.extra["swept"] = self.swept
            return result

    def _restore(self, record: BackupRecord, plan: RestorePlan, target: postgres.PgTarget, up_ref: ObjectRef | None,
                 progress: Progress) -> RestoreResult:
        t0 = time.monotonic()
        profile.mark("plan, lock, journal replay")
        st = self.svc.store(record.store)
        db_ref = self._db_ref(record)
        # every object is stat'ed; the ones this restore reads are hashed end to end before any change
        fetch.check_sizes(st, record, list(record.objects))
        profile.mark("stat objects")
        glob = restore_globals.read_globals(st, record, self.identities) if self.with_globals else None
        fetch.check_whole(st, record, [o for o in fetch.other_objects(record) if glob is None or o.role != "globals"],
                          identities=self.identities)
        profile.mark("check other objects")
        roles: pg_globals.GlobalsResult | None = None
        with self.spool_dir() as tmp:
            dump: Path | Streamed
            if plan.mode != "clean" and streams(self.config.restore_jobs):
                # atomic/new restore into a staging database: no spool; read the TOC from the head
                # of the stored object, then stream all of it into pg_restore (hash checked before the swap)
                dump = Streamed(st, record, db_ref, self.identities)
                toc = fetch.head(st, record, db_ref, lambda read: tocs.read_toc(
                    self.toc_tool(record), read, known_tables=known_tables(record)), self.identities)
                profile.mark("read TOC (object head)")
            else:
                dump = tmp / "database.dump"
                with progress.task(f"fetch {record.id}", total=db_ref.size_bytes) as advance:
                    fetch.spool(st, record, db_ref, dump, advance, self.identities)
                profile.mark("spool (fetch + hash + write)")
                with open(dump, "rb") as fh:
                    toc = tocs.read_toc(self.toc_tool(record), fh, known_tables=known_tables(record))
                profile.mark("read TOC (spool)")
            _, tool = self._tool(target, plan.database)
            spec = dbspec.parse_spec(toc.database_sql)
            self._refuse_unsupported(target, plan, record, spec, set(glob.roles) if glob is not None else set())
            profile.mark("server checks")
            staged: Path | None = None
            stats = None
            with ExitStack() as cleanup:
                if up_ref is not None:
                    staged = cleanup.enter_context(files.staging(Path(plan.uploads_to)))
                    with progress.task(f"uploads {record.id}", total=up_ref.size_bytes) as advance:
                        stats = fetch.consume(st, record, up_ref, lambda s: restore_uploads.extract_staged(s, staged), advance, self.identities)
                    if record.uploads and (stats.files, stats.bytes) != (record.uploads.files, record.uploads.bytes):
                        raise RestoreFailed(
                            f"backup {record.id}: the uploads archive holds {stats.files} files / {stats.bytes} bytes, the record "
                            f"says {record.uploads.files} / {record.uploads.bytes}; nothing was changed"
                        )
                    profile.mark("uploads (fetch + hash + extract)")
                # every object is verified and staged: from here on we touch the target, journaled
                jr = restore_journal.Journal(
                    self.svc.state_dir, tenant=record.tenant, database=plan.database, backup_id=record.id,
                    store=record.store, mode=plan.mode, keep_old=plan.keep_old, staging=None, old=None,
                    uploads_live=plan.uploads_to if staged else None, uploads_staged=str(staged) if staged else None,
                    staged_ino=os.stat(staged).st_ino if staged else None, database_sql=list(toc.database_sql),
                    owner=self._clean_owner(spec) if plan.mode == "clean" else None,
                    appname=f"pg_restore dumpsafe-{secrets.token_hex(6)}")
                with progress.task(f"restore {plan.database}",
                                   total=db_ref.raw_bytes if isinstance(dump, Streamed) else None) as self.advance:
                    if glob is not None:
                        roles = restore_globals.create_roles(target, plan.database, record, glob)
                    try:
                        if plan.mode == "clean":
                            kept, rows, tables = None, *self._clean(record, plan, target, tool, dump, spec, jr)
                        else:
                            kept, rows, tables = self._via_staging(record, plan, target, tool, dump, toc, spec, jr)
                    except BaseException:
                        swapped = self._resolve_here(jr)
                        if not swapped and roles is not None and roles.roles_created:  # nothing owns them now
                            restore_globals.drop_roles(target, plan.database, roles.roles_created)
                        raise
                    jr.remove()
        profile.mark("cleanup")
        profile.report(f"restore --mode {plan.mode}")
        return RestoreResult(
            backup_id=record.id, tenant=record.tenant, database=plan.database, server=plan.server, mode=plan.mode,
            tables=tables, rows=rows, uploads_to=plan.uploads_to,
            uploads={"files": stats.files, "bytes": stats.bytes} if stats else None, kept_old=kept,
            duration_s=round(time.monotonic() - t0, 3), globals=roles.to_json_dict() if roles else None,
            sessions_ended=self.sessions_ended,
        )

    def _refuse_unsupported(self, target: postgres.PgTarget, plan: RestorePlan, record: BackupRecord,
                            spec: dbspec.DbSpec | None, will_exist: set[str]) -> None:
        """Before anything is touched: every database property the server cannot take, named with the way out."""
        if plan.mode == "clean":
            problems = []
            if target.exec_prefix:  # the reordered list (see _clean) needs a local pg_restore
                with open_session(target, plan.database) as s:
                    problems = dbs.clean_blockers(s)
            with dbs.admin(target, plan.database) as s:
                problems += clean_fixed_properties(record, spec, inventory.database_properties(s, plan.database),
                                                   plan.database, tablespaces=not self.opts.no_tablespaces)
                if not problems:  # the property statements run (and roll back) now: a failure stops here
                    try:
                        dbs.replace_properties(s, plan.database, spec, owner=self._clean_owner(spec), probe=True)
                    except RestoreFailed as e:
                        problems.append(e.message)
            if problems:
                raise ConflictError(f"cannot restore backup {record.id} into database {plan.database!r} on {plan.server}: "
                                    + "; ".join(problems) + "; nothing was changed")
            return
        with dbs.admin(target, plan.database) as s:
            problems = dbs.unsupported_properties(s, spec, owner=self.opts.owner, no_owner=self.opts.no_owner,
                                                  tablespaces=not self.opts.no_tablespaces, will_exist=will_exist)
        if problems:
            raise ConflictError(f"cannot restore backup {record.id} into database {plan.database!r} on {plan.server}: "
                                + "; ".join(problems) + "; nothing was changed")

    def _resolve_here(self, jr: restore_journal.Journal) -> bool:
        """A step failed: apply the journal's rule now (roll forward once the database was
        swapped, else undo). If that fails too, the journal stays for the next command.
        Returns whether the backup's database is in place."""
        if not jr.written:
            return False
        try:
            forward, _ = restore_journal.resolve(self.svc, jr.data, in_process=True)
        except Exception:
            return True  # unknown: keep the journal and the roles
        jr.remove()
        return forward

    def _swap(self, target: postgres.PgTarget, s: Any, plan: RestorePlan, staging: str, spec: dbspec.DbSpec | None,
              jr: restore_journal.Journal) -> str | None:
        """atomic: refuse connections, rename both in one transaction, swap the uploads tree,
        then the template flag and the replaced database dropped (or kept); each step journaled."""
        if not dbs.database_exists(s, plan.database):
            raise ConflictError(f"database {plan.database!r} disappeared during the restore; nothing was swapped")
        old = dbs.side_name(plan.database, "dskept" if plan.keep_old else "dsold")
        jr.step("refuse", old=old)
        with dbs.claimed(target, old):
            dbs.refuse_connections(s, plan.database)
            failpoint("restore.after_refuse")
            jr.step("rename")
            self.sessions_ended = dbs.rename_pair(s, plan.database, staging, old)
            profile.mark("swap (refuse + rename)")
            failpoint("restore.after_rename")
            restore_uploads.swap_uploads(jr)
            jr.step("finish")
            dbs.finish(s, plan.database, spec)
            if plan.keep_old:
                dbs.allow_connections(s, old)
            else:
                dbs.drop_now(s, old)
            profile.mark("finish + drop old database")
            failpoint("restore.after_drop_old")
        return old if plan.keep_old else None

    def _via_staging(self, record: BackupRecord, plan: RestorePlan, target: postgres.PgTarget, tool: str, dump: "Path | Streamed",
                     toc: tocs.Toc, spec: dbspec.DbSpec | None, jr: restore_journal.Journal) -> tuple[str | None, int, int]:
        """atomic and new: restore beside the target with the backup's own database properties,
        check its contents, then rename into place (the template flag last)."""
        self.swept = dbs.sweep_orphans(target)
        profile.mark("sweep orphans")
        staging = dbs.side_name(plan.database, "dsstage")
        with dbs.claimed(target, staging):
            return self._in_staging(record, plan, target, tool, dump, toc, spec, staging, jr)

    def _in_staging(self, record: BackupRecord, plan: RestorePlan, target: postgres.PgTarget, tool: str, dump: "Path | Streamed",
                    toc: tocs.Toc, spec: dbspec.DbSpec | None, staging: str | None,
                    jr: restore_journal.Journal) -> tuple[str | None, int, int]:
        jr.step("load", staging=staging)  # a kill from here on is undone by the next command (staging dropped)
        with dbs.admin(target, plan.database, staging) as conn:
            dbs.create_database(conn, staging, spec, owner=self.opts.owner, no_owner=self.opts.no_owner,
                                tablespaces=not self.opts.no_tablespaces, encoding=toc.encoding)
        profile.mark("create staging database")
        try:
            early = self.load(target, tool, staging, dump, plan.database, args=self.opts.restore_args(), fresh=True)
            profile.mark("pg_restore" + (" (streamed + hash)" if isinstance(dump, Streamed) else ""))
            failpoint("restore.after_load")
            with open_session(target, staging) as s:
                counts, mismatch = check_contents(record, s, known=early, **counted_in_parallel(target, staging))
            profile.mark("row counts")
            if mismatch:
                raise RestoreFailed(
                    f"restored data does not match backup {record.id}: {mismatch}; the target was not touched"
                )
            with dbs.admin(target, plan.database, staging) as conn:
                dbs.apply_properties(conn, staging, spec)  # after the data: a read-only default cannot stop pg_restore
                profile.mark("database properties")
                jr.step("staged", staging=staging)
                failpoint("restore.after_staged")
                if plan.mode == "atomic":
                    kept = self._swap(target, conn, plan, staging, spec, jr)
                else:
                    jr.step("rename")
                    dbs.rename_into_place(conn, staging, plan.database, spec)
                    failpoint("restore.after_rename")
                    restore_uploads.swap_uploads(jr)
                    kept = None
            staging = None
            return kept, sum(counts.values()), len(counts)
        finally:
            if staging is not None:
                dbs.drop_database(target, staging)

    def load(self, target: postgres.PgTarget, tool: str, dbname: str, dump: "Path | Streamed", label: str, *,
             args: tuple[str, ...] = (), appname: str | None = None, fresh: bool = False) -> dict[int, int]:
        """pg_restore ``dump`` into ``dbname``, naming each table it loads on the progress task.
        A Streamed dump is hashed as it is fed: IntegrityError (after pg_restore) when it is not
        the recorded object, so the caller must not use ``dbname`` unless this returns.

        ``fresh``: ``dbname`` is a staging or scratch database nobody else writes to; tables are
        then counted as soon as they are loaded (inventory.CountAsLoaded) when pg_restore runs
        one job over a direct connection. Returns those counts by table OID, for check_contents."""
        advance = self.advance
        single = "--single-transaction" in args
        jobs = 1 if single or not isinstance(dump, Path) else restore_jobs(self.config.restore_jobs)
        early = (inventory.CountAsLoaded(lambda: open_session(target, dbname))
                 if fresh and jobs == 1 and not single and not target.exec_prefix else None)

        def on_table(table: str | None) -> None:
            if early is not None:
                early.saw(table)
            if table is not None:
                describe(advance, f"restore {label}: {table}")

        try:
            if isinstance(dump, Path):
                pgr.run_pg_restore(target, tool, dbname, dump, args=args, jobs=jobs, appname=appname, on_table=on_table)
            else:
                dump.feed(lambda read: pgr.run_pg_restore(target, tool, dbname, read, args=args, appname=appname,
                                                          on_table=on_table, fed=advance))
        finally:
            counted = early.finish() if early is not None else {}
        return counted

    def _clean_owner(self, spec: dbspec.DbSpec | None) -> str | None:
        return None if self.opts.no_owner else (self.opts.owner or (spec.owner if spec else None))

    def _clean(self, record: BackupRecord, plan: RestorePlan, target: postgres.PgTarget, tool: str,
               dump: Path, spec: dbspec.DbSpec | None, jr: restore_journal.Journal) -> tuple[int, int]:
        """pg_restore --clean in one transaction: a failure rolls back and leaves the target as it was.

        A reordered list (engines/toc.clean_list) keeps the target's extensions in place (their
        functions keep EXECUTE whatever the target's default privileges say) and drops the keys
        of partitioned tables parent first."""
        args = ["--clean", "--if-exists", "--single-transaction", *self.opts.restore_args()]
        if not target.exec_prefix:  # the list file must be readable by pg_restore: local tools only
            with open_session(target, plan.database) as s:
                have = {n for k, n in dbs.target_objects(s) if k == "EXTENSION"} | {"plpgsql"}
            listfile = dump.with_suffix(".list")
            if tocs.clean_list(self.toc_tool(record), str(dump), have, str(listfile)):
                args.append(f"--use-list={listfile}")
        jr.step("staged")
        failpoint("restore.after_staged")
        jr.step("clean")
        self.load(target, tool, plan.database, dump, plan.database, args=tuple(args), appname=jr.data["appname"])
        jr.step("properties")
        failpoint("restore.after_clean_restore")
        with dbs.admin(target, plan.database) as s:
            try:
                dbs.replace_properties(s, plan.database, spec, owner=self._clean_owner(spec))
            except RestoreFailed as e:
                raise RestoreFailed(f"database {plan.database!r} was restored in place but {e.message}; "
                                    "its previous properties are unchanged") from None
        with open_session(target, plan.database) as s:
            counts, mismatch = check_contents(record, s, extra_tables_ok=True)
        if mismatch:
            raise RestoreFailed(f"database {plan.database!r} was restored in place but does not match backup {record.id}: {mismatch}")
        failpoint("restore.after_properties")
        restore_uploads.swap_uploads(jr)
        return sum(counts.get(k, 0) for k in record.tables), len(record.tables)

    # ---- plumbing --------------------------------------------------------------------------
    def _tool(self, target: postgres.PgTarget, dbname: str) -> tuple[int, str]:
        with dbs.admin(target, dbname) as s:
            _, major = dbs.server_version(s)
        tool, _ = self.svc.pg_tool(target, "pg_restore", major, error=ToolFailed)
        return major, tool

    def toc_tool(self, record: BackupRecord) -> str:
        """A local pg_restore able to read the archive (at least the major of the pg_dump that wrote it)."""
        t = self.config.tenants.get(record.tenant)
        dirs = tuple(p for p in ((t.pg_bin_dir if t and not t.exec else None), self.config.pg_bin_dir) if p)
        path, _ = postgres.find_tool("pg_restore", tocs.major_of(record.client_version), dirs)
        return path

    @staticmethod
    def _db_ref(record: BackupRecord) -> ObjectRef:
        ref = record.object("database")
        if ref is None:
            raise RestoreFailed(f"backup {record.id} has no database object in its record")
        return ref

    def _lock(self, tenant: str, database: str):
        """The restore lock of ``tenant``/``database`` (ConflictError when another restore holds it)."""
        return restore_journal.restore_lock(self.svc.state_dir, tenant, database)

    def spool_dir(self):
        """A claimed 0700 spool directory (restore_journal.spool_dir); dead restores' ones swept first."""
        return restore_journal.spool_dir(self.config)

    # ---- dry run -----------------------------------------------------------------------------
    def _preflight(self, record: BackupRecord, plan: RestorePlan, target: postgres.PgTarget, up_ref: ObjectRef | None,
                   progress: Progress) -> Preflight:
        from dumpsafe.preflight import preflight

        return preflight(self, record, plan, target, up_ref, progress)

