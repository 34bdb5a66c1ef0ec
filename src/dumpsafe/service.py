"""BackupService: the one API the CLI, REST and MCP fronts call.

Data flows one way: engine -> pipeline -> store -> record. The record is written last;
it is the commit marker, so a crash at any point leaves nothing listed.

The service holds the plumbing (stores, catalogs, audit, PostgreSQL targets and tools) and
the create/read/delete path; each other concern lives in its own module and is reached
through a method here: ``listing``, ``copies``, ``pruning`` (retention and pins),
``monitoring`` (status, anomaly alert), ``restore``/``restore_selective``/``verify``/``export``,
``recovery``, ``history`` and ``report``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Iterator

from dumpsafe import copies, listing, monitoring, pruning, recovery, report, restore_journal
from dumpsafe import export as exporting
from dumpsafe.audit import AuditLog
from dumpsafe.backup import BackupWriter
from dumpsafe.config import Config, tenant_password
from dumpsafe.engines import postgres, sqlsession
from dumpsafe.errors import (BackupFailed, DamagedRecord, DatabaseUnavailable, DumpsafeError, NotFoundError, StoreError,
                             UsageError)
from dumpsafe.fsutil import secure_config_roots
from dumpsafe.history import History
from dumpsafe.catalog import Catalog, Damaged
from dumpsafe.models import ID_RE, BackupRecord, utcnow, validate_backup_id
from dumpsafe.progress import NULL, Progress
from dumpsafe.restore import Restorer
from dumpsafe.restore_selective import SelectiveRestorer
from dumpsafe.retention import Decision
from dumpsafe.status import DatabaseStatus
from dumpsafe.storage import Store, open_store
from dumpsafe.verify import Verifier


class BackupService:
    def __init__(self, config: Config, *, clock=utcnow):
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.audit = AuditLog(self.state_dir)
        self._stores: dict[str, Store] = {}
        secure_config_roots(config)  # owner-only at rest; older trees tightened once
        self.clock = clock  # the one time source of the write path (tests inject one)

    # ---- plumbing -------------------------------------------------------------------------
    def store(self, name: str) -> Store:
        if name not in self._stores:
            self._stores[name] = open_store(self.config, name)
        return self._stores[name]

    def catalog(self, store_name: str) -> Catalog:
        return Catalog(self.store(store_name), self.state_dir / "cache")

    def pg_target(self, tenant: str) -> postgres.PgTarget:
        t = self.config.tenant(tenant)
        bin_dirs = tuple(p for p in (t.pg_bin_dir, self.config.pg_bin_dir) if p)
        return postgres.PgTarget(
            tenant=tenant,
            host=t.host,
            port=t.port,
            user=t.user,
            password=tenant_password(tenant, t),
            exec_prefix=tuple(t.exec or ()),
            bin_dirs=bin_dirs,
        )

    def pg_tool(self, target: postgres.PgTarget, name: str, server_major: int | None, *,
                error: type[DumpsafeError] = BackupFailed) -> tuple[str, str]:
        """Path and version of a client tool fit for the server (inside the exec target, if any);
        an exec target's tool that will not run raises ``error`` (restores and drills: RestoreFailed)."""
        if target.exec_prefix:
            return postgres.find_exec_tool(target, name, server_major, error=error)
        path, ver = postgres.find_tool(name, server_major, target.bin_dirs)
        return path, f"{ver[0]}.{ver[1]}"

    # ---- create ---------------------------------------------------------------------------
    def create(
        self,
        tenant: str,
        *,
        databases: list[str] | None = None,
        store: str | None = None,
        uploads: bool = True,
        label: str | None = None,
        pin: bool = False,
        actor: str = "local",
        progress: Progress = NULL,
    ) -> list[BackupRecord]:
        """Back up each database of a tenant (one backup each); return the committed records."""
        tcfg = self.config.tenant(tenant)
        store_name = self.config.store_for(tenant, store)
        with self.audit.record("create", actor, tenant=tenant, store=store_name, only_failure=True) as ev:
            target = self.pg_target(tenant)
            if databases:
                known = tcfg.databases if tcfg.databases is not None else sqlsession.list_databases(target)
                unknown = [d for d in databases if d not in known]
                if unknown:
                    ev.extra["error_kind"] = "usage"  # a mistyped name is no backup failure (see status.py)
                    where = "configured" if tcfg.databases is not None else "on the server"
                    raise UsageError(
                        f"database {unknown[0]!r} is not {'configured for' if tcfg.databases is not None else 'a database of'} "
                        f"tenant {tenant!r} ({where}: {', '.join(known) or 'none'})"
                    )
                dbs = list(dict.fromkeys(databases))
            else:
                dbs = list(tcfg.databases) if tcfg.databases is not None else sqlsession.list_databases(target)
            if not dbs:
                raise BackupFailed(f"tenant {tenant!r} has no databases to back up")
        restore_journal.replay(self, tenant)  # a killed restore of this tenant is finished or undone first
        # the uploads tree travels with the first database of the run: one tree per run
        records: list[BackupRecord] = []
        failures: list[tuple[str, DumpsafeError]] = []
        for i, db in enumerate(dbs):
            try:
                records.append(
                    self._create_one(
                        tenant, db, target, store_name,
                        with_uploads=uploads and tcfg.uploads is not None and i == 0,
                        label=label, pin=pin, actor=actor, progress=progress,
                    )
                )
            except DumpsafeError as e:  # a server that is down fails a backup: backup_failed, as it always said
                failures.append((db, BackupFailed(e.message) if isinstance(e, DatabaseUnavailable) else e))
        if failures:
            if len(failures) == 1 and not records:
                raise failures[0][1]
            done = ", ".join(r.database for r in records) or "none"
            why = "; ".join(f"{db}: {e.message}" for db, e in failures)
            raise BackupFailed(f"backup of {len(failures)} of {len(dbs)} databases of tenant {tenant!r} failed ({why}); completed: {done}")
        for rec in records:
            self._after_create(rec, actor=actor, progress=progress)
        return records

    def _create_one(self, tenant: str, db: str, target: postgres.PgTarget, store_name: str, **kw) -> BackupRecord:
        return BackupWriter(self).create_one(tenant, db, target, store_name, **kw)

    def _after_create(self, record: BackupRecord, *, actor: str, progress: Progress) -> None:
        """Follow-up work after a committed backup: anomaly alert, history, catalog manifest, copies."""
        self.check_anomaly(record)
        self.history.backup(record, actor)
        self.compact_catalog(record.store)  # a manifest once enough changes are not in one
        copies.copy_after_create(self, record, actor=actor, progress=progress)  # may raise

    # ---- read -----------------------------------------------------------------------------
    def list(self, tenant: str | None = None, database: str | None = None, store: str | None = None) -> list[BackupRecord]:
        """Records newest first, from one store or all configured stores (one entry per backup ID
        across stores); the damaged records met are in the result's ``damaged``."""
        return listing.list_records(self, tenant, database, store)

    def list_json(self, tenant: str | None = None, database: str | None = None,
                  store: str | None = None) -> tuple[Iterator[bytes], list[Damaged]]:
        """``list``'s records as one JSON array (newest first), streamed in pieces."""
        return listing.list_json(self, tenant, database, store)

    def get(self, backup_id: str, store: str | None = None) -> BackupRecord:
        """The record (from the first store that holds a sound one); DamagedRecord when the
        only ones found are damaged, NotFoundError when there is none."""
        validate_backup_id(backup_id)
        damaged: DamagedRecord | None = None
        unreachable: StoreError | None = None
        for name in self.stores_for(backup_id, store):
            try:
                rec = self.catalog(name).get(backup_id)
            except DamagedRecord as e:
                damaged = damaged or e
                continue
            except StoreError as e:
                if store:
                    raise
                # a store that is down must not hide the record another store holds (restoring
                # from the offsite copy while the primary is out is what the copy is for)
                logging.getLogger(__name__).warning("%s; looking for backup %s in the other stores", e.message, backup_id)
                unreachable = unreachable or e
                continue
            if rec is not None:
                return rec
        if unreachable is not None:
            raise unreachable  # the record may be in the store that could not be read: not "not found"
        if damaged is not None:
            raise damaged
        raise NotFoundError(f"backup {backup_id!r} not found (see 'dumpsafe backup list')")

    def stores_for(self, backup_id: str, store: str | None) -> list[str]:
        if store:
            if store not in self.config.stores:
                self.store(store)  # raises the unknown-store error
            return [store]
        tenant = backup_id.split(".", 1)[0]
        first = None
        if tenant in self.config.tenants:
            try:
                first = self.config.store_for(tenant)
            except DumpsafeError:
                first = None
        rest = [n for n in self.config.stores if n != first]
        return ([first] if first else []) + rest

    def save_record(self, record: BackupRecord) -> None:
        """Rewrite a record in place (atomically), e.g. after a verification or a pin."""
        self.catalog(record.store).put(record)

    # ---- delete ---------------------------------------------------------------------------
    def delete(self, backup_id: str, *, store: str | None = None, actor: str = "local") -> BackupRecord:
        """Remove the record first (so it is never listed half-deleted), then its objects."""
        with self.audit.record("delete", actor, backup_id=backup_id) as ev:
            rec = self.get(backup_id, store)
            ev.tenant, ev.database, ev.store, ev.size_bytes = rec.tenant, rec.database, rec.store, rec.size_bytes
            errors, pending = BackupWriter(self).delete_objects(rec, actor)
            if errors:
                ev.extra["leftover"] = errors
        if not errors:
            pending.done()
        else:  # the marker stays: the next sweep finishes the delete
            pending.release()
        self._after_delete(rec, store, actor)
        return rec

    # ---- restore, verify, export ----------------------------------------------------------
    def restore_plan(
        self,
        backup_id: str,
        *,
        database: str | None = None,
        mode: str | None = None,
        uploads: bool = True,
        uploads_to: Path | None = None,
        keep_old: bool = False,
        with_globals: bool = False,
        tables: list[str] | None = None,
        schemas: list[str] | None = None,
        into_schema: str | None = None,
    ):
        """What restore() would do (mode, target, uploads destination), read-only and cheap: fronts confirm on it.
        With a selection (tables, schemas, into_schema) it is the selective restore's dry run, which reads the
        dump's table of contents to list exactly what would be created."""
        if _selected(tables, schemas, into_schema, keep_old=keep_old, with_globals=with_globals):
            return self.restore_selective(backup_id, tables=tables, schemas=schemas, into_schema=into_schema,
                                          mode=mode, database=database, dry_run=True)
        record = self.get(backup_id)
        plan, _target, _ref = Restorer(self).plan(
            record, database=database, mode=mode, uploads=uploads, uploads_to=uploads_to, keep_old=keep_old,
            with_globals=with_globals,
        )
        return plan

    def restore(
        self,
        backup_id: str,
        *,
        database: str | None = None,
        mode: str | None = None,
        uploads: bool = True,
        uploads_to: Path | None = None,
        keep_old: bool = False,
        dry_run: bool = False,
        identity: Path | None = None,
        with_globals: bool = False,
        actor: str = "local",
        progress: Progress = NULL,
        no_owner: bool = False,
        owner: str | None = None,
        no_tablespaces: bool = False,
        tables: list[str] | None = None,
        schemas: list[str] | None = None,
        into_schema: str | None = None,
    ):
        """Restore a backup (integrity first, atomic by default); a RestoreResult, or a Preflight for dry_run.

        with_globals: first create the roles from the backup's globals object that the server lacks.
        tables/schemas/into_schema: only those tables (restore_selective; the uploads tree is left alone)."""
        if _selected(tables, schemas, into_schema, keep_old=keep_old, with_globals=with_globals, no_owner=no_owner,
                     owner=owner, no_tablespaces=no_tablespaces, uploads_to=uploads_to):
            return self.restore_selective(backup_id, tables=tables, schemas=schemas, into_schema=into_schema, mode=mode,
                                          database=database, dry_run=dry_run, identity=identity, actor=actor,
                                          progress=progress)
        return Restorer(self).restore(
            backup_id, database=database, mode=mode, uploads=uploads, uploads_to=uploads_to, keep_old=keep_old,
            dry_run=dry_run, identity=identity, with_globals=with_globals, actor=actor, progress=progress,
            no_owner=no_owner, owner=owner, no_tablespaces=no_tablespaces,
        )

    def restore_selective(self, backup_id: str, *, tables: list[str] | None = None, schemas: list[str] | None = None,
                          mode: str | None = None, into_schema: str | None = None, database: str | None = None,
                          dry_run: bool = False, identity: Path | None = None, actor: str = "local",
                          progress: Progress = NULL):
        """Restore some tables: --mode new (a new database) or into_schema (a new schema of the live one)."""
        return SelectiveRestorer(self).run(backup_id, tables=list(tables or []), schemas=list(schemas or []), mode=mode,
                                           into_schema=into_schema, database=database, dry_run=dry_run,
                                           identity=identity, actor=actor, progress=progress)

    def export(self, backup_id: str, out, *, uploads: bool = False, identity: Path | None = None,
               actor: str = "local") -> dict:
        """Write a backup's plain pg_dump archive (or uploads tar) to ``out`` (a Path: written whole or not at all;
        else a binary stream), SHA-256 checked on the way."""
        fn = exporting.export_to_file if isinstance(out, Path) else exporting.export
        return fn(self, backup_id, out, uploads=uploads, identity=identity, actor=actor)

    def verify(
        self, backup_id: str, *, drill: bool = False, identity: Path | None = None, actor: str = "local", progress: Progress = NULL
    ) -> BackupRecord:
        """Check a backup's integrity (and with drill, restore it into a scratch database); record the outcome."""
        started = utcnow()
        try:
            rec = Verifier(self).verify(backup_id, drill=drill, identity=identity, actor=actor, progress=progress)
        except DumpsafeError as e:
            self.history.verification(backup_id, drill, actor, started, error=e)
            raise
        self.history.verification(backup_id, drill, actor, started, record=rec)
        return rec

    # ---- history and evidence -------------------------------------------------------------
    @property
    def history(self):
        return History(self)

    def report(self, tenant: str | None = None, *, since: str | None = "90d", until: datetime | None = None):
        """The evidence report (report_model.Report) of one tenant or all, over the window."""
        names = [tenant] if tenant is not None else sorted(self.config.tenants)
        if tenant is not None:
            self.config.tenant(tenant)  # raises the unknown-tenant error
        until = until or self.clock()
        return report.build(self, names, report.parse_since(since, until), until)

    def backup_history(self, backup_id: str) -> list:
        """Every history event about one backup, oldest first (also after the backup is deleted)."""
        validate_backup_id(backup_id)
        return self.history.events(ID_RE.fullmatch(backup_id).group("tenant"), backup_id=backup_id)

    def rebuild_index(self, store: str | None = None) -> dict[str, int]:
        """Re-read every record from the store(s) into the local cache; backups per store."""
        names = [store] if store else list(self.config.stores)
        out: dict[str, int] = {}
        self.last_damaged: list[Damaged] = []
        for name in names:
            st = self.store(name)  # unknown store: one clear error
            swept = recovery.report_sweep(self, recovery.sweep(st, self.clock(), full=True))
            cat = self.catalog(name)
            out[name] = len(cat.rows(refresh=True))
            cat.compact(force=True, resync=False)  # a fresh manifest of everything just read
            self.last_damaged += cat.damaged
            self.last_damaged += [Damaged(b, name, "its record is missing; the copy beside its objects is there")
                                  for b in swept.missing_records]
        return out

    def compact_catalog(self, store: str) -> None:
        """Write a catalog manifest when enough changes are not in one yet; a
        failure only costs later listings speed, so it is logged, never raised."""
        try:
            self.catalog(store).compact()
        except Exception as e:  # noqa: BLE001 - the backup or prune it follows has committed
            logging.getLogger(__name__).warning("catalog manifest of store %r not written: %s", store, e)

    def sweep_store(self, st: Store) -> None:
        """Finish or undo what dead writers left in one store (before a write to it)."""
        recovery.report_sweep(self, recovery.sweep(st, self.clock()))

    def recover(self, *, actor: str = "local") -> "recovery.RecoveryReport":
        """Finish or undo every interrupted operation (``dumpsafe recover``; serve runs it at start)."""
        return recovery.recover(self, actor=actor)

    def repair(self, backup_id: str, *, actor: str = "local") -> "recovery.RepairResult":
        """Bring back a damaged (or missing) record: from its copy, else rebuilt from its objects."""
        return recovery.repair(self, backup_id, actor=actor)

    def _after_delete(self, rec: BackupRecord, store: str | None, actor: str) -> None:
        copies.after_delete(self, rec, store, actor)

    # ---- copies, retention, pins, status ----------------------------------------------------
    def copy(self, backup_id: str, *, to: str, store: str | None = None, actor: str = "local",
             progress: Progress = NULL) -> BackupRecord:
        """Stream a backup's objects to store ``to`` (SHA-256 checked), then record the copy there."""
        return copies.copy(self, backup_id, to=to, store=store, actor=actor, progress=progress)

    def prune(
        self, tenant: str | None = None, *, dry_run: bool = False, actor: str = "local", now: datetime | None = None
    ) -> list[Decision]:
        """Apply each tenant's retention policy to its backups in every store; a decision per backup."""
        return pruning.prune(self, tenant, dry_run=dry_run, actor=actor, now=now)

    def set_pinned(self, backup_id: str, pinned: bool, *, actor: str = "local") -> BackupRecord:
        """Pin (never pruned) or unpin a backup, in every store that holds it."""
        return pruning.set_pinned(self, backup_id, pinned, actor=actor)

    def pin(self, backup_id: str, *, actor: str = "local") -> BackupRecord:
        return self.set_pinned(backup_id, True, actor=actor)

    def unpin(self, backup_id: str, *, actor: str = "local") -> BackupRecord:
        return self.set_pinned(backup_id, False, actor=actor)

    def check_anomaly(self, record: BackupRecord) -> list[str]:
        """Compare a fresh backup with its recent ones; alert on a big drop (never raises)."""
        return monitoring.check_anomaly(self, record)

    def status(self, tenant: str | None = None, *, now: datetime | None = None) -> list[DatabaseStatus]:
        """Per tenant/database: last success and age, last failure, last drill, next run, max_age breach."""
        return monitoring.status(self, tenant, now=now)


def _selected(tables: list[str] | None, schemas: list[str] | None, into_schema: str | None, **whole: object) -> bool:
    """Whether a restore names a selection; options of whole-database restores are refused with one."""
    if not (tables or schemas or into_schema is not None):
        return False
    given = sorted(k for k, v in whole.items() if v)
    if given:
        raise UsageError(f"a selective restore (tables, schemas, into_schema) restores tables only: leave out {', '.join(given)}")
    return True

