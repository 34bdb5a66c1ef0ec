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


def process_state(pid: int) -> str:
    """The one-letter state of a process from /proc (``T`` stopped), or ``gone``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def wait_stopped(proc: Any, what: str = "the process to stop at its failpoint", timeout: float = 120.0) -> None:
    """Wait until ``proc`` (a Popen run with a ``…=stop`` failpoint) has stopped itself; fail if it exits first."""

    def stopped() -> bool:
        assert proc.poll() is None, f"exited with {proc.returncode} before {what}"
        return process_state(proc.pid) == "T"

    wait_for(what, stopped, timeout=timeout)
