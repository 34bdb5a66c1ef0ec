"""What a caller may do: the scope and tenant rules shared by the REST and MCP fronts.

``GuardedService`` wraps the one BackupService for one caller. Every method checks the
scope its operation declares (dumpsafe.operations), keeps a tenant token inside its tenant
(an operation's backup ID or ``tenant`` argument names it) and passes the caller as the audit actor.
Another tenant's backup answers exactly like a backup that does not exist, and another
tenant's name exactly like a tenant that does not exist, so nothing can be probed.

A tenant token reaches only its tenant (admin tokens and the local CLI keep full reach):
- restore targets: the tenant's configured ``databases`` (for a tenant without a list, the
  database the backup came from), or a name matching one of its ``restore_names`` globs
  (e.g. ``"app_restored_*"``), in any mode; everything else is refused with 403 BEFORE any
  connection to a server, so the answer says nothing about what exists there. Creating
  server-wide roles (``with_globals``) is refused too: roles are shared by every tenant
  of a server (a dry run may still report them).
- stores: it writes only to its tenant's store and the tenant's ``copy_to`` stores.
- results and errors carry no host paths (record locations, uploads trees, data
  directories, spool and state directories are replaced by a placeholder).
Every refusal of a write, and every restore-plan, is audited with the tenant filled in.
"""

from __future__ import annotations

import dataclasses
import re
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Iterator

from dumpsafe.auth import Caller
from dumpsafe.errors import DumpsafeError, ForbiddenError, NotFoundError, RefusedError, UnknownNameError
from dumpsafe.models import ID_RE, BackupRecord, validate_backup_id
from dumpsafe.operations import scope_of

HIDDEN = "<host path>"
_CONFIGURED = re.compile(r" \(configured (?:stores|tenants): [^)]*\)")


def backup_not_found(backup_id: str) -> NotFoundError:
    """The one answer for a missing backup and for another tenant's backup."""
    return NotFoundError(f"backup {backup_id!r} not found (see 'dumpsafe backup list')")


# ---- tenant rules (pure functions of the config) -------------------------------------------
def restore_target_error(config: Any, record: BackupRecord, database: str | None) -> ForbiddenError | None:
    """Why a tenant may not restore ``record`` into ``database`` (None: it may). No connection."""
    t = config.tenants.get(record.tenant)
    target = database or record.database
    own = set(t.databases) if t is not None and t.databases is not None else {record.database}
    patterns = list(t.restore_names) if t is not None else []
    if target in own or any(fnmatchcase(target, p) for p in patterns):
        return None
    allowed = ", ".join(sorted(own) + patterns)
    return ForbiddenError(
        f"database {target!r} is not a restore target of tenant {record.tenant!r} (allowed: {allowed}; "
        f"an operator can add names with tenants.{record.tenant}.restore_names)"
    )


def tenant_stores(config: Any, tenant: str) -> list[str]:
    """The stores a tenant token may write to: the tenant's store and its copy_to stores."""
    t = config.tenants.get(tenant)
    if t is None:
        return []
    try:
        own = [config.store_for(tenant)]
    except DumpsafeError:
        own = []
    return own + [s for s in t.copy_to if s not in own]


def host_paths(config: Any) -> list[str]:
    """Paths on the dumpsafe host named by the config (longest first, for replacing)."""
    paths: set[Path] = {Path(config.state_dir)}
    if getattr(config, "spool_dir", None):
        paths.add(Path(config.spool_dir))
    for s in config.stores.values():
        if getattr(s, "path", None) is not None:
            paths.add(Path(s.path))
    for t in config.tenants.values():
        for p in (t.uploads, t.identity_file, t.password_file, t.pg_bin_dir):
            if p is not None:
                paths.add(Path(p))
    out: set[str] = set()
    for p in paths:
        out.add(str(p))
        try:
            out.add(str(p.resolve()))
        except OSError:
            pass
    return sorted((p for p in out if len(p) > 1), key=len, reverse=True)


