"""BackupService: the one API the CLI, REST and MCP fronts call.

Data flows one way: engine -> pipeline -> store -> record. The record is written last;
it is the commit marker, so a crash at any point leaves nothing listed.
"""

from __future__ import annotations

import heapq
import os
from pathlib import Path
from typing import Iterator

from dumpsafe.audit import AuditLog
from dumpsafe.config import Config, tenant_password
from dumpsafe.engines import postgres, sqlsession
from dumpsafe.errors import BackupFailed, DamagedRecord, DatabaseUnavailable, DumpsafeError, NotFoundError, StoreError, UsageError
from dumpsafe.failpoints import failpoint
from dumpsafe.fsutil import secure_config_roots
from dumpsafe.index import Catalog, Damaged, filter_records, newest_first
from dumpsafe.models import ID_RE, BackupRecord, utcnow, validate_backup_id
from dumpsafe.progress import NULL, Progress
from dumpsafe.storage import Store, open_store
from dumpsafe import anomaly, retention, status as status_mod  # issue 5
import logging  # issue 5
from dumpsafe.retention import Decision  # issue 5
from dumpsafe.status import DatabaseStatus  # issue 5
from datetime import datetime  # issue 5

from dumpsafe.backup import CLOCK_SLACK, DUMP_OBJECT, GLOBALS_OBJECT, UPLOADS_OBJECT, BackupWriter  # noqa: F401  (re-exported)
from dumpsafe import report
from dumpsafe.history import History
from dumpsafe.lease import exclusive
from dumpsafe.restore import Restorer
from dumpsafe.restore_selective import SelectiveRestorer
from dumpsafe import export as exporting
from dumpsafe.verify import Verifier
from dumpsafe import recovery
from dumpsafe import restore_journal  # issue 13: registers its recovery step


class RecordList(list):
    """Records, plus the damaged records met while listing them (never silently dropped)."""

    damaged: list[Damaged]
    warnings: list[str]


