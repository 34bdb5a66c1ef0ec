"""Request and response bodies of the REST API (backup records are models.BackupRecord)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"


class ErrorBody(BaseModel):
    """Every error: the error kind and one sentence saying what went wrong and what to do."""

    error: str = Field(examples=["not_found"])
    detail: str = Field(examples=["backup 'acme.app.20260101T023000Z.k3j9x2ab' not found"])


class CreateBackup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(pattern=NAME, description="Tenant name from the server's config.")
    databases: list[str] | None = Field(default=None, description="Only these databases (default: the tenant's).")
    store: str | None = Field(default=None, pattern=NAME, description="Store NAME from the config (never a path).")
    uploads: bool = Field(default=True, description="Include the tenant's uploads tree.")
    label: str | None = Field(default=None, max_length=200)
    pin: bool = False


class AuditPage(BaseModel):
    entries: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Malformed request or ID"),
        (401, "No token, a bad token or an expired token"),
        (403, "The token lacks the needed scope"),
        (404, "No such backup or tenant (or not visible to this token)"),
    )
}
