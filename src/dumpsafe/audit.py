"""Append-only audit log: one JSON line per action, success and failure. Never a secret."""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from dumpsafe.errors import DumpsafeError
from dumpsafe.models import rfc3339, utcnow

AUDIT_FILE = "audit.jsonl"


@dataclass
class AuditEvent:
    """Fields of one audit line, filled in while the action runs."""

    action: str
    actor: str
    backup_id: str | None = None
    tenant: str | None = None
    database: str | None = None
    store: str | None = None
    size_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class AuditLog:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / AUDIT_FILE

    def append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
        finally:
            os.close(fd)

    @contextmanager
    def record(self, action: str, actor: str, *, only_failure: bool = False, **fields: Any) -> Iterator[AuditEvent]:
        """Audit the enclosed action: one line on success, one on failure (then re-raise).

        ``only_failure`` is for preparatory steps whose success is audited by the work after them.
        """
        ev = AuditEvent(action=action, actor=actor, **fields)
        started = time.monotonic()
        at = utcnow()
        outcome, error = "ok", None
        try:
            yield ev
        except DumpsafeError as e:
            outcome, error = "failed", e.message
            raise
        except BaseException as e:  # still audited; the message of a bug may not be user-safe
            outcome, error = "failed", f"internal error ({type(e).__name__})"
            raise
        finally:
            if outcome == "failed" or not only_failure:
                self._write(ev, at, outcome, error, time.monotonic() - started)

    def _write(self, ev: AuditEvent, at: Any, outcome: str, error: str | None, duration: float) -> None:
        self.append(
            {
                "time": rfc3339(at),
                "actor": ev.actor,
                "action": ev.action,
                "backup_id": ev.backup_id,
                "tenant": ev.tenant,
                "database": ev.database,
                "store": ev.store,
                "size_bytes": ev.size_bytes,
                "outcome": outcome,
                "duration_s": round(duration, 3),
                "error": error,
                **ev.extra,
            }
        )

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every line, oldest first (unparseable lines are skipped)."""
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return
        with fh:
            for line in fh:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue
