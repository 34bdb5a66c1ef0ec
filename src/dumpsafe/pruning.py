"""Retention applied: prune each tenant's backups by its policy, and pin/unpin backups.

The policy itself (which backups a policy keeps) is the pure ``retention`` module; this one
deletes through the service (each delete audited), under a lease in the tenant's store so
hosts sharing it never prune it at once.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING

from dumpsafe import retention
from dumpsafe.errors import DumpsafeError, NotFoundError, StoreError
from dumpsafe.failpoints import failpoint
from dumpsafe.lease import exclusive
from dumpsafe.models import BackupRecord, validate_backup_id
from dumpsafe.retention import Decision

if TYPE_CHECKING:
    from dumpsafe.service import BackupService


def prune(svc: BackupService, tenant: str | None = None, *, dry_run: bool = False, actor: str = "local",
          now: datetime | None = None) -> list[Decision]:
    """Apply each tenant's retention policy to its backups in every store.

    Returns a decision for every backup (keep/remove and the rules that kept it). A tenant
    without a policy keeps everything. Deletions go through ``svc.delete`` (each is audited),
    plus one ``prune`` audit line per tenant.
    """
    names = [tenant] if tenant is not None else sorted(svc.config.tenants)
    if tenant is not None:
        svc.config.tenant(tenant)  # raises the unknown-tenant error
    now = now or svc.clock()
    out: list[Decision] = []
    problems: list[str] = []
    if not dry_run:  # finish deletes a killed prune left half-done
        for st_name in svc.config.stores:
            svc.sweep_store(svc.store(st_name))
    for name in names:
        records = svc.list(name)
        policy = svc.config.retention_for(name)
        if policy is None:
            out += [Decision(r.id, r.tenant, r.database, r.store, r.created_at, True, ("no_policy",)) for r in records]
            continue
        decisions = retention.plan(records, policy, now)
        out += decisions
        if dry_run:
            continue
        doomed = retention.to_remove(decisions)
        with svc.audit.record("prune", actor, tenant=name) as ev, prune_lease(svc, name):
            ev.extra.update(removed=0, kept=len(decisions) - len(doomed))
            for d in doomed:
                try:
                    svc.delete(d.id, store=d.store, actor=actor)
                    ev.extra["removed"] += 1
                    failpoint("prune.after_delete")
                except NotFoundError:
                    ev.extra["removed"] += 1  # already gone (another prune got there first)
                except DumpsafeError as e:
                    problems.append(f"{d.id}: {e.message}")
            if problems:
                raise StoreError(f"prune of tenant {name!r} could not delete {len(problems)} backup(s): {'; '.join(problems)}")
    if not dry_run:
        for st_name in svc.config.stores:
            svc.compact_catalog(st_name)
    return out


def prune_lease(svc: BackupService, tenant: str) -> AbstractContextManager:
    """Hosts sharing the tenant's store never prune it at once: a lease in that store."""
    try:
        store = svc.store(svc.config.store_for(tenant))
    except DumpsafeError:
        return nullcontext()
    return exclusive(store, f"prune-{tenant}", f"a prune of tenant {tenant!r}")


def set_pinned(svc: BackupService, backup_id: str, pinned: bool, *, actor: str = "local") -> BackupRecord:
    """Pin (never pruned) or unpin a backup, in every store that holds it."""
    validate_backup_id(backup_id)
    with svc.audit.record("pin" if pinned else "unpin", actor, backup_id=backup_id) as ev:
        found: list[BackupRecord] = []
        for name in svc.stores_for(backup_id, None):
            rec = svc.catalog(name).get(backup_id)
            if rec is None:
                continue
            if rec.pinned != pinned:
                rec = rec.model_copy(update={"pinned": pinned})
                svc.save_record(rec)
            found.append(rec)
        if not found:
            raise NotFoundError(f"backup {backup_id!r} not found (see 'dumpsafe backup list')")
        ev.tenant, ev.database, ev.store = found[0].tenant, found[0].database, found[0].store
        return found[0]
