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