def _collect(value: Any, found: set[str]) -> None:
    """Host paths a result names itself (preflight disk entries, uploads destinations)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("path", "uploads_to", "data_directory", "location") and isinstance(v, str) and v:
                found.add(v)
            else:
                _collect(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect(v, found)


def _scrub(value: Any, paths: list[str]) -> Any:
    if isinstance(value, str):
        for p in paths:
            if p in value:
                value = value.replace(p, HIDDEN)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, paths) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrub(v, paths) for v in value)
    return value


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

    def _store(self, tenant: str, store: str | None) -> None:
        """A tenant token writes only to its tenant's stores (403, whether the name exists or not)."""
        if self.caller.admin or store is None:
            return
        allowed = tenant_stores(self.service.config, tenant)
        if store not in allowed:
            raise ForbiddenError(
                f"store {store!r} is not a store of tenant {tenant!r} (its stores: {', '.join(allowed) or 'none'})"
            )

    def _restore_target(self, rec: BackupRecord, opts: dict[str, Any]) -> None:
        if self.caller.admin:
            return
        err = restore_target_error(self.service.config, rec, opts.get("database"))
        if err is not None:
            raise err
        if opts.get("owner"):
            raise ForbiddenError(
                f"token {self.caller.actor} may not give a database to another role (owner): roles are shared by "
                "every tenant of the server; use no_owner (the tenant's own user owns it) or an admin token"
            )
        if opts.get("with_globals") and not opts.get("dry_run"):
            raise ForbiddenError(
                f"token {self.caller.actor} may not create roles (with_globals): roles are shared by every tenant "
                "of the server; ask an operator with an admin token, or use dry_run to see them"
            )

    def _audit_tenant(self, fields: dict[str, Any]) -> str | None:
        if fields.get("tenant"):
            return fields["tenant"]
        m = ID_RE.fullmatch(fields.get("backup_id") or "")
        return m.group("tenant") if m else self.caller.tenant

    @contextmanager
    def _guard(self, action: str, *, always: bool = False, **fields: Any) -> Iterator[Any]:
        """Audit a refusal (missing scope, unseen tenant or backup, foreign target) of an action.
        The line names the tenant the request was about and the caller's own tenant."""
        fields["tenant"] = self._audit_tenant(fields)
        fields.setdefault("extra", {})["actor_tenant"] = self.caller.tenant
        with self.service.audit.record(action, self.caller.actor, only_failure=not always, **fields) as ev:
            try:
                yield ev
            except DumpsafeError:
                # a refusal, not a failed attempt: status and alerts of the tenant do not count it
                ev.extra["refused"] = True
                raise

    def refuse_unconfirmed(self, action: str, message: str, *, backup_id: str | None = None,
                           tenant: str | None = None) -> None:
        """Refuse an unconfirmed destructive call with an audit line; a missing scope, an unseen
        backup or tenant still answer first, so the refusal cannot be used as a probe."""
        with self._guard(action, backup_id=backup_id, tenant=tenant):
            self.caller.require(scope_of(action))
            if backup_id is not None:
                self._record(backup_id)
            else:
                self._tenant(tenant)
            raise RefusedError(message)

    # ---- what a tenant token is shown -----------------------------------------------------
    def _show(self, value: Any) -> Any:
        """A result as this caller may see it: no host paths for tenant tokens."""
        if self.caller.admin:
            return value
        if isinstance(value, list):
            return [self._show(v) for v in value]
        if isinstance(value, BackupRecord):
            return value.model_copy(update={"location": f"dumpsafe://{value.store}/{value.id}"})
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            found: set[str] = set()
            _collect(fields, found)
            paths = sorted(set(host_paths(self.service.config)) | found, key=len, reverse=True)
            return dataclasses.replace(value, **{k: _scrub(v, paths) for k, v in fields.items()})
        return value

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Error sentences as this caller may see them: no host paths for tenant tokens."""
        try:
            yield
        except DumpsafeError as e:
            if not self.caller.admin:
                # no host paths, and no list of the other tenants' or stores' names
                e.message = _CONFIGURED.sub("", _scrub(e.message, host_paths(self.service.config)))
                e.args = (e.message,)
            raise

    # ---- reads ----------------------------------------------------------------------------
    def list(self, tenant: str | None = None, database: str | None = None, store: str | None = None) -> list[BackupRecord]:
        self.caller.require(scope_of("list"))
        tenant = self._tenant(tenant)
        with self._errors():
            return self._show(self.service.list(tenant, database, store))

    def get(self, backup_id: str) -> BackupRecord:
        self.caller.require(scope_of("get"))
        with self._errors():
            return self._show(self._record(backup_id))

    # ---- writes ---------------------------------------------------------------------------
    # An operation's other parameters (operations.py declares them) pass through as ``params``.
    def create(self, tenant: str, *, store: str | None = None, **params: Any) -> list[BackupRecord]:
        with self._guard("create", tenant=tenant, store=store):
            self.caller.require(scope_of("create"))
            self._tenant(tenant)
            self._store(tenant, store)
        with self._errors():
            return self._show(self.service.create(tenant, store=store, actor=self.caller.actor, **params))

    def authorize_create(self, tenant: str, store: str | None = None) -> None:
        """The checks of create() alone (scope, tenant, store), audited on refusal: before a job is queued (issue 16)."""
        with self._guard("create", tenant=tenant, store=store):
            self.caller.require(scope_of("create"))
            self._tenant(tenant)
            self._store(tenant, store)

    def delete(self, backup_id: str) -> BackupRecord:
        with self._guard("delete", backup_id=backup_id):
            self.caller.require(scope_of("delete"))
            rec = self._record(backup_id)
        with self._errors():
            return self._show(self.service.delete(rec.id, store=rec.store, actor=self.caller.actor))

    def verify(self, backup_id: str, **params: Any) -> BackupRecord:
        with self._guard("verify", backup_id=backup_id):
            self.caller.require(scope_of("verify"))
            rec = self._record(backup_id)
        with self._errors():
            return self._show(self.service.verify(rec.id, actor=self.caller.actor, **params))

    def restore_plan(self, backup_id: str, **opts: Any) -> Any:
        """What a restore would do: the same target rules as restore(); every call is audited."""
        with self._guard("restore-plan", always=True, backup_id=backup_id, database=opts.get("database")) as ev:
            self.caller.require(scope_of("restore_plan"))
            rec = self._record(backup_id)
            ev.database = opts.get("database") or rec.database
            self._restore_target(rec, {**opts, "dry_run": True})
            with self._errors():
                return self._show(self.service.restore_plan(rec.id, **opts))

    def restore(self, backup_id: str, **opts: Any) -> Any:
        """Restore into the backup's own tenant (a database NAME; uploads only to the configured tree)."""
        with self._guard("restore", backup_id=backup_id, database=opts.get("database")):
            self.caller.require(scope_of("restore"))
            rec = self._record(backup_id)
            self._restore_target(rec, opts)
        with self._errors():
            return self._show(self.service.restore(rec.id, actor=self.caller.actor, **opts))

    def export(self, backup_id: str, out: Any, *, uploads: bool = False) -> Any:
        """A backup's plain archive (issue 19): all of its data, so the restore scope, and only the caller's tenant."""
        with self._guard("export", backup_id=backup_id):
            self.caller.require(scope_of("restore"))  # all of its data: what a restore would read
            rec = self._record(backup_id)
        with self._errors():
            return self.service.export(rec.id, out, uploads=uploads, actor=self.caller.actor)

    def prune(self, tenant: str | None = None, **params: Any) -> list[Any]:
        with self._guard("prune", tenant=tenant):
            self.caller.require(scope_of("prune"))
            tenant = self._tenant(tenant)
        with self._errors():
            return self._show(self.service.prune(tenant, actor=self.caller.actor, **params))

    def pin(self, backup_id: str) -> BackupRecord:
        return self._set_pinned("pin", backup_id)

    def unpin(self, backup_id: str) -> BackupRecord:
        return self._set_pinned("unpin", backup_id)

    def _set_pinned(self, action: str, backup_id: str) -> BackupRecord:
        with self._guard(action, backup_id=backup_id):
            self.caller.require(scope_of(action))
            rec = self._record(backup_id)
        with self._errors():
            return self._show(getattr(self.service, action)(rec.id, actor=self.caller.actor))

    def copy(self, backup_id: str, *, to: str, **params: Any) -> BackupRecord:
        """Copy to another configured store (a NAME); a tenant token only to its tenant's stores."""
        with self._guard("copy", backup_id=backup_id, store=to):
            self.caller.require(scope_of("copy"))
            rec = self._record(backup_id)
            self._store(rec.tenant, to)
        with self._errors():
            return self._show(self.service.copy(rec.id, to=to, actor=self.caller.actor, **params))

    def backup_history(self, backup_id: str) -> list[Any]:
        """A backup's history (issue 15): also after the backup was deleted, within the caller's tenant."""
        self.caller.require(scope_of("backup_history"))
        validate_backup_id(backup_id)
        if not self.caller.sees(backup_id.split(".", 1)[0]):
            raise backup_not_found(backup_id)
        with self._errors():
            events = self.service.backup_history(backup_id)
            if not events:
                self._record(backup_id)  # no history and no backup: not found
            return [_scrub(e.model_dump(mode="json"), host_paths(self.service.config)) if not self.caller.admin
                    else e.model_dump(mode="json") for e in events]

    def report(self, tenant: str | None = None, **params: Any) -> Any:
        """The evidence report (issue 15): a tenant token gets its own tenant's, audit excerpt included."""
        self.caller.require(scope_of("report"))
        if not self.caller.admin:
            tenant = self._tenant(tenant)
        with self._errors():
            rep = self.service.report(tenant, **params)
        if not self.caller.admin:
            paths = host_paths(self.service.config)
            rep = type(rep).model_validate(_scrub(rep.model_dump(), paths))
        return rep

    def status(self, tenant: str | None = None) -> list[Any]:
        self.caller.require(scope_of("status"))
        tenant = self._tenant(tenant)
        with self._errors():
            return self._show(self.service.status(tenant))
