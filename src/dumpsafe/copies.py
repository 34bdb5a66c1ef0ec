"""Copies of a backup in other stores (3-2-1): copy on demand or after every backup to the
tenant's ``copy_to`` stores, and keep originals and copies consistent when one is deleted.

A copy carries the original's ID; the original lists the stores that hold a copy in
``copies``, the copy names its original's store in ``copy_of``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dumpsafe.backup import BackupWriter
from dumpsafe.errors import BackupFailed, DumpsafeError, NotFoundError, StoreError, UsageError
from dumpsafe.models import BackupRecord
from dumpsafe.progress import NULL, Progress

if TYPE_CHECKING:
    from dumpsafe.service import BackupService


def copy(svc: BackupService, backup_id: str, *, to: str, store: str | None = None, actor: str = "local",
         progress: Progress = NULL) -> BackupRecord:
    """Stream a backup's objects to store ``to``, check every SHA-256 on the way and again
    on arrival, then write the copy's record there (last) and list ``to`` in the source's
    ``copies``. Copying to a store that already holds the backup only fixes ``copies``."""
    with svc.audit.record("copy", actor, backup_id=backup_id, store=to) as ev:
        rec = svc.get(backup_id, store)
        ev.tenant, ev.database, ev.size_bytes = rec.tenant, rec.database, rec.size_bytes
        ev.extra["source_store"] = rec.store
        if to == rec.store:
            raise UsageError(f"backup {rec.id} is already in store {to!r} (pick another store with --to)")
        dst = svc.store(to)  # unknown store: one clear error
        copy_rec = svc.catalog(to).get(rec.id)
        pending = None
        if copy_rec is None:
            copy_rec, pending = BackupWriter(svc).copy_objects(rec, svc.store(rec.store), dst, progress, actor)
        if to not in rec.copies:
            svc.save_record(rec.model_copy(update={"copies": [*rec.copies, to]}))
    if pending is not None:
        pending.done()
    return copy_rec


def copy_after_create(svc: BackupService, record: BackupRecord, *, actor: str, progress: Progress) -> None:
    """The tenant's ``copy_to`` stores, after every committed backup (3-2-1)."""
    for to in svc.config.tenant(record.tenant).copy_to:
        if to == record.store:
            continue
        try:
            svc.copy(record.id, to=to, store=record.store, actor=actor, progress=progress)
        except DumpsafeError as e:
            raise BackupFailed(
                f"backup {record.id} completed in store {record.store!r} but its copy to {to!r} failed: "
                f"{e.message} (retry with 'dumpsafe backup copy {record.id} --to {to}')"
            ) from None


def after_delete(svc: BackupService, rec: BackupRecord, store: str | None, actor: str) -> None:
    """An original owns its copies: deleting it (also by prune) deletes them, since they
    carry the same ID. Deleting a copy drops that store from the original's ``copies``."""
    source = getattr(rec, "copy_of", None)
    if source:
        if source in svc.config.stores:
            orig = svc.catalog(source).get(rec.id)
            if orig is not None and rec.store in orig.copies:
                svc.save_record(orig.model_copy(update={"copies": [c for c in orig.copies if c != rec.store]}))
        return
    for name in rec.copies:
        if name == rec.store or name not in svc.config.stores:
            continue
        try:
            svc.delete(rec.id, store=name, actor=actor)
        except NotFoundError:
            pass
        except DumpsafeError as e:
            raise StoreError(
                f"backup {rec.id} was deleted from store {rec.store!r} but its copy in {name!r} was not: "
                f"{e.message} (run 'dumpsafe backup delete {rec.id}' again)"
            ) from None
