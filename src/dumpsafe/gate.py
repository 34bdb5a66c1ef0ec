"""The door of ``dumpsafe serve``: bearer-token check, per-address backoff, audit of refusals.

REST, MCP over HTTP and /metrics all authenticate through one ``Gate``:
- a wrong or malformed token (a guess) counts against the client address; after ``free``
  guesses within ``window`` seconds the address is refused with 429 and ``Retry-After``
  for 1 s, then 2 s, 4 s, ... up to ``max_delay``. While an address is refused its tokens
  are not even checked, so guessing cannot go on. A missing token, an expired or a revoked
  one is not a guess (it is still audited).
- every refusal (401 and 429) is audited with the client address, at most one line per
  address and kind every ``audit_every`` seconds; the next line says how many were folded.
The client address is the connection's peer; behind a reverse proxy run uvicorn with
``--forwarded-allow-ips`` (see the README) so it is the real client's.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from dumpsafe.auth import BadToken, Caller, TokenStore
from dumpsafe.errors import AuthError, RateLimited

MAX_ADDRESSES = 10_000
_TOKEN_ID = re.compile(r"ds_([a-z0-9]{12})_")


@dataclass
class _Address:
    guesses: deque = field(default_factory=deque)  # monotonic times of recent guesses
    blocked_until: float = 0.0
    audited: dict[str, float] = field(default_factory=dict)  # kind -> time of the last audit line
    folded: dict[str, int] = field(default_factory=dict)  # kind -> refusals not written since


class Gate:
    def __init__(
        self,
        tokens: TokenStore,
        audit: Any,
        *,
        free: int = 20,
        window: float = 600.0,
        max_delay: float = 300.0,
        audit_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.tokens, self.audit = tokens, audit
        self.free, self.window, self.max_delay, self.audit_every = free, window, max_delay, audit_every
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, _Address] = OrderedDict()

    def _address(self, client: str) -> _Address:
        a = self._seen.get(client)
        if a is None:
            a = self._seen[client] = _Address()
            while len(self._seen) > MAX_ADDRESSES:
                self._seen.popitem(last=False)
        self._seen.move_to_end(client)
        return a

    def check(self, presented: str | None, client: str) -> Caller:
        """The caller behind ``presented``, or AuthError (401) / RateLimited (429)."""
        now = self.clock()
        with self._lock:
            a = self._address(client)
            wait = a.blocked_until - now
        if wait > 0:
            err = RateLimited(
                f"too many failed authentications from {client}; retry in {math.ceil(wait)} s",
                retry_after=math.ceil(wait),
            )
            self._audit(a, "rate_limited", client, presented, err.message, now)
            raise err
        try:
            return self.tokens.authenticate(presented)
        except AuthError as e:
            if isinstance(e, BadToken):
                with self._lock:
                    a.guesses.append(now)
                    while a.guesses and a.guesses[0] <= now - self.window:
                        a.guesses.popleft()
                    over = len(a.guesses) - self.free
                    if over >= 0:
                        a.blocked_until = now + min(2.0**over, self.max_delay)
            self._audit(a, "unauthenticated", client, presented, e.message, now)
            raise

    def _audit(self, a: _Address, kind: str, client: str, presented: str | None, error: str, now: float) -> None:
        with self._lock:
            last = a.audited.get(kind)
            if last is not None and now - last < self.audit_every:
                a.folded[kind] = a.folded.get(kind, 0) + 1
                return
            a.audited[kind] = now
            folded = a.folded.pop(kind, 0)
        token_id = _token_id(presented)
        self.audit.denied("authenticate", "anonymous", error=error, client=client, reason=kind,
                          token_id=token_id, folded=folded, tenant=self._tenant_of(token_id))

    def _tenant_of(self, token_id: str | None) -> str | None:
        """The tenant of a presented token id that exists (ids are public), for the audit line."""
        if token_id is None:
            return None
        try:
            return next((t.tenant for t in self.tokens.list() if t.id == token_id), None)
        except Exception:  # noqa: BLE001 - an unreadable token file is reported by authenticate()
            return None


def _token_id(presented: str | None) -> str | None:
    """The public id part of a presented token (never the secret)."""
    m = _TOKEN_ID.match(presented or "")
    return m.group(1) if m else None


def client_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
