"""REST-only bodies (the operations' parameters and results are declared in dumpsafe.operations)
and the errors each route documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every error: the error kind and one sentence saying what went wrong and what to do."""

    error: str = Field(examples=["not_found"])
    detail: str = Field(examples=["backup 'acme.app.20260101T023000Z.k3j7x2ab' not found"])


class AuditPage(BaseModel):
    entries: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


_TEXT = {
    400: "Malformed request or ID",
    401: "No token, a bad token or an expired or revoked token",
    403: "The token lacks the needed scope, or the target is not its tenant's",
    404: "No such backup or tenant (or not visible to this token)",
    409: "Conflicts with the current state (target exists, unconfirmed, lock held)",
    413: "The request body is over 1 MiB",
    422: "Integrity check failed: stored bytes do not match the record",
    429: "Too many failed authentications from this address (see Retry-After)",
    502: "A database server or a store failed (the backup or restore did not happen)",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses (every route adds 401, 413 and 429)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted({400, 401, 413, 429, *codes}):
        spec: dict[str, Any] = {"model": ErrorBody, "description": _TEXT[code]}
        if code == 429:
            spec["headers"] = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
        out[code] = spec
    return out

