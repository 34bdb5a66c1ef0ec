"""RemoteService: BackupService's methods over REST, for ``--server URL`` (token from $DUMPSAFE_TOKEN).

Every operation of the registry (dumpsafe.operations) is a method with the service's own
arguments, answered with the service's own result (the registry rebuilds it from the wire),
and the same error classes and messages: the CLI renders a remote answer exactly like a local
one. Server-side arguments (actor, progress) are accepted and ignored: the server knows the
caller from the token and shows no progress bar; paths on this machine are refused.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import httpx
from pydantic import BaseModel

from dumpsafe import errors
from dumpsafe.errors import DumpsafeError, UsageError
from dumpsafe.models import BackupRecord, validate_backup_id
from dumpsafe.operations import BY_NAME, Operation
from dumpsafe.service import BackupService

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
        """An operation of the registry as a method; a service feature without one: one clear sentence."""
        if name.startswith("_"):
            raise AttributeError(name)
        op = BY_NAME.get(name)
        if op is not None:
            return functools.partial(self._operation, op)

        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise UsageError(f"this command is not available with --server ({name} has no REST route); run it on the server host")

        if callable(getattr(BackupService, name, None)):
            return unavailable
        unavailable()

    # ---- the service surface: every operation of the registry -------------------------------
    def _send(self, op: Operation, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, BaseModel | None]:
        """Call ``op`` with the service method's own arguments; the wire answer and the parameters sent."""
        backup_id, values = _bind(op, args, kwargs)
        path = op.path.replace("{backup_id}", validate_backup_id(backup_id)) if op.by_backup else op.path
        params = op.params.model_construct(**values) if op.params else None
        kw: dict[str, Any] = {"timeout": LONG if op.long or op.wait else SHORT}
        if params is not None and op.method == "GET":
            kw["params"] = {k: str(v).lower() if isinstance(v, bool) else v
                            for k, v in params.model_dump().items() if v is not None}
        elif params is not None:
            kw["json"] = params.model_dump()
        return self._call(op.method, path, **kw), params

    def _operation(self, op: Operation, *args: Any, **kwargs: Any) -> Any:
        """Call ``op`` with the service method's own arguments; answer the service's own result."""
        got, params = self._send(op, args, kwargs)
        if op.queued and isinstance(got, dict):  # 202: a queue is configured; follow the job to its end (issue 16)
            got = [self._call("GET", f"/v1/backups/{bid}") for bid in self.wait_job(got["id"])]
        return op.result.load(got, params)

    def submit_create(self, tenant: str, **kwargs: Any) -> tuple[list[BackupRecord], dict[str, Any] | None]:
        """POST the backup: (its records, None) when the server ran it, ([], the job) when it queued it (--no-wait)."""
        op = BY_NAME["create"]
        got, params = self._send(op, (tenant,), kwargs)
        if op.queued and isinstance(got, dict):
            return [], got
        return op.result.load(got, params), None

    def wait_job(self, job_id: int, poll_s: float = 0.5) -> list[str]:
        """Follow a queued job until it ends; its backup IDs, or its error as a BackupFailed."""
        while True:
            job = self._call("GET", f"/v1/jobs/{int(job_id)}")
            if job["status"] == "succeeded":
                return list(job["backup_ids"])
            if job["status"] in ("failed", "cancelled", "aborted"):
                raise errors.BackupFailed(f"job {job_id} {job['status']}: {job.get('error') or 'no detail'}")
            time.sleep(poll_s)


# the service's own arguments that stay on this side: ignored (the server knows the caller and
# shows no progress; it finds a backup's store itself), or refused when given
IGNORED = frozenset({"actor", "progress", "store"})
REFUSED = {
    "identity": "--identity is a file on this machine and is not sent with --server; "
                "the server decrypts with the tenant's identity_file or its $DUMPSAFE_AGE_IDENTITY",
    "uploads_to": "--uploads-to names a path on the server and is not available with --server",
    "now": "a simulated 'now' is not available with --server",
    "until": "a simulated 'now' is not available with --server",
}


def _bind(op: Operation, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The backup ID and the parameter values of a call written as the service method's call."""
    names = (("backup_id",) if op.by_backup else ()) + op.positional
    if len(args) > len(names):
        raise TypeError(f"{op.name}() takes at most {len(names)} positional arguments")
    values = dict(zip(names, args))
    fields = op.fields()
    for k, v in kwargs.items():
        if k in values:
            raise TypeError(f"{op.name}() got multiple values for {k!r}")
        if k in fields or k == "backup_id":
            values[k] = v
        elif k in REFUSED:
            if v is not None:
                raise UsageError(REFUSED[k])
        elif k not in IGNORED:
            raise TypeError(f"{op.name}() got an unexpected argument {k!r}")
    backup_id = values.pop("backup_id", None)
    if op.by_backup and backup_id is None:
        raise TypeError(f"{op.name}() needs a backup ID")
    return backup_id, {k: v for k, v in values.items() if v is not None or fields[k].default is None}

