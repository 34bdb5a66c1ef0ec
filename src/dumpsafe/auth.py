"""API tokens: who a REST or MCP caller is, which tenant it may touch, what it may do.

A token reads ``ds_<id>_<secret>``. The id is public (it is the actor in the audit log
and the handle for ``token revoke``); the secret is 32 random bytes shown once at
creation. ``state_dir/tokens.json`` keeps only sha256(id:secret): the secret has full
entropy, so a fast hash is enough, and it is compared with ``hmac.compare_digest``.

Scopes (deny by default: a token has only the scopes it was created with)
    backups:read     list, get, status
    backups:write    every write action, as DESIGN.md fixes it: it implies the three below
    backups:create   create, verify (and drills), pin, unpin, copy: nothing is destroyed
    backups:restore  restore (overwrites a live database)
    backups:delete   delete and prune (destroy backups)
So a CI token that makes backups but can never overwrite or destroy anything is
``--scope backups:read --scope backups:create``.
A tenant token sees only its tenant; an admin token sees every tenant (and the audit log).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel

from dumpsafe.errors import AuthError, DumpsafeError, ForbiddenError, NotFoundError, UsageError
from dumpsafe.fsutil import private_dir
from dumpsafe.models import rfc3339, utcnow

READ, WRITE = "backups:read", "backups:write"
CREATE, RESTORE, DELETE = "backups:create", "backups:restore", "backups:delete"
SCOPES = (READ, WRITE, CREATE, RESTORE, DELETE)
IMPLIES = {WRITE: frozenset({CREATE, RESTORE, DELETE})}
TOKENS_FILE = "tokens.json"
log = logging.getLogger(__name__)
_TOKEN_RE = re.compile(r"^ds_(?P<id>[a-z0-9]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the actor name for the audit log and what it may touch."""

    actor: str
    tenant: str | None  # None: admin, every tenant
    scopes: frozenset[str]

    @property
    def admin(self) -> bool:
        return self.tenant is None

    def has(self, scope: str) -> bool:
        return scope in self.scopes or any(scope in IMPLIES.get(s, ()) for s in self.scopes)

    def require(self, scope: str) -> None:
        if not self.has(scope):
            wider = f" or {WRITE}" if scope in IMPLIES[WRITE] else ""
            raise ForbiddenError(f"token {self.actor} lacks the {scope} scope (create a token with --scope {scope}{wider})")

    def require_admin(self) -> None:
        if not self.admin:
            raise ForbiddenError(f"token {self.actor} is limited to tenant {self.tenant!r}; this needs an admin token")

    def sees(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant


class BadToken(AuthError):
    """A token that is malformed or whose secret is wrong: a guess, counted by the login backoff."""


LOCAL = Caller(actor="local", tenant=None, scopes=frozenset(SCOPES))


class TokenInfo(BaseModel):
    """One stored token, as kept in tokens.json (the hash, never the secret)."""

    id: str
    name: str | None = None
    tenant: str | None = None
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None  # revoked tokens stay listed, so audit lines stay attributable
    sha256: str

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tenant": self.tenant,
            "admin": self.tenant is None,
            "scopes": self.scopes,
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at) if self.expires_at else None,
            "revoked": self.revoked_at is not None,
            "revoked_at": rfc3339(self.revoked_at) if self.revoked_at else None,
        }


def _digest(token_id: str, secret: str) -> str:
    return hashlib.sha256(f"{token_id}:{secret}".encode()).hexdigest()


class TokenStore:
    """tokens.json in state_dir (0600), rewritten atomically under a lock."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / TOKENS_FILE

    def _read(self) -> list[TokenInfo]:
        try:
            data = json.loads(self.path.read_bytes())
            return [TokenInfo.model_validate(t) for t in data.get("tokens", [])]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, AttributeError) as e:  # ValidationError is a ValueError
            raise DumpsafeError(f"{self.path}: token file is unreadable ({type(e).__name__}); fix or remove it") from None

    @contextmanager
    def _locked(self) -> Iterator[list[TokenInfo]]:
        private_dir(self.state_dir)
        lock = os.open(self.state_dir / (TOKENS_FILE + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tokens = self._read()
            yield tokens
            body = json.dumps({"tokens": [t.model_dump(mode="json") for t in tokens]}, indent=2).encode()
            tmp = self.path.with_name(f".{TOKENS_FILE}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        finally:
            os.close(lock)

    def create(
        self,
        *,
        tenant: str | None,
        scopes: list[str],
        expires_in: timedelta | None = None,
        name: str | None = None,
    ) -> tuple[TokenInfo, str]:
        """Store a new token; return it and the full token string (the only time it exists in clear)."""
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown:
            raise UsageError(f"unknown scope {unknown[0]!r} (scopes: {', '.join(SCOPES)})")
        if not scopes:
            raise UsageError(f"a token needs at least one --scope ({', '.join(SCOPES)})")
        token_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
        secret = secrets.token_urlsafe(32)
        now = utcnow()
        info = TokenInfo(
            id=token_id,
            name=name,
            tenant=tenant,
            scopes=sorted(set(scopes), key=SCOPES.index),
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
            sha256=_digest(token_id, secret),
        )
        with self._locked() as tokens:
            tokens.append(info)
        return info, f"ds_{token_id}_{secret}"

    def list(self) -> list[TokenInfo]:
        return self._read()

    def revoke(self, token_id: str) -> TokenInfo:
        """Mark a token revoked (at once: every request reads the file); it stays listed."""
        with self._locked() as tokens:
            for i, t in enumerate(tokens):
                if t.id == token_id:
                    if t.revoked_at is None:
                        tokens[i] = t.model_copy(update={"revoked_at": utcnow()})
                    return tokens[i]
        raise NotFoundError(f"no token with id {token_id!r} (see 'dumpsafe token list')")

    def authenticate(self, presented: str | None) -> Caller:
        """The caller a bearer token stands for, or AuthError (no, bad, revoked or expired token)."""
        if not presented:
            raise AuthError("missing bearer token (send 'Authorization: Bearer <token>')")
        m = _TOKEN_RE.fullmatch(presented)
        if not m:
            raise BadToken("invalid token")
        token_id, secret = m.group("id"), m.group("secret")
        try:
            tokens = self._read()
        except DumpsafeError as e:
            log.error("%s", e.message)  # the path is for the operator, not for the caller
            raise DumpsafeError("the server cannot read its token file (see the server log)") from None
        info = next((t for t in tokens if t.id == token_id), None)
        # compare even when the id is unknown, so timing does not tell ids apart
        expected = info.sha256 if info else "0" * 64
        if not hmac.compare_digest(_digest(token_id, secret), expected) or info is None:
            raise BadToken("invalid token")
        if info.revoked_at is not None:
            raise AuthError(f"token {token_id} was revoked at {rfc3339(info.revoked_at)} (create a new one)")
        if info.expires_at is not None and info.expires_at <= utcnow():
            raise AuthError(f"token {token_id} expired at {rfc3339(info.expires_at)} (create a new one)")
        return Caller(actor=token_id, tenant=info.tenant, scopes=frozenset(info.scopes))
