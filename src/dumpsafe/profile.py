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


def start() -> None:
    if _on():
        _local.steps, _local.last = [], time.perf_counter()


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
