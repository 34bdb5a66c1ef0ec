"""RemoteService: BackupService's methods over REST, for ``--server URL`` (token from $DUMPSAFE_TOKEN).

Same signatures, same models, same error classes and messages: the CLI renders a remote
answer exactly like a local one. Server-side arguments (actor, progress) are accepted and
ignored: the server knows the caller from the token and shows no progress bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter

from dumpsafe import errors
from dumpsafe.errors import DumpsafeError, UsageError
from dumpsafe.models import BackupRecord, validate_backup_id
from dumpsafe.progress import NULL, Progress

# long work (a dump, a restore) answers when it is done: no read timeout
LONG = httpx.Timeout(30.0, read=None)
SHORT = httpx.Timeout(60.0)


_CLASSES = {n: c for n, c in vars(errors).items() if isinstance(c, type) and issubclass(c, DumpsafeError)}
_BY_KIND = {c.kind: c for c in _CLASSES.values() if c.__bases__[0] in (DumpsafeError, Exception) or c is DumpsafeError}
_BY_STATUS = {401: errors.AuthError, 403: errors.ForbiddenError, 404: errors.NotFoundError, 400: UsageError}


class RemoteService:
    def __init__(self, server: str, token: str | None, *, transport: httpx.BaseTransport | None = None):
        if not token:
            raise UsageError("--server needs a token: set DUMPSAFE_TOKEN (see 'dumpsafe token create')")
        if not server.startswith(("http://", "https://")):
            raise UsageError(f"--server {server!r} is not an http:// or https:// URL")
        self.server = server.rstrip("/")
        self._http = httpx.Client(
            base_url=self.server, headers={"Authorization": f"Bearer {token}"}, timeout=SHORT, transport=transport
        )

    # ---- plumbing -------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, timeout: httpx.Timeout = SHORT, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, timeout=timeout, **kw)
        except httpx.HTTPError as e:
            raise DumpsafeError(f"cannot reach dumpsafe server {self.server} ({type(e).__name__}); is 'dumpsafe serve' running?") from None
        if r.is_success:
            return r.json()
        try:
            body = r.json()
            kind, detail = body["error"], body["detail"]
        except (ValueError, KeyError, TypeError):
            kind, detail = None, f"server {self.server} answered HTTP {r.status_code}"
        cls = (
            _CLASSES.get(r.headers.get("X-Dumpsafe-Error", ""))
            or _BY_KIND.get(kind)
            or _BY_STATUS.get(r.status_code, DumpsafeError)
        )
        raise cls(detail)

    def close(self) -> None:
        self._http.close()

    def __getattr__(self, name: str) -> Any:
        """A service feature without a REST route: one clear sentence, not a traceback."""
        if name.startswith("_"):
            raise AttributeError(name)
        from dumpsafe.service import BackupService

        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise UsageError(f"this command is not available with --server ({name} has no REST route); run it on the server host")

        if callable(getattr(BackupService, name, None)):
            return unavailable
        unavailable()

    # ---- the service surface --------------------------------------------------------------
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
        records, job = self.submit_create(tenant, databases=databases, store=store, uploads=uploads, label=label, pin=pin)
        if job is not None:  # 202: a queue is configured; follow the job to its end (issue 16)
            records = [BackupRecord.model_validate(self._call("GET", f"/v1/backups/{bid}")) for bid in self.wait_job(job["id"])]
        return records

    def submit_create(self, tenant: str, *, databases: list[str] | None = None, store: str | None = None,
                      uploads: bool = True, label: str | None = None,
                      pin: bool = False) -> tuple[list[BackupRecord], dict[str, Any] | None]:
        """POST the backup: (its records, None) when the server ran it, ([], the job) when it queued it."""
        body = {"tenant": tenant, "databases": databases, "store": store, "uploads": uploads, "label": label, "pin": pin}
        got = self._call("POST", "/v1/backups", json=body, timeout=LONG)
        if isinstance(got, dict):
            return [], got
        return [BackupRecord.model_validate(r) for r in got], None

    def wait_job(self, job_id: int, poll_s: float = 0.5) -> list[str]:
        """Follow a queued job until it ends; its backup IDs, or its error as a BackupFailed."""
        import time

        while True:
            job = self._call("GET", f"/v1/jobs/{int(job_id)}")
            if job["status"] == "succeeded":
                return list(job["backup_ids"])
            if job["status"] in ("failed", "cancelled", "aborted"):
                raise errors.BackupFailed(f"job {job_id} {job['status']}: {job.get('error') or 'no detail'}")
            time.sleep(poll_s)

    def list(self, tenant: str | None = None, database: str | None = None, store: str | None = None) -> list[BackupRecord]:
        params = {k: v for k, v in (("tenant", tenant), ("database", database), ("store", store)) if v is not None}
        return [BackupRecord.model_validate(r) for r in self._call("GET", "/v1/backups", params=params)]

    def get(self, backup_id: str, store: str | None = None) -> BackupRecord:
        return BackupRecord.model_validate(self._call("GET", f"/v1/backups/{validate_backup_id(backup_id)}"))

    def delete(self, backup_id: str, *, store: str | None = None, actor: str = "local") -> BackupRecord:
        return BackupRecord.model_validate(self._call("DELETE", f"/v1/backups/{validate_backup_id(backup_id)}", timeout=LONG))

    def verify(self, backup_id: str, *, drill: bool = False, identity: Path | None = None, actor: str = "local",
               progress: Progress = NULL) -> BackupRecord:
        _no_client_identity(identity)
        path = f"/v1/backups/{validate_backup_id(backup_id)}/verify"
        return BackupRecord.model_validate(self._call("POST", path, json={"drill": drill}, timeout=LONG))

    def restore_plan(self, backup_id: str, *, database: str | None = None, mode: str | None = None,
                     uploads: bool = True, uploads_to: Path | None = None, keep_old: bool = False,
                     with_globals: bool = False) -> Any:
        from dumpsafe.restore import RestorePlan

        _no_server_paths(uploads_to)
        params = {k: v for k, v in (("database", database), ("mode", mode)) if v is not None}
        params |= {"uploads": str(uploads).lower(), "keep_old": str(keep_old).lower(), "with_globals": str(with_globals).lower()}
        data = self._call("GET", f"/v1/backups/{validate_backup_id(backup_id)}/restore-plan", params=params)
        return _load(RestorePlan, data)

    def restore(self, backup_id: str, *, database: str | None = None, mode: str | None = None, uploads: bool = True,
                uploads_to: Path | None = None, keep_old: bool = False, dry_run: bool = False,
                identity: Path | None = None, with_globals: bool = False, actor: str = "local",
                progress: Progress = NULL) -> Any:
        from dumpsafe.restore import Preflight, RestoreResult

        _no_server_paths(uploads_to)
        _no_client_identity(identity)
        body = {"database": database, "mode": mode, "uploads": uploads, "keep_old": keep_old, "dry_run": dry_run,
                "with_globals": with_globals}
        data = self._call("POST", f"/v1/backups/{validate_backup_id(backup_id)}/restore", json=body, timeout=LONG)
        return _load(Preflight if dry_run else RestoreResult, data)

    def prune(self, tenant: str | None = None, *, dry_run: bool = False, actor: str = "local", now: Any = None) -> list[Any]:
        from dumpsafe.retention import Decision

        if now is not None:
            raise UsageError("a simulated 'now' is not available with --server")
        data = self._call("POST", "/v1/prune", json={"tenant": tenant, "dry_run": dry_run}, timeout=LONG)
        return [_load(Decision, d) for d in data]

    def status(self, tenant: str | None = None, *, now: Any = None) -> list[Any]:
        from dumpsafe.status import DatabaseStatus

        if now is not None:
            raise UsageError("a simulated 'now' is not available with --server")
        data = self._call("GET", "/v1/status", params={"tenant": tenant} if tenant else {})
        return [_load(DatabaseStatus, row) for row in data]


    def pin(self, backup_id: str, *, actor: str = "local") -> BackupRecord:
        return BackupRecord.model_validate(self._call("POST", f"/v1/backups/{validate_backup_id(backup_id)}/pin"))

    def unpin(self, backup_id: str, *, actor: str = "local") -> BackupRecord:
        return BackupRecord.model_validate(self._call("POST", f"/v1/backups/{validate_backup_id(backup_id)}/unpin"))

    def copy(self, backup_id: str, *, to: str, store: str | None = None, actor: str = "local",
             progress: Progress = NULL) -> BackupRecord:
        path = f"/v1/backups/{validate_backup_id(backup_id)}/copy"
        return BackupRecord.model_validate(self._call("POST", path, json={"to": to}, timeout=LONG))

    # --- evidence (issue 15) ---
    def report(self, tenant: str | None = None, *, since: str | None = "90d", until: Any = None) -> Any:
        from dumpsafe.report_model import Report

        if until is not None:
            raise UsageError("a simulated 'now' is not available with --server")
        params = {"since": since or "90d", **({"tenant": tenant} if tenant else {})}
        return Report.model_validate(self._call("GET", "/v1/report", params=params, timeout=LONG))

    def backup_history(self, backup_id: str) -> list[Any]:
        from dumpsafe.history import HistoryEvent

        data = self._call("GET", f"/v1/backups/{validate_backup_id(backup_id)}/history")
        return [HistoryEvent.model_validate(e) for e in data]


def _load(cls: type, data: Any) -> Any:
    """A service result dataclass rebuilt from its JSON (unknown keys such as derived ones ignored)."""
    return TypeAdapter(cls).validate_python(data)


def _no_client_identity(identity: Path | None) -> None:
    if identity is not None:
        raise UsageError(
            "--identity is a file on this machine and is not sent with --server; "
            "the server decrypts with the tenant's identity_file or its $DUMPSAFE_AGE_IDENTITY"
        )


def _no_server_paths(uploads_to: Path | None) -> None:
    if uploads_to is not None:
        raise UsageError("--uploads-to names a path on the server and is not available with --server")
