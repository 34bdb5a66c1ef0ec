"""Pending markers: who is writing which backup, so a sweep never touches a live writer.

Before its first object a create (or a copy, or a delete) writes ``pending/<id>.json`` in
the store: host, boot id, pid and that process's start time, when it started, and a
heartbeat rewritten every ``HEARTBEAT_S``. It is removed after the record (the commit
marker) and the audit line. A marker is **dead** when

- it names this host (and pid namespace): its pid is gone, or now belongs to another
  process (start time differs), or the host rebooted since (boot id differs);
- it names another host or namespace: its heartbeat is older than ``STALE_AFTER_S`` by
  our clock.

Only dead markers are acted on (see ``sweep``): what a dead create or copy left without a
record is removed, a dead delete is finished. The server's clock never decides anything.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from dumpsafe.errors import DumpsafeError
from dumpsafe.fsutil import pid_alive
from dumpsafe.models import rfc3339, utcnow
from dumpsafe.storage.base import Store

log = logging.getLogger(__name__)

PENDING_PREFIX = "pending/"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0

Clock = Callable[[], datetime]

# (store name, backup id) of the writes this process is running: a marker naming this very
# process is alive only while its write runs (a long-lived ``serve`` must not keep a
# marker its failed write left behind alive until it restarts)
_ACTIVE: set[tuple[str, str]] = set()
_ACTIVE_LOCK = threading.Lock()


def marker_key(backup_id: str) -> str:
    return f"{PENDING_PREFIX}{backup_id}.json"


def id_from_marker_key(key: str) -> str | None:
    if key.startswith(PENDING_PREFIX) and key.endswith(".json"):
        return key[len(PENDING_PREFIX) : -len(".json")]
    return None


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def boot_id() -> str | None:
    text = _read("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    try:
        return text.rsplit(")", 1)[1].split()[19]
    except IndexError:
        return None


def pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot_id": boot_id(), "pid_ns": pid_namespace(), "pid": pid,
            "pid_start": process_start(pid)}


@dataclass
class Marker:
    backup_id: str
    op: str  # create | copy | delete
    data: dict[str, Any]

    def alive(self, now: datetime, store: str | None = None) -> bool:
        d = self.data
        me = this_process()
        if store is not None and d.get("pid") == me["pid"] and d.get("host") == me["host"] and d.get("pid_ns") == me["pid_ns"]:
            with _ACTIVE_LOCK:
                return (store, self.backup_id) in _ACTIVE
        # pids mean something only in the same pid namespace of the same host (two
        # containers may share a host name): elsewhere the heartbeat decides
        if d.get("host") == me["host"] and d.get("pid_ns") == me["pid_ns"]:
            if d.get("boot_id") and me["boot_id"] and d["boot_id"] != me["boot_id"]:
                return False
            pid = d.get("pid")
            if not isinstance(pid, int) or not pid_alive(pid):
                return False
            started = d.get("pid_start")
            return started is None or process_start(pid) in (None, started)
        try:
            beat = datetime.fromisoformat(str(d["heartbeat_at"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            return False
        return now - beat < timedelta(seconds=STALE_AFTER_S)


def read_marker(store: Store, key: str) -> Marker | None:
    """The marker at ``key`` (an unreadable one counts as dead: ``op`` "unknown")."""
    bid = id_from_marker_key(key)
    if bid is None:
        return None
    try:
        data = json.loads(store.get_bytes(key))
        if not isinstance(data, dict):
            raise ValueError
    except (ValueError, DumpsafeError):
        return Marker(bid, "unknown", {})
    return Marker(bid, str(data.get("op", "unknown")), data)


class Pending:
    """The marker of one in-flight write, with its heartbeat thread.

    ``with Pending(...) as p:`` writes the marker and starts the heartbeat; leaving the
    block stops the heartbeat but keeps the marker: call ``p.done()`` once the record
    and the audit line are written (or the leftovers are removed)."""

    def __init__(self, store: Store, backup_id: str, op: str, *, clock: Clock = utcnow, heartbeat_s: float = HEARTBEAT_S,
                 **facts: Any):
        self.store = store
        self.key = marker_key(backup_id)
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.data = {"id": backup_id, "op": op, **this_process(), "started_at": rfc3339(clock()), **facts}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        self.data["heartbeat_at"] = rfc3339(self.clock())
        self.store.put_bytes(self.key, (json.dumps(self.data, sort_keys=True) + "\n").encode())

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._write()
            except Exception as e:  # noqa: BLE001 - a missed beat only makes the marker look older
                log.debug("heartbeat of %s failed: %s", self.key, type(e).__name__)

    def __enter__(self) -> "Pending":
        with _ACTIVE_LOCK:
            _ACTIVE.add((self.store.name, self.data["id"]))
        self._write()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.data['id']}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def done(self) -> None:
        """Remove the marker (the write is committed and audited, or fully cleaned up)."""
        self.stop()
        self.store.delete(self.key)
        self.release()

    def release(self) -> None:
        """Leave the marker for the next sweep (the write failed and could not clean up):
        from now on it counts as dead, also in this process."""
        self.stop()
        with _ACTIVE_LOCK:
            _ACTIVE.discard((self.store.name, self.data["id"]))
