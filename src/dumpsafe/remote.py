"""RemoteService: BackupService's methods over REST, for ``--server URL`` (token from $DUMPSAFE_TOKEN).

Same signatures, same models, same error classes and messages: the CLI renders a remote
answer exactly like a local one. Server-side arguments (actor, progress) are accepted and
ignored: the server knows the caller from the token and shows no progress bar.
"""

from __future__ import annotations

from typing import Any

import httpx

from dumpsafe import errors
from dumpsafe.errors import DumpsafeError, UsageError
from dumpsafe.models import BackupRecord, validate_backup_id
from dumpsafe.progress import NULL, Progress

# long work (a dump, a restore) answers when it is done: no read timeout
LONG = httpx.Timeout(30.0, read=None)
SHORT = httpx.Timeout(60.0)


def _error_classes() -> dict[str, type[DumpsafeError]]:
    """kind -> class; the most general class of a kind wins (ObjectMissing shares not_found)."""
    out: dict[str, type[DumpsafeError]] = {}
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, DumpsafeError):
            if cls.kind not in out or issubclass(out[cls.kind], cls):
                out[cls.kind] = cls
    return out


_BY_KIND = _error_classes()
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
        cls = _BY_KIND.get(kind) or _BY_STATUS.get(r.status_code, DumpsafeError)
        raise cls(detail)

    def close(self) -> None:
        self._http.close()

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
        body = {"tenant": tenant, "databases": databases, "store": store, "uploads": uploads, "label": label, "pin": pin}
        return [BackupRecord.model_validate(r) for r in self._call("POST", "/v1/backups", json=body, timeout=LONG)]

    def list(self, tenant: str | None = None, database: str | None = None, store: str | None = None) -> list[BackupRecord]:
        params = {k: v for k, v in (("tenant", tenant), ("database", database), ("store", store)) if v is not None}
        return [BackupRecord.model_validate(r) for r in self._call("GET", "/v1/backups", params=params)]

    def get(self, backup_id: str, store: str | None = None) -> BackupRecord:
        return BackupRecord.model_validate(self._call("GET", f"/v1/backups/{validate_backup_id(backup_id)}"))

    def delete(self, backup_id: str, *, store: str | None = None, actor: str = "local") -> BackupRecord:
        return BackupRecord.model_validate(self._call("DELETE", f"/v1/backups/{validate_backup_id(backup_id)}", timeout=LONG))

    # --- restore & verify, prune & status: added as the service offers them ---
