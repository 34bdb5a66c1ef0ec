"""Waiting for an event in a test: poll a condition under a generous deadline, never a fixed sleep
or a fixed window, so a loaded machine only makes the test slower, not red."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 90.0, every: float = 0.05) -> Any:
    """Poll ``cond`` until it returns something truthy, and return that; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
