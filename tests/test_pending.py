"""Pending markers: a live writer elsewhere is judged by its heartbeat (our clock, injected
here), one on this host by its process; only dead ones are swept."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from dumpsafe.models import rfc3339
from dumpsafe.pending import STALE_AFTER_S, Pending, marker_key, read_marker, this_process
from dumpsafe.sweep import sweep
from stores import make_store  # noqa: F401  (fixture)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def _marker(store, bid: str, **data) -> None:
    store.put_bytes(marker_key(bid), json.dumps({"id": bid, "op": "create", **data}).encode())


def test_marker_of_another_host_is_dead_only_after_its_heartbeat_went_stale(make_store):
    _, store = make_store("local")
    store.put_bytes("objects/b1/database.dump.zst", b"half a backup")
    _marker(store, "b1", host="elsewhere", pid=1, heartbeat_at=rfc3339(NOW))
    rep = sweep(store, NOW + timedelta(seconds=STALE_AFTER_S - 60), full=True)
    assert rep.removed == {} and store.exists("objects/b1/database.dump.zst")
    rep = sweep(store, NOW + timedelta(seconds=STALE_AFTER_S + 60), full=True)
    assert rep.removed == {"b1": 1} and [o.key for o in store.list()] == []


def test_marker_of_this_host_is_judged_by_its_process(make_store):
    _, store = make_store("local")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = this_process()
    store.put_bytes("objects/gone/uploads.tar.zst", b"x")
    _marker(store, "gone", **{**me, "pid": dead.pid, "pid_start": None},
            heartbeat_at=rfc3339(NOW))  # a fresh heartbeat does not matter on this host
    # a reused pid: same number, another start time
    store.put_bytes("objects/reused/uploads.tar.zst", b"x")
    _marker(store, "reused", **{**me, "pid_start": "1"}, heartbeat_at=rfc3339(NOW))
    # this very process: alive while the write runs, dead once it gave up (released)
    live = Pending(store, "alive", "create", clock=lambda: NOW - timedelta(days=1))
    left = Pending(store, "left", "delete", clock=lambda: NOW)
    with live, left:
        for bid in ("alive", "left"):
            store.put_bytes(f"objects/{bid}/uploads.tar.zst", b"x")
        left.release()
        rep = sweep(store, NOW)
    assert sorted(rep.removed) == ["gone", "reused"] and [m.backup_id for m in rep.finished_deletes] == ["left"]
    assert [o.key for o in store.list("objects/")] == ["objects/alive/uploads.tar.zst"]


def test_heartbeat_moves_while_the_writer_runs(make_store):
    _, store = make_store("local")
    ticks = iter(NOW + timedelta(seconds=i) for i in range(10_000))
    with Pending(store, "b2", "create", clock=lambda: next(ticks), heartbeat_s=0.01) as p:
        first = read_marker(store, marker_key("b2")).data["heartbeat_at"]
        deadline = time.monotonic() + 30
        while read_marker(store, marker_key("b2")).data["heartbeat_at"] == first:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert store.exists(marker_key("b2"))  # leaving the block keeps it: the caller decides
    p.done()
    assert not store.exists(marker_key("b2"))
