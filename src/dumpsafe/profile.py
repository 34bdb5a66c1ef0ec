"""Wall time per step of a restore or drill, printed to stderr when DUMPSAFE_PROFILE is set.

``start()`` opens a profile, ``mark(name)`` closes the step that ran since the previous mark,
``report(op)`` prints one line ``dumpsafe-profile {"op": ..., "steps": [[name, seconds], ...]}``
(bench/run.py reads it into RESULTS.md). Without the variable every call is a no-op.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

ENV = "DUMPSAFE_PROFILE"
_local = threading.local()


def _on() -> bool:
    return bool(os.environ.get(ENV))


def _process_age() -> float | None:
    """Seconds since this process started (/proc; None elsewhere)."""
    try:
        with open("/proc/self/stat") as fh:
            started = int(fh.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as fh:
            return max(0.0, float(fh.read().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return None


def start() -> None:
    """Open a profile; the first one of a process also records the time since it started."""
    if _on():
        first = not getattr(_local, "started", False)
        _local.started = True
        age = _process_age() if first else None
        _local.steps = [["process start-up (interpreter, imports, config, audit)", round(age, 3)]] if age is not None else []
        _local.last = time.perf_counter()


def mark(name: str) -> None:
    steps = getattr(_local, "steps", None) if _on() else None
    if steps is not None:
        now = time.perf_counter()
        steps.append([name, round(now - _local.last, 3)])
        _local.last = now


def report(op: str) -> None:
    steps = getattr(_local, "steps", None) if _on() else None
    if steps:
        print("dumpsafe-profile " + json.dumps({"op": op, "steps": steps}), file=sys.stderr, flush=True)
    _local.steps = None
