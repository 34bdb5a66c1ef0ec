"""Bounded, strict input types shared by the REST schemas and the MCP tools.

Every string a caller sends has a length limit, names are full-matched, and flags accept
only JSON booleans (``true``/``false``: never 0, 1, "yes", "on" or "t"), so REST and MCP
accept exactly the same inputs. Query-string flags accept only ``true`` and ``false``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, Strict

NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"  # tenants and stores (pydantic's regex: $ is the very end)
MAX_ID = 300  # a backup ID: tenant (63) + escaped database (200) + time and random
MAX_LABEL = 200
MAX_DATABASES = 100


def _db_name(v: str) -> str:
    if len(v.encode("utf-8")) > 63:
        raise ValueError("a database name is at most 63 bytes (PostgreSQL's limit)")
    if "\x00" in v:
        raise ValueError("a database name cannot contain a NUL byte")
    return v


def _query_flag(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    raise ValueError("expected true or false")


Flag = Annotated[bool, Strict()]
QueryFlag = Annotated[bool, BeforeValidator(_query_flag)]
Name = Annotated[str, Field(pattern=NAME, max_length=63)]
DbName = Annotated[str, Field(min_length=1, max_length=63), AfterValidator(_db_name)]
DbNames = Annotated[list[DbName], Field(min_length=1, max_length=MAX_DATABASES)]
Label = Annotated[str, Field(max_length=MAX_LABEL)]
BackupIdText = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
