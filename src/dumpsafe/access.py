"""What a caller may do: the scope and tenant rules shared by the REST and MCP fronts.

``GuardedService`` wraps the one BackupService for one caller. Every method checks the
scope, keeps a tenant token inside its tenant and passes the caller as the audit actor.
Another tenant's backup answers exactly like a backup that does not exist, and another
tenant's name exactly like a tenant that does not exist, so nothing can be probed.
A refused write is audited like any failed action.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from dumpsafe.auth import CREATE, DELETE, READ, RESTORE, Caller
from dumpsafe.errors import NotFoundError, UnknownNameError
from dumpsafe.models import BackupRecord, validate_backup_id


def backup_not_found(backup_id: str) -> NotFoundError:
    """The one answer for a missing backup and for another tenant's backup."""
    return NotFoundError(f"backup {backup_id!r} not found (see 'dumpsafe backup list')")


class GuardedService:
    def __init__(self, service: Any, caller: Caller):
        self.service = service
        self.caller = caller

    # ---- rules ----------------------------------------------------------------------------
    def _tenant(self, tenant: str | None) -> str | None:
        """The tenant a request is limited to: a tenant token's own, never another one."""
        c = self.caller
        if c.admin:
            return tenant
        if (tenant is not None and tenant != c.tenant) or c.tenant not in self.service.config.tenants:
            # the same answer as for a name that is not configured, without listing real ones
            raise UnknownNameError(f"unknown tenant {tenant or c.tenant!r}")
        return c.tenant

    def _record(self, backup_id: str) -> BackupRecord:
        validate_backup_id(backup_id)
        if not self.caller.admin and backup_id.split(".", 1)[0] != self.caller.tenant:
            raise backup_not_found(backup_id)
        try:
            rec = self.service.get(backup_id)
        except NotFoundError:
            raise backup_not_found(backup_id) from None
        if not self.caller.sees(rec.tenant):
            raise backup_not_found(backup_id)
        return rec

    @contextmanager
    def _guard(self, action: str, **fields: Any) -> Iterator[None]:
        """Audit a refusal (missing scope, unseen tenant or backup) of a write action."""
        with self.service.audit.record(action, self.caller.actor, only_failure=True, **fields):
            yield

    # ---- reads ----------------------------------------------------------------------------
    def list(self, tenant: str | None = None, database: str | None = None, store: str | None = None) -> list[BackupRecord]:
        self.caller.require(READ)
        return self.service.list(self._tenant(tenant), database, store)

    def get(self, backup_id: str) -> BackupRecord:
        self.caller.require(READ)
        return self._record(backup_id)

    # ---- writes ---------------------------------------------------------------------------
    def create(
        self,
        tenant: str,
        *,
        databases: list[str] | None = None,
        store: str | None = None,
        uploads: bool = True,
        label: str | None = None,
        pin: bool = False,
    ) -> list[BackupRecord]:
        with self._guard("create", tenant=tenant, store=store):
            self.caller.require(CREATE)
            self._tenant(tenant)
        return self.service.create(
            tenant, databases=databases, store=store, uploads=uploads, label=label, pin=pin, actor=self.caller.actor
        )

    def delete(self, backup_id: str) -> BackupRecord:
        with self._guard("delete", backup_id=backup_id):
            self.caller.require(DELETE)
            rec = self._record(backup_id)
        return self.service.delete(rec.id, store=rec.store, actor=self.caller.actor)

    def verify(self, backup_id: str, *, drill: bool = False) -> BackupRecord:
        with self._guard("verify", backup_id=backup_id):
            self.caller.require(CREATE)
            rec = self._record(backup_id)
        return self.service.verify(rec.id, drill=drill, actor=self.caller.actor)

    def restore_plan(self, backup_id: str, **opts: Any) -> Any:
        self.caller.require(RESTORE)
        return self.service.restore_plan(self._record(backup_id).id, **opts)

    def restore(self, backup_id: str, **opts: Any) -> Any:
        """Restore into the backup's own tenant (a database NAME; uploads only to the configured tree)."""
        with self._guard("restore", backup_id=backup_id):
            self.caller.require(RESTORE)
            rec = self._record(backup_id)
        return self.service.restore(rec.id, actor=self.caller.actor, **opts)

    def prune(self, tenant: str | None = None, *, dry_run: bool = False) -> list[Any]:
        with self._guard("prune", tenant=tenant):
            self.caller.require(DELETE)
            tenant = self._tenant(tenant)
        return self.service.prune(tenant, dry_run=dry_run, actor=self.caller.actor)

    def pin(self, backup_id: str) -> BackupRecord:
        return self._set_pinned("pin", backup_id)

    def unpin(self, backup_id: str) -> BackupRecord:
        return self._set_pinned("unpin", backup_id)

    def _set_pinned(self, action: str, backup_id: str) -> BackupRecord:
        with self._guard(action, backup_id=backup_id):
            self.caller.require(CREATE)
            rec = self._record(backup_id)
        return getattr(self.service, action)(rec.id, actor=self.caller.actor)

    def copy(self, backup_id: str, *, to: str) -> BackupRecord:
        """Copy to another configured store (a NAME); the copy stays in the backup's tenant."""
        with self._guard("copy", backup_id=backup_id, store=to):
            self.caller.require(CREATE)
            rec = self._record(backup_id)
        return self.service.copy(rec.id, to=to, actor=self.caller.actor)

    def status(self, tenant: str | None = None) -> list[Any]:
        self.caller.require(READ)
        return self.service.status(self._tenant(tenant))


def offers(service: object, method: str) -> bool:
    """Whether the service has an operation; fronts register routes and tools by this."""
    return callable(getattr(service, method, None))

