"""Selective restore: some tables of a backup, into a new database or a new schema of the live one.

Order of work:
1. plan: resolve the selection against the record (an unknown table is one error, exit 2),
   the target database and mode; ``--into-schema`` refuses a schema that already exists.
2. integrity: the dump is spooled with its SHA-256 and size checked; nothing is written before.
3. staging: the selected entries (``engines/selection.py``) are restored into a side database
   ``<db>_dsstage_<hex>`` (claimed by an advisory lock; a killed run leaves an orphan the next
   restore sweeps) and the restored tables' row counts are compared with the record.
4. into place:
   - ``--mode new``: the staging database is renamed to the target name (one statement).
   - ``--into-schema NAME``: in the staging database the tables move to schema NAME (their
     indexes, constraints and owned sequences move with them), then ``pg_dump --schema=NAME |
     pg_restore --single-transaction`` copies that schema into the live database in ONE
     transaction: a kill or error rolls it back, so no half-made schema is ever left behind.
     Nothing else of the live database is touched (foreign keys to tables outside the
     selection are left out and listed), so the application keeps writing meanwhile.
   The restored tables are counted again where they landed.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from psycopg import sql

from dumpsafe import fetch, restore_journal
from dumpsafe.engines import databases as dbs
from dumpsafe.engines import dbspec, inventory
from dumpsafe.engines import pg_restore as pgr
from dumpsafe.engines import toc as tocs
from dumpsafe.engines import postgres, selection
from dumpsafe.engines.postgres import _StderrTail
from dumpsafe.engines.sqlsession import open_session
from dumpsafe.errors import ConflictError, RestoreFailed, ToolFailed, UsageError
from dumpsafe.failpoints import failpoint
from dumpsafe.models import BackupRecord
from dumpsafe.progress import NULL, Progress
from dumpsafe.restore import Restorer
from dumpsafe.restore_models import SelectiveResult, restore_jobs
from dumpsafe.context import ServiceContext


def _schema_exists(s: Any, name: str) -> bool:
    return bool(s.rows(sql.SQL("SELECT 1 FROM pg_namespace WHERE nspname = {}").format(sql.Literal(name))))


class SelectiveRestorer:
    def __init__(self, service: ServiceContext):
        self.svc = service
        self.base = Restorer(service)  # its plan, tools, spool and identities: reused, not copied

    def run(self, backup_id: str, *, tables: list[str], schemas: list[str], mode: str | None, into_schema: str | None,
            database: str | None = None, dry_run: bool = False, identity: Any = None, actor: str = "local",
            progress: Progress = NULL) -> SelectiveResult:
        record = self.svc.get(backup_id)
        with self.svc.audit.record("restore", actor, backup_id=record.id, tenant=record.tenant,
                                   database=database or record.database, store=record.store) as ev:
            ev.extra.update(selective=True, tables=list(tables), schemas=list(schemas), into_schema=into_schema,
                            mode=mode, dry_run=dry_run)
            pairs, keys = selection.resolve_tables(record, list(tables), list(schemas))
            ev.extra["selection"] = keys
            target, target_db, mode = self._plan(record, mode, into_schema, database)
            ev.extra.update(mode=mode, target=f"{target.where()}/{target_db}")
            if target.exec_prefix:
                raise UsageError(f"tenant {record.tenant!r} reaches its server through exec: selective restores need a "
                                 "local pg_restore (restore the whole backup with --mode new, or run it on the server)")
            self.base.identities = self.base.load_identities(record, identity)
            t0 = time.monotonic()
            with restore_journal.restore_lock(self.svc.state_dir, record.tenant, target_db):
                restore_journal.replay(self.svc, record.tenant, held=(record.tenant, target_db))
                result = self._run(record, pairs, keys, target, target_db, mode, into_schema, dry_run, progress)
            result.duration_s = round(time.monotonic() - t0, 3)
            ev.extra["left_out"] = len(result.left_out)
            return result

    # ---- plan ------------------------------------------------------------------------------
    def _plan(self, record: BackupRecord, mode: str | None, into_schema: str | None,
              database: str | None) -> tuple[postgres.PgTarget, str, str]:
        if into_schema is not None:
            if mode not in (None, "into-schema"):
                raise UsageError("--into-schema restores into the live database: leave out --mode "
                                 "(or use --mode new --database NAME for a new database)")
            if not into_schema or len(into_schema.encode()) > dbs.IDENT_MAX or "\x00" in into_schema:
                raise UsageError(f"{into_schema!r} is not a valid schema name (1-{dbs.IDENT_MAX} bytes)")
            if into_schema.startswith("pg_"):
                raise UsageError(f"schema names starting with pg_ are reserved: pick another name than {into_schema!r}")
            plan, target, _ = self.base.plan(record, database=database, mode=None, uploads=False, uploads_to=None,
                                             keep_old=False)
            if not plan.target_exists:
                raise ConflictError(f"database {plan.database!r} does not exist on {plan.server}; --into-schema needs the "
                                    "live database (use --mode new --database NAME for a new one); nothing was changed")
            with open_session(target, plan.database) as s:
                if _schema_exists(s, into_schema):
                    raise ConflictError(f"schema {into_schema!r} already exists in database {plan.database!r}; "
                                        "--into-schema only creates a new schema: pick another name; nothing was changed")
            return target, plan.database, "into-schema"
        if mode != "new":
            raise UsageError("a selective restore (--table/--schema) needs --mode new (a new database) or "
                             "--into-schema NAME (a new schema in the live database)")
        try:
            plan, target, _ = self.base.plan(record, database=database, mode="new", uploads=False, uploads_to=None,
                                             keep_old=False)
        except ConflictError:
            raise ConflictError(f"database {dbs.check_db_name(database or record.database)!r} already exists: --mode new "
                                "needs a new name (--database NAME), or use --into-schema NAME to restore beside the "
                                "live data; nothing was changed") from None
        return target, plan.database, "new"

    # ---- work ------------------------------------------------------------------------------
    def _run(self, record: BackupRecord, pairs: list[tuple[str, str]], keys: list[str], target: postgres.PgTarget,
             target_db: str, mode: str, into_schema: str | None, dry_run: bool, progress: Progress) -> SelectiveResult:
        if into_schema is not None:
            names = [t for _, t in pairs]
            dup = next((t for t in names if names.count(t) > 1), None)
            if dup is not None:
                raise UsageError(f"two selected tables are named {dup!r}: they cannot both land in schema {into_schema!r}; "
                                 "restore them one at a time into different schemas")
        st = self.svc.store(record.store)
        db_ref = record.object("database")
        if db_ref is None:
            raise RestoreFailed(f"backup {record.id} has no database object in its record")
        fetch.check_sizes(st, record, [db_ref])
        with self.base.spool_dir() as tmp:
            dump = tmp / "database.dump"
            with progress.task(f"fetch {record.id}", total=db_ref.size_bytes) as advance:
                fetch.spool(st, record, db_ref, dump, advance, self.base.identities)  # hash checked before anything else
            toc_tool = self.base.toc_tool(record)
            with open(dump, "rb") as fh:
                toc = tocs.read_toc(toc_tool, fh, known_tables=set(record.tables_by_name()))
            sel = selection.select(selection.read_entries(toc_tool, dump, record, toc.roles), pairs, keys)
            result = SelectiveResult(
                backup_id=record.id, tenant=record.tenant, database=target_db, server=target.where(), mode=mode,
                into_schema=into_schema, tables={k: record.tables[k] for k in keys}, would_create=sel.creates(),
                left_out=sel.left_out, duration_s=0.0, dry_run=dry_run)
            if into_schema is not None:
                result.would_create.insert(0, f"SCHEMA {into_schema} (in database {target_db})")
            if dry_run:
                return result
            listfile = tmp / "selection.list"
            sel.write_list(listfile)
            spec = dbspec.parse_spec(toc.database_sql)
            with dbs.admin(target, target_db) as s:
                _, major = dbs.server_version(s)
            tool, _ = self.svc.pg_tool(target, "pg_restore", major, error=ToolFailed)
            dbs.sweep_orphans(target)
            staging = dbs.side_name(target_db, "dsstage")
            with progress.task(f"restore {len(keys)} table(s) of {record.id}"):
                with dbs.claimed(target, staging):
                    result.tables = self._staged(record, sel, target, tool, dump, listfile, spec, toc, staging,
                                                 target_db, into_schema)
        return result

    def _staged(self, record: BackupRecord, sel: selection.Selection, target: postgres.PgTarget, tool: str, dump: Any,
                listfile: Any, spec: Any, toc: Any, staging: str, target_db: str, into_schema: str | None) -> dict[str, int]:
        with dbs.admin(target, target_db, staging) as conn:
            dbs.create_database(conn, staging, spec, encoding=toc.encoding)
        keep = False
        try:
            pgr.run_pg_restore(target, tool, staging, dump, args=(f"--use-list={listfile}",),
                               jobs=restore_jobs(self.svc.config.restore_jobs))
            with open_session(target, staging) as s:
                self._check_counts(record, sel, s, None, f"the staging copy (nothing was changed in {target_db!r})")
                if into_schema is not None:
                    s.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(into_schema)))
                    for schema, table in sel.tables:
                        s.execute(sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(
                            sql.Identifier(schema), sql.Identifier(table), sql.Identifier(into_schema)))
            failpoint("restore_selective.after_staged")
            if into_schema is None:
                with dbs.admin(target, target_db, staging) as conn:
                    dbs.apply_properties(conn, staging, spec)
                    dbs.rename_into_place(conn, staging, target_db, spec)
                keep = True
                where = None
            else:
                self._copy_schema(target, staging, target_db, into_schema)
                failpoint("restore_selective.after_copy")
                where = into_schema
            with open_session(target, target_db) as s:
                return self._check_counts(record, sel, s, where,
                                          f"database {target_db!r}" + (f" schema {into_schema!r}" if where else ""))
        finally:
            if not keep:
                dbs.drop_database(target, staging)

    @staticmethod
    def _check_counts(record: BackupRecord, sel: selection.Selection, s: Any, schema: str | None, where: str) -> dict[str, int]:
        got = {k: inventory.count_rows(s, schema or sch, t) for (sch, t), k in zip(sel.tables, sel.keys)}
        diffs = [f"{k} (recorded {record.tables[k]}, restored {n})" for k, n in got.items() if n != record.tables[k]]
        if diffs:
            raise RestoreFailed(f"restored rows in {where} do not match backup {record.id}: " + ", ".join(diffs))
        return got

    def _copy_schema(self, target: postgres.PgTarget, staging: str, target_db: str, schema: str) -> None:
        """pg_dump --schema of the staging database piped into pg_restore --single-transaction on the target."""
        with dbs.admin(target, target_db) as s:
            _, major = dbs.server_version(s)
        dump_tool, _ = self.svc.pg_tool(target, "pg_dump", major, error=ToolFailed)
        restore_tool, _ = self.svc.pg_tool(target, "pg_restore", major, error=ToolFailed)
        pattern = '"' + schema.replace('"', '""') + '"'
        base = [*target.conn_args(), "--no-password"]
        dump_argv = [dump_tool, *base, "--format=custom", f"--schema={pattern}",
                     f"--dbname={pgr.conninfo_dbname(staging)}"]
        restore_argv = [restore_tool, *base, "--exit-on-error", "--single-transaction",
                        f"--dbname={pgr.conninfo_dbname(target_db)}"]
        env = target.env()
        dumper = subprocess.Popen(dump_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        restorer = subprocess.Popen(restore_argv, stdin=dumper.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    env=env)
        dumper.stdout.close()
        tails = [_StderrTail(dumper.stderr, target.password), _StderrTail(restorer.stderr, target.password)]
        for t in tails:
            t.start()
        try:
            rc_r = restorer.wait()
            rc_d = dumper.wait()
        except BaseException:
            for p in (restorer, dumper):
                p.kill()
                p.wait()
            raise
        finally:
            for t in tails:
                t.join(timeout=5)
        if rc_d != 0 or rc_r != 0:
            why = tails[0].text() if rc_d != 0 else tails[1].text()
            raise RestoreFailed(f"copying schema {schema!r} into database {target_db!r} failed and was rolled back "
                                f"(nothing was changed there): {why or 'exit status ' + str(rc_d or rc_r)}")

