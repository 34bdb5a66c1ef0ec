"""Append-only audit log: one JSON line per action, success and failure. Never a secret.

Lines are hash-chained: each carries ``hash``, the SHA-256 of its own canonical JSON
without that key, and ``prev``, the previous line's ``hash`` (64 zeros for the first line),
so an edited line no longer matches its own hash and a line inserted or removed breaks the
link after it (``dumpsafe audit verify`` names the first broken line). Lines written before
the chain existed are reported as unchained (a link to one uses the SHA-256 of its bytes).

Every string in a line is a bounded excerpt (a caller's 50 MiB input becomes 500
characters and its length). A small state file beside the log (``audit.state.json``)
keeps what status and metrics need (line count, last hash, backup failures per tenant and
database), updated under the same lock as each append, so nothing re-reads the whole log;
it is rebuilt from the log once when it does not match the log's size.
"""

from __future__ import annotations

import contextvars
import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from dumpsafe.errors import DumpsafeError
from dumpsafe.fsutil import private_dir, write_private
from dumpsafe.models import ID_RE, rfc3339, utcnow

AUDIT_FILE = "audit.jsonl"
STATE_FILE = "audit.state.json"
GENESIS = "0" * 64
MAX_STR = 500
MAX_ERROR = 2000
MAX_ITEMS = 50
BACKUP_ACTION = "create"  # the audit action of a backup (every front writes this one); status.py counts its failures
_CHUNK = 1 << 16


# fields every line written in this context carries (a queued job: its job_id and worker host)
JOB_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("dumpsafe_audit_job", default={})


def excerpt(value: Any, limit: int = MAX_STR, depth: int = 0) -> Any:
    """A bounded copy of ``value``: long strings cut (their length said), long lists cut."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}... ({len(value)} characters)"
    if depth > 4:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())[:MAX_ITEMS]
        return {excerpt(str(k), 100): excerpt(v, limit, depth + 1) for k, v in items}
    if isinstance(value, (list, tuple)):
        out = [excerpt(v, limit, depth + 1) for v in list(value)[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            out.append(f"... ({len(value) - MAX_ITEMS} more)")
        return out
    return value


def line_hash(line: bytes) -> str:
    """The link to a line written before the chain existed: SHA-256 of its bytes."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _self_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


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


@dataclass
class ChainReport:
    """The outcome of ``audit verify``."""

    lines: int
    unchained: int  # lines before the chain began (written by an older version)
    broken_line: int | None = None  # 1-based
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_line is None