class BackupService:
    def __init__(self, config: Config, *, clock=utcnow):
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.audit = AuditLog(self.state_dir)
        self._stores: dict[str, Store] = {}
        secure_config_roots(config)  # owner-only at rest; older trees tightened once (issue 12)
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

    def pg_tool(self, target: postgres.PgTarget, name: str, server_major: int | None) -> tuple[str, str]:
        """Path and version of a client tool fit for the server (inside the exec target, if any)."""
        if target.exec_prefix:
            return postgres.find_exec_tool(target, name, server_major)
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
        """Follow-up work after a committed backup (copies, notifications): see issues 4 and 5."""
        self.check_anomaly(record)  # issue 5
        self.history.backup(record, actor)  # issue 15
        self.compact_catalog(record.store)  # issue 16: a manifest once enough changes are not in one
        self._copy_after_create(record, actor=actor, progress=progress)  # issue 4 (may raise)

    # ---- read -----------------------------------------------------------------------------
    def list(self, tenant: str | None = None, database: str | None = None, store: str | None = None) -> list[BackupRecord]:
        """Records newest first, from one store or all configured stores."""
        if tenant is not None and tenant not in self.config.tenants:
            self.config.tenant(tenant)  # raises the unknown-tenant error
        names = [store] if store else list(self.config.stores)
        out: list[BackupRecord] = []
        damaged: list[Damaged] = []
        for name in names:
            cat = self.catalog(name)
            out += filter_records(cat.records(), tenant, database)
            damaged += [d for d in cat.damaged if tenant is None or d.id.split(".", 1)[0] == tenant]
        result = RecordList(newest_first(out) if store else self._prefer_originals(newest_first(out)))
        result.damaged = damaged
        return result

    def get(self, backup_id: str, store: str | None = None) -> BackupRecord:
        """The record (from the first store that holds a sound one); DamagedRecord when the
        only ones found are damaged, NotFoundError when there is none."""
        validate_backup_id(backup_id)
        damaged: DamagedRecord | None = None
        for name in self._stores_for(backup_id, store):
            try:
                rec = self.catalog(name).get(backup_id)
            except DamagedRecord as e:
                damaged = damaged or e
                continue
            if rec is not None:
                return rec
        if damaged is not None:
            raise damaged
        raise NotFoundError(f"backup {backup_id!r} not found (see 'dumpsafe backup list')")

    def _stores_for(self, backup_id: str, store: str | None) -> list[str]:
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

    # --- restore & verify (issue 3) ---
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
        """Restore some tables (issue 19): --mode new (a new database) or into_schema (a new schema of the live one)."""
        return SelectiveRestorer(self).run(backup_id, tables=list(tables or []), schemas=list(schemas or []), mode=mode,
                                           into_schema=into_schema, database=database, dry_run=dry_run,
                                           identity=identity, actor=actor, progress=progress)

    def export(self, backup_id: str, out, *, uploads: bool = False, identity: Path | None = None,
               actor: str = "local") -> dict:
        """Write a backup's plain pg_dump archive (or uploads tar) to ``out`` (a Path: written whole or not at all;
        else a binary stream), SHA-256 checked on the way (issue 19)."""
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
            self.history.verification(backup_id, drill, actor, started, error=e)  # issue 15
            raise
        self.history.verification(backup_id, drill, actor, started, record=rec)  # issue 15
        return rec

    # --- history (issue 15) ---
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

    # --- stores (issue 4) ---
    def copy(
        self,
        backup_id: str,
        *,
        to: str,
        store: str | None = None,
        actor: str = "local",
        progress: Progress = NULL,
    ) -> BackupRecord:
        """Stream a backup's objects to store ``to``, check every SHA-256 on the way and again
        on arrival, then write the copy's record there (last) and list ``to`` in the source's
        ``copies``. Copying to a store that already holds the backup only fixes ``copies``."""
        with self.audit.record("copy", actor, backup_id=backup_id, store=to) as ev:
            rec = self.get(backup_id, store)
            ev.tenant, ev.database, ev.size_bytes = rec.tenant, rec.database, rec.size_bytes
            ev.extra["source_store"] = rec.store
            if to == rec.store:
                raise UsageError(f"backup {rec.id} is already in store {to!r} (pick another store with --to)")
            dst = self.store(to)  # unknown store: one clear error
            copy_rec = self.catalog(to).get(rec.id)
            pending = None
            if copy_rec is None:
                copy_rec, pending = BackupWriter(self).copy_objects(rec, self.store(rec.store), dst, progress, actor)
            if to not in rec.copies:
                self.save_record(rec.model_copy(update={"copies": [*rec.copies, to]}))
        if pending is not None:
            pending.done()
        return copy_rec

    def _copy_after_create(self, record: BackupRecord, *, actor: str, progress: Progress) -> None:
        """The tenant's ``copy_to`` stores, after every committed backup (3-2-1)."""
        for to in self.config.tenant(record.tenant).copy_to:
            if to == record.store:
                continue
            try:
                self.copy(record.id, to=to, store=record.store, actor=actor, progress=progress)
            except DumpsafeError as e:
                raise BackupFailed(
                    f"backup {record.id} completed in store {record.store!r} but its copy to {to!r} failed: "
                    f"{e.message} (retry with 'dumpsafe backup copy {record.id} --to {to}')"
                ) from None

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
            cat.compact(force=True, resync=False)  # issue 16: a fresh manifest of everything just read
            self.last_damaged += cat.damaged
            self.last_damaged += [Damaged(b, name, "its record is missing; the copy beside its objects is there")
                                  for b in swept.missing_records]
        return out

    def compact_catalog(self, store: str) -> None:
        """Write a catalog manifest when enough changes are not in one yet (issue 16); a
        failure only costs later listings speed, so it is logged, never raised."""
        try:
            self.catalog(store).compact()
        except Exception as e:  # noqa: BLE001 - the backup or prune it follows has committed
            logging.getLogger(__name__).warning("catalog manifest of store %r not written: %s", store, e)

    def list_json(self, tenant: str | None = None, database: str | None = None,
                  store: str | None = None) -> tuple[Iterator[bytes], list[Damaged]]:
        """``list``'s records as one JSON array (newest first), streamed in pieces straight
        from the cache's normalized JSON: no model per record, memory flat (issue 16)."""
        if tenant is not None and tenant not in self.config.tenants:
            self.config.tenant(tenant)  # raises the unknown-tenant error
        names = [store] if store else list(self.config.stores)
        damaged: list[Damaged] = []
        streams = []
        for name in names:
            cat = self.catalog(name)
            streams.append(cat.stream(tenant, database))
            damaged += [d for d in cat.damaged if tenant is None or d.id.split(".", 1)[0] == tenant]
        if any(s is None for s in streams):  # a clock went back somewhere: order by sequence
            recs = self.list(tenant, database, store)
            return iter([b"[" + b",\n".join(r.model_dump_json().encode() for r in recs) + b"]\n"]), damaged
        merged = heapq.merge(*streams, key=lambda t: (t[0], t[1]), reverse=True)

        def unique() -> Iterator[bytes]:
            """One entry per backup ID across stores: the original, else its first copy."""
            held = None
            for item in merged:
                if held is not None and item[1] == held[1]:
                    if held[2] and not item[2]:
                        held = item
                    continue
                if held is not None:
                    yield held[3]
                held = item
            if held is not None:
                yield held[3]

        def pieces() -> Iterator[bytes]:
            sep, batch = b"[\n", []
            for data in unique():
                batch.append(data)
                if len(batch) == 2000:
                    yield sep + b",\n".join(batch)
                    sep, batch = b",\n", []
            yield (sep + b",\n".join(batch) if batch else (b"[" if sep == b"[\n" else b"")) + b"\n]\n"

        return pieces(), damaged

    def sweep_store(self, st: Store) -> None:
        """Finish or undo what dead writers left in one store (before a write to it)."""
        recovery.report_sweep(self, recovery.sweep(st, self.clock()))

    def recover(self, *, actor: str = "local") -> "recovery.RecoveryReport":
        """Finish or undo every interrupted operation (``dumpsafe recover``; serve runs it at start)."""
        return recovery.recover(self, actor=actor)

    def repair(self, backup_id: str, *, actor: str = "local") -> "recovery.RepairResult":
        """Bring back a damaged (or missing) record: from its copy, else rebuilt from its objects."""
        return recovery.repair(self, backup_id, actor=actor)

    @staticmethod
    def _prefer_originals(records: list[BackupRecord]) -> list[BackupRecord]:
        """One entry per backup ID across stores: the original, else its first copy found."""
        seen: dict[str, BackupRecord] = {}
        for r in records:
            had = seen.get(r.id)
            if had is None or (getattr(had, "copy_of", None) and not getattr(r, "copy_of", None)):
                seen[r.id] = r
        return [r for r in records if seen[r.id] is r]

    def _after_delete(self, rec: BackupRecord, store: str | None, actor: str) -> None:
        """An original owns its copies: deleting it (also by prune) deletes them, since they
        carry the same ID. Deleting a copy drops that store from the original's ``copies``."""
        source = getattr(rec, "copy_of", None)
        if source:
            if source in self.config.stores:
                orig = self.catalog(source).get(rec.id)
                if orig is not None and rec.store in orig.copies:
                    self.save_record(orig.model_copy(update={"copies": [c for c in orig.copies if c != rec.store]}))
            return
        for name in rec.copies:
            if name == rec.store or name not in self.config.stores:
                continue
            try:
                self.delete(rec.id, store=name, actor=actor)
            except NotFoundError:
                pass
            except DumpsafeError as e:
                raise StoreError(
                    f"backup {rec.id} was deleted from store {rec.store!r} but its copy in {name!r} was not: "
                    f"{e.message} (run 'dumpsafe backup delete {rec.id}' again)"
                ) from None

    # --- retention/status (issue 5) ---
    def prune(
        self, tenant: str | None = None, *, dry_run: bool = False, actor: str = "local", now: datetime | None = None
    ) -> list[Decision]:
        """Apply each tenant's retention policy to its backups in every store.

        Returns a decision for every backup (keep/remove and the rules that kept it). A tenant
        without a policy keeps everything. Deletions go through ``delete`` (each is audited),
        plus one ``prune`` audit line per tenant.
        """
        names = [tenant] if tenant is not None else sorted(self.config.tenants)
        if tenant is not None:
            self.config.tenant(tenant)  # raises the unknown-tenant error
        now = now or self.clock()
        out: list[Decision] = []
        problems: list[str] = []
        if not dry_run:  # finish deletes a killed prune left half-done
            for st_name in self.config.stores:
                self.sweep_store(self.store(st_name))
        for name in names:
            records = self.list(name)
            policy = self.config.retention_for(name)
            if policy is None:
                out += [Decision(r.id, r.tenant, r.database, r.store, r.created_at, True, ("no_policy",)) for r in records]
                continue
            decisions = retention.plan(records, policy, now)
            out += decisions
            if dry_run:
                continue
            doomed = retention.to_remove(decisions)
            with self.audit.record("prune", actor, tenant=name) as ev, self._prune_lease(name):
                ev.extra.update(removed=0, kept=len(decisions) - len(doomed))
                for d in doomed:
                    try:
                        self.delete(d.id, store=d.store, actor=actor)
                        ev.extra["removed"] += 1
                        failpoint("prune.after_delete")
                    except NotFoundError:
                        ev.extra["removed"] += 1  # already gone (another prune got there first)
                    except DumpsafeError as e:
                        problems.append(f"{d.id}: {e.message}")
                if problems:
                    raise StoreError(f"prune of tenant {name!r} could not delete {len(problems)} backup(s): {'; '.join(problems)}")
        if not dry_run:
            for st_name in self.config.stores:
                self.compact_catalog(st_name)  # issue 16
        return out

    def _prune_lease(self, tenant: str):
        """Hosts sharing the tenant's store never prune it at once (issue 16): a lease in that store."""
        from contextlib import nullcontext

        try:
            store = self.store(self.config.store_for(tenant))
        except DumpsafeError:
            return nullcontext()
        return exclusive(store, f"prune-{tenant}", f"a prune of tenant {tenant!r}")

    def set_pinned(self, backup_id: str, pinned: bool, *, actor: str = "local") -> BackupRecord:
        """Pin (never pruned) or unpin a backup, in every store that holds it."""
        validate_backup_id(backup_id)
        with self.audit.record("pin" if pinned else "unpin", actor, backup_id=backup_id) as ev:
            found: list[BackupRecord] = []
            for name in self._stores_for(backup_id, None):
                rec = self.catalog(name).get(backup_id)
                if rec is None:
                    continue
                if rec.pinned != pinned:
                    rec = rec.model_copy(update={"pinned": pinned})
                    self.save_record(rec)
                found.append(rec)
            if not found:
                raise NotFoundError(f"backup {backup_id!r} not found (see 'dumpsafe backup list')")
            ev.tenant, ev.database, ev.store = found[0].tenant, found[0].database, found[0].store
            return found[0]

    def pin(self, backup_id: str, *, actor: str = "local") -> BackupRecord:
        return self.set_pinned(backup_id, True, actor=actor)

    def unpin(self, backup_id: str, *, actor: str = "local") -> BackupRecord:
        return self.set_pinned(backup_id, False, actor=actor)

    def check_anomaly(self, record: BackupRecord) -> list[str]:
        """Compare a fresh backup with the last 5 of its tenant/database; alert on a big drop.

        Never fails the backup it looks at: a listing or delivery problem is only logged.
        """
        from dumpsafe.notify import Event, EventKind, Notifier

        try:
            history = self.list(record.tenant, record.database, record.store)
            findings = anomaly.detect(record, history, self.config.anomaly_drop)
            if findings:
                Notifier(self.config).send(
                    Event(
                        EventKind.ANOMALY,
                        record.tenant,
                        record.database,
                        f"backup {record.id} of {record.tenant}/{record.database} is much smaller than the recent ones",
                        backup_id=record.id,
                        details=tuple(findings),
                    )
                )
            return findings
        except Exception as e:  # noqa: BLE001 - an alerting problem must not fail a committed backup
            logging.getLogger(__name__).warning("anomaly check of %s skipped: %s", record.id, type(e).__name__)
            return []

    def status(self, tenant: str | None = None, *, now: datetime | None = None) -> list[DatabaseStatus]:
        """Per tenant/database: last success and age, last failure and why, last drill,
        next scheduled run, and whether max_age is breached (absence of success)."""
        records = self.list(tenant)
        unique = list({r.id: r for r in reversed(records)}.values())  # a copy in another store is the same backup
        now = now or self.clock()
        # failures come from the audit log's small state file, never from re-reading the log (issue 12)
        rows = RecordList(status_mod.compute(self.config, unique, self.audit.failure_summary(tenant), now, tenant,
                                             restorable=self.history.restorable(tenant, unique)))  # issue 15
        rows.damaged = records.damaged
        rows.warnings = clock_warnings(records, now)
        return rows


