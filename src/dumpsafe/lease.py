"""Leases in a shared store: two hosts without a queue never run the same tenant's work at once.

A lease is a numbered series of small objects ``leases/<name>/<n>.json``, each written with
the store's conditional create (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``, a local
hard link that fails on an existing name), so for every ``n`` exactly one writer wins:

- acquire: read the highest entry; if it is unexpired and another holder's, refuse; else
  create ``n + 1``. Two hosts that both saw an expired lease race for the same ``n + 1``.
- renew (every ttl/3 while held): create ``n + 1`` again; losing that race means the lease
  was taken over after it expired (this host stalled), and ``lost`` is set.
- release: create ``n + 1`` already expired. The top entry is never deleted (entries below
  it are, by the writer of the top), so the series only grows and the race stays exact.
Expiry is read with the reader's clock against the writer's ``expires_at``: keep clocks
within a small fraction of the ttl (NTP). A lease whose writer was a process of this host
that is gone (kill -9) is free at once, as with pending markers.

``claim_once(store, name, fire)`` is the once-per-tick half: the first host to create
``claims/<name>/<fire>.json`` runs that scheduled fire; the others skip it.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

from dumpsafe.errors import ConflictError, DumpsafeError, ObjectMissing
from dumpsafe.models import rfc3339, utcnow
from dumpsafe.pending import pid_alive, process_start, this_process
from dumpsafe.storage.base import Store

log = logging.getLogger(__name__)
LEASES = "leases/"
CLAIMS = "claims/"
KEEP_CLAIMS = 10


def _holder_dead(proc: Any) -> bool:
    """Whether a lease's writer is a process of this host (and pid namespace) that is gone;
    another host's writer is judged by the lease's expiry alone."""
    if not isinstance(proc, dict):
        return False
    me = this_process()
    if proc.get("host") != me["host"] or proc.get("pid_ns") != me["pid_ns"]:
        return False
    if proc.get("boot_id") and me["boot_id"] and proc["boot_id"] != me["boot_id"]:
        return True
    pid = proc.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return True
    return proc.get("pid_start") is not None and process_start(pid) not in (None, proc["pid_start"])


class Lease:
    def __init__(self, store: Store, name: str, *, ttl_s: float = 60.0, holder: str | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.store, self.name, self.ttl_s, self.clock = store, name, ttl_s, clock
        self.holder = holder or f"{socket.gethostname()}:{threading.get_native_id()}"
        self.token = secrets.token_hex(8)
        self.prefix = f"{LEASES}{name}/"
        self.n: int | None = None
        self.lost = False
        self.current: dict[str, Any] | None = None  # the entry that refused us, for the message

    def _key(self, n: int) -> str:
        return f"{self.prefix}{n:012d}.json"

    def _entries(self) -> list[int]:
        out = []
        for o in self.store.list(self.prefix):
            stem = o.key[len(self.prefix):].removesuffix(".json")
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def _read(self, n: int) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.get_bytes(self._key(n)))
        except (ObjectMissing, ValueError):
            return None  # gone or unreadable: free (a store that cannot be read raises)

    def _expired(self, entry: dict[str, Any]) -> bool:
        if _holder_dead(entry.get("process")):
            return True  # its process on this host is gone (kill -9): the next command need not wait
        try:
            return datetime.fromisoformat(str(entry["expires_at"]).replace("Z", "+00:00")) <= self.clock()
        except (KeyError, ValueError):
            return True  # unreadable: treat as free rather than locking a tenant out forever

    def _create(self, n: int, released: bool = False) -> bool:
        body = {"holder": self.holder, "token": self.token, "process": this_process(),
                "expires_at": rfc3339(self.clock() + timedelta(seconds=0 if released else self.ttl_s))}
        if not self.store.create_if_absent(self._key(n), json.dumps(body).encode()):
            got = self._read(n)  # our own earlier attempt whose answer was lost counts as ours
            if not got or got.get("token") != self.token:
                return False
        previous, self.n = self.n, n
        if previous is not None:
            self._delete(previous)  # superseded by our own renewal
        return True

    def _delete(self, n: int) -> None:
        try:
            self.store.delete(self._key(n))
        except DumpsafeError:
            pass

    def acquire(self) -> bool:
        entries = self._entries()
        top = entries[-1] if entries else 0
        if entries:
            cur = self._read(top)
            if cur is not None and cur.get("token") != self.token and not self._expired(cur):
                self.current = cur
                return False
        if not self._create(top + 1):
            return False
        for n in entries:  # superseded (released, expired, or a dead holder's): only the top counts
            self._delete(n)
        return True

    def renew(self) -> bool:
        if self.n is None or self.lost:
            return False
        if not self._create(self.n + 1):
            self.lost = True
            log.error("lease %s was taken over after it expired; this host stalled past its ttl", self.name)
        return not self.lost

    def release(self) -> None:
        """Write a released entry on top (the series only grows: deleting the top would let a
        host that listed before and one that lists after both think they hold it)."""
        if self.n is not None and not self.lost:
            self._create(self.n + 1, released=True)
        self.n = None


@contextmanager
def held(lease: Lease) -> Iterator[bool]:
    """Acquire (yield False when another holder has it), renew every ttl/3, release at the end."""
    if not lease.acquire():
        yield False
        return
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(lease.ttl_s / 3):
            try:
                if not lease.renew():
                    return
            except DumpsafeError as e:
                log.warning("renewing lease %s failed: %s", lease.name, e.message)

    t = threading.Thread(target=keep, name=f"lease-{lease.name}", daemon=True)
    t.start()
    try:
        yield True
    finally:
        stop.set()
        t.join()
        try:
            lease.release()
        except DumpsafeError as e:
            log.warning("releasing lease %s failed (it expires by itself): %s", lease.name, e.message)


@contextmanager
def exclusive(store: Store, name: str, what: str, **kw: Any) -> Iterator[Lease]:
    """Hold the lease or refuse with a ConflictError naming the holder."""
    lease = Lease(store, name, **kw)
    with held(lease) as got:
        if not got:
            cur = lease.current or {}
            raise ConflictError(f"{what} is running on {cur.get('holder', 'another host')} (lease until "
                                f"{cur.get('expires_at', '?')}); try again later")
        yield lease


def claim_once(store: Store, name: str, fire: datetime) -> bool:
    """True for the one host that claims this fire of ``name``; older claims are trimmed."""
    prefix = f"{CLAIMS}{name}/"
    won = store.create_if_absent(f"{prefix}{int(fire.timestamp()):012d}.json",
                                 json.dumps({"holder": socket.gethostname(), "at": rfc3339(utcnow())}).encode())
    if won:
        keys = sorted(o.key for o in store.list(prefix))
        for key in keys[:-KEEP_CLAIMS]:
            try:
                store.delete(key)
            except DumpsafeError:
                pass
    return won