class AuditLog:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / AUDIT_FILE
        self.state_path = Path(state_dir) / STATE_FILE

    # ---- writing ----------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[tuple[int, dict[str, Any]]]:
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd, self._state(os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def append(self, entry: dict[str, Any]) -> None:
        with self._locked() as (fd, state):
            body = {k: excerpt(v, MAX_ERROR if k == "error" else MAX_STR) for k, v in entry.items()}
            body["prev"] = state["last"]
            body["hash"] = _self_hash(json.loads(json.dumps(body, default=str)))
            line = (json.dumps(body, sort_keys=True, default=str) + "\n").encode()
            os.write(fd, line)
            state["size"] += len(line)
            state["lines"] += 1
            state["last"] = body["hash"]
            _count_failure(state, body)
            self._save_state(state)

    def _save_state(self, state: dict[str, Any]) -> None:
        write_private(self.state_path, json.dumps(state).encode())

    def _state(self, size: int, *, save: bool = False) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_bytes())
            if state.get("size") == size and {"lines", "last", "failures"} <= set(state):
                return state
        except (OSError, ValueError, AttributeError):
            pass
        state = self._rebuild_state()
        if save:
            self._save_state(state)
        return state

    def _current_state(self) -> dict[str, Any] | None:
        """The state matching the log right now (a shared lock keeps appends out while reading)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return self._state(os.fstat(fd).st_size, save=True)
        finally:
            os.close(fd)

    def _rebuild_state(self) -> dict[str, Any]:
        """Recount from the log itself (once, when the state file is missing or stale)."""
        state: dict[str, Any] = {"size": 0, "lines": 0, "last": GENESIS, "failures": {}}
        for raw in self._raw_lines():
            state["size"] += len(raw)
            state["lines"] += 1
            state["last"] = line_hash(raw)
            try:
                entry = json.loads(raw)
                state["last"] = entry.get("hash") or state["last"]
                _count_failure(state, entry)
            except (ValueError, AttributeError):
                continue
        return state

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
        tenant = ev.tenant
        if tenant is None and isinstance(ev.backup_id, str):
            m = ID_RE.fullmatch(ev.backup_id)
            tenant = m.group("tenant") if m else None
        self.append(
            {
                "time": rfc3339(at),
                "actor": ev.actor,
                "action": ev.action,
                "backup_id": ev.backup_id,
                "tenant": tenant,
                "database": ev.database,
                "store": ev.store,
                "size_bytes": ev.size_bytes,
                "outcome": outcome,
                "duration_s": round(duration, 3),
                "error": error,
                **JOB_CONTEXT.get(),
                **ev.extra,
            }
        )

    def denied(self, action: str, actor: str, *, error: str, tenant: str | None = None, **extra: Any) -> None:
        """One line for an attempt refused before it reached any action (401, 429)."""
        self.append({"time": rfc3339(utcnow()), "actor": actor, "action": action, "backup_id": None, "tenant": tenant,
                     "database": None, "store": None, "size_bytes": None, "outcome": "denied", "duration_s": 0.0,
                     "error": error, **extra})

    # ---- reading ----------------------------------------------------------------------------
    def _raw_lines(self) -> Iterator[bytes]:
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return
        with fh:
            yield from fh

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every line, oldest first (unparseable lines are skipped). Reads the whole log:
        for tools and tests; the server reads pages from the end (``newest``)."""
        for line in self._raw_lines():
            try:
                yield json.loads(line)
            except ValueError:
                continue

    def newest(self, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Lines newest first, ``offset`` skipped, at most ``limit``: read from the end of the file."""
        out: list[dict[str, Any]] = []
        for i, raw in enumerate(self._reversed_lines()):
            if i < offset:
                continue
            if len(out) >= limit:
                break
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"unparseable": True})
        return out

    def _reversed_lines(self) -> Iterator[bytes]:
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return
        with fh:
            pos = fh.seek(0, os.SEEK_END)
            rest = b""
            while pos > 0:
                step = min(_CHUNK, pos)
                pos -= step
                fh.seek(pos)
                block = fh.read(step) + rest
                lines = block.split(b"\n")
                rest = lines.pop(0)
                for line in reversed(lines):
                    if line:
                        yield line
            if rest:
                yield rest

    def count(self) -> int:
        """Lines in the log (from the state file; recounted once if stale)."""
        state = self._current_state()
        return int(state["lines"]) if state else 0

    def failure_summary(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Failed backup attempts per tenant/database, as events for status.compute: the last
        failure's time and error, and ``count`` (from the state file, not the whole log)."""
        state = self._current_state()
        out: list[dict[str, Any]] = []
        for key, f in (state or {"failures": {}})["failures"].items():
            t, _, db = key.partition("\t")
            if tenant is None or t == tenant:
                out.append({"action": "create", "outcome": "failed", "tenant": t, "database": db or None,
                            "time": f["time"], "error": f["error"], "count": f["count"]})
        return out

    def verify(self) -> ChainReport:
        """Walk the chain from the first line; the first line whose ``prev`` is wrong is broken."""
        prev: str | None = None
        chained = False
        lines = unchained = 0
        for raw in self._raw_lines():
            lines += 1
            try:
                entry = json.loads(raw)
                link = entry.get("prev") if isinstance(entry, dict) else None
            except ValueError:
                return ChainReport(lines, unchained, lines, "it is not a JSON line")
            if link is None:
                if chained:
                    return ChainReport(lines, unchained, lines, "it has no 'prev' hash")
                unchained += 1
                prev = line_hash(raw)
                continue
            if entry.get("hash") != _self_hash(entry):
                return ChainReport(lines, unchained, lines, "it does not match its own hash (it was edited)")
            if link != (prev or GENESIS):
                return ChainReport(lines, unchained, lines, "its 'prev' hash does not match the line before it "
                                                           "(a line was inserted or removed before it)")
            chained = True
            prev = entry["hash"]
        return ChainReport(lines, unchained)


def _count_failure(state: dict[str, Any], entry: dict[str, Any]) -> None:
    if entry.get("action") != BACKUP_ACTION or entry.get("refused") or entry.get("error_kind") == "usage":
        return  # a refused request (scope, tenant, store) or a mistyped name is not a failed backup of that tenant
    if str(entry.get("outcome", "")).lower() in ("success", "ok", "succeeded", "passed", "denied"):
        return
    key = f"{entry.get('tenant') or ''}\t{entry.get('database') or ''}"
    f = state["failures"].setdefault(key, {"count": 0, "time": None, "error": None})
    f["count"] += 1
    f["time"], f["error"] = entry.get("time"), excerpt(entry.get("error"), MAX_STR)