def _selected(tables: list[str] | None, schemas: list[str] | None, into_schema: str | None, **whole: object) -> bool:
    """Whether a restore names a selection (issue 19); options of whole-database restores are refused with one."""
    if not (tables or schemas or into_schema is not None):
        return False
    given = sorted(k for k, v in whole.items() if v)
    if given:
        raise UsageError(f"a selective restore (tables, schemas, into_schema) restores tables only: leave out {', '.join(given)}")
    return True


def clock_warnings(records: list[BackupRecord], now: datetime) -> list[str]:
    """A clock that went back more than a minute: behind the newest backup of a
    tenant/database (by sequence), or behind an earlier backup when that one was made."""
    out: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for r in records:  # newest first within each tenant/database
        key = (r.store, r.tenant, r.database)
        if key in seen:
            continue
        seen.add(key)
        if r.created_at - now > CLOCK_SLACK:
            out.append(f"the clock is {(r.created_at - now).total_seconds():.0f}s behind the newest backup of "
                       f"{r.tenant}/{r.database} ({r.id}); check the system clock")
        elif r.clock_behind_s:
            out.append(f"the clock was {r.clock_behind_s:.0f}s behind when {r.id} of {r.tenant}/{r.database} was made; "
                       "ordering and retention follow the backup sequence")
    return out



def ensure_state_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
