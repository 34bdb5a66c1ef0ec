"""The bodies of queued jobs (backup, drill, prune, copy), as a ``dumpsafe worker`` runs them.

- Each job calls the one BackupService, with audit lines that carry the job ID, the attempt
  and the worker's host name.
- Bounded concurrency per database server: a backup or drill first takes one of
  ``max_parallel_per_server`` slots of its tenant's server, a session advisory lock in the
  control-plane database (a dead worker's connection closes, so its slot frees itself).
- A retried attempt (after a failure, or after its worker died) first sweeps what dead
  writers left in the tenant's store: the pending markers tell dead from live.
- Transient failures (database down, store 5xx, queue unreachable) are retried with
  exponential backoff up to ``queue_retry_attempts``; permanent ones (bad config, unknown
  names, integrity failure, refusal) fail the job at once.
"""

from __future__ import annotations

import hashlib
import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

from procrastinate import retry as pretry

from dumpsafe import errors
from dumpsafe.audit import JOB_CONTEXT

log = logging.getLogger(__name__)

TRANSIENT = (errors.BackupFailed, errors.RestoreFailed, errors.ConflictError, errors.DatabaseUnavailable, errors.SqlFailed, errors.ToolFailed)


class TransientJobError(Exception):
    """A failure worth another attempt (procrastinate retries these, with backoff)."""


class PermanentJobError(Exception):
    """A failure another attempt would only repeat: the job fails at once."""


def is_transient(e: errors.DumpsafeError) -> bool:
    if isinstance(e, errors.StoreError):
        return e.transient  # the stores mark what another attempt may fix (5xx, throttling, unreachable)
    return getattr(e, "kind", None) == "queue" or isinstance(e, TRANSIENT)


@dataclass
class JobRetry(pretry.BaseRetryStrategy):
    """Only TransientJobError is retried: ``wait_s``, then doubling, up to ``attempts`` in all."""

    attempts: int
    wait_s: float

    def get_retry_decision(self, *, exception: BaseException, job: Any) -> pretry.RetryDecision | None:
        if not isinstance(exception, TransientJobError) or job.attempts + 1 >= self.attempts:
            return None
        return pretry.RetryDecision(retry_in={"seconds": self.wait_s * (2 ** job.attempts)})


@dataclass
class Runtime:
    """What a worker process gives its jobs."""

    service: Any
    queue: Any
    host: str = socket.gethostname()
    slot_poll_s: float = 0.2


_RUNTIME: Runtime | None = None


def set_runtime(rt: Runtime | None) -> None:
    global _RUNTIME
    _RUNTIME = rt


def runtime() -> Runtime:
    if _RUNTIME is None:
        raise PermanentJobError("dumpsafe jobs run inside 'dumpsafe worker' only")
    return _RUNTIME


def server_of(config: Any, tenant: str) -> str:
    t = config.tenant(tenant)
    return f"{t.host}:{t.port}"


def _slot_key(server: str, slot: int) -> int:
    return int.from_bytes(hashlib.sha256(f"dumpsafe-server:{server}:{slot}".encode()).digest()[:8], "big", signed=True)


class ServerSlot:
    """Hold one of ``limit`` slots of a database server for the duration of a job."""

    def __init__(self, queue: Any, server: str, limit: int, poll_s: float = 0.2):
        self.queue, self.server, self.limit, self.poll_s = queue, server, limit, poll_s
        self.conn: Any = None

    def __enter__(self) -> "ServerSlot":
        self.conn = self.queue.connect()
        try:
            while True:
                for slot in random.sample(range(self.limit), self.limit):
                    if self.conn.execute("SELECT pg_try_advisory_lock(%s)", (_slot_key(self.server, slot),)).fetchone()[0]:
                        return self
                time.sleep(self.poll_s)  # every slot of the server is busy: wait for one to free
        except BaseException:
            self.conn.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.conn.close()  # closing the session releases its advisory lock


def _run(context: Any, kind: str, tenant: str, body: Callable[[Runtime], list[str]], *, slot: bool) -> list[str]:
    rt = runtime()
    job = context.job
    worker = f"{rt.host}/{context.worker_name or 'worker'}"
    token = JOB_CONTEXT.set({"job_id": job.id, "worker_host": rt.host, "attempt": job.attempts + 1})
    try:
        svc = rt.service
        if job.attempts > 0:  # a retry, perhaps of an attempt whose worker died: sweep what it left
            svc.sweep_store(svc.store(svc.config.store_for(tenant)))
        if slot:
            with ServerSlot(rt.queue, server_of(svc.config, tenant), svc.config.max_parallel_per_server, rt.slot_poll_s):
                ids = body(rt)
        else:
            ids = body(rt)
    except errors.DumpsafeError as e:
        message = e.message
        _safe(lambda: rt.queue.record_outcome(job.id, worker, [], message))
        log.warning("job %s (%s of %s) failed: %s", job.id, kind, tenant, e.message)
        raise (TransientJobError if is_transient(e) else PermanentJobError)(e.message) from None
    except (TransientJobError, PermanentJobError):
        raise
    except Exception as e:
        internal = f"internal error ({type(e).__name__})"
        _safe(lambda: rt.queue.record_outcome(job.id, worker, [], internal))
        raise
    finally:
        JOB_CONTEXT.reset(token)
    rt.queue.record_outcome(job.id, worker, ids, None)
    return ids


def _safe(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:
        log.exception("could not record a job outcome")


def _backup(rt: Runtime, tenant: str, databases: list[str] | None, store: str | None, uploads: bool,
            label: str | None, pin: bool, actor: str, scheduled: int | None) -> list[str]:
    svc = rt.service
    records = svc.create(tenant, databases=databases, store=store, uploads=uploads, label=label, pin=pin, actor=actor)
    if scheduled is not None and svc.config.scheduler.prune_after_backup and svc.config.retention_for(tenant):
        try:
            svc.prune(tenant, actor=actor)
        except errors.DumpsafeError as e:
            log.warning("prune after backup of %s failed: %s", tenant, e.message)
    return [r.id for r in records]


def _drill(rt: Runtime, tenant: str, actor: str) -> list[str]:
    svc = rt.service
    latest: dict[str, Any] = {}
    for rec in svc.list(tenant):  # newest first
        latest.setdefault(rec.database, rec)
    failed = []
    for db, rec in sorted(latest.items()):
        v = svc.verify(rec.id, drill=True, actor=actor).last_verification
        if v is not None and v.result == "failed":
            failed.append(f"{db}: {v.detail}")
    if failed:
        raise errors.IntegrityError(f"restore drill of tenant {tenant!r} failed ({'; '.join(failed)})")
    return [r.id for r in latest.values()]


def register(app: Any, config: Any) -> dict[str, Any]:
    """Declare the four jobs on a procrastinate App; returns them by kind."""
    from dumpsafe.queue_config import QUEUE

    retry = JobRetry(config.queue_retry_attempts, config.queue_retry_wait_s)

    @app.task(name="dumpsafe.backup", queue=QUEUE, pass_context=True, retry=retry)
    def backup(context: Any, tenant: str, databases: list[str] | None = None, store: str | None = None,
               uploads: bool = True, label: str | None = None, pin: bool = False, actor: str = "queue",
               scheduled: int | None = None) -> list[str]:
        return _run(context, "backup", tenant,
                    lambda rt: _backup(rt, tenant, databases, store, uploads, label, pin, actor, scheduled), slot=True)

    @app.task(name="dumpsafe.drill", queue=QUEUE, pass_context=True, retry=retry)
    def drill(context: Any, tenant: str, actor: str = "queue", databases: Any = None, scheduled: int | None = None) -> list[str]:
        return _run(context, "drill", tenant, lambda rt: _drill(rt, tenant, actor), slot=True)

    @app.task(name="dumpsafe.prune", queue=QUEUE, pass_context=True, retry=retry)
    def prune(context: Any, tenant: str, actor: str = "queue", dry_run: bool = False) -> list[str]:
        return _run(context, "prune", tenant, lambda rt: [
            d.id for d in rt.service.prune(tenant, dry_run=dry_run, actor=actor) if not d.keep], slot=False)

    @app.task(name="dumpsafe.copy", queue=QUEUE, pass_context=True, retry=retry)
    def copy(context: Any, tenant: str, backup_id: str, to: str, actor: str = "queue") -> list[str]:
        return _run(context, "copy", tenant, lambda rt: [rt.service.copy(backup_id, to=to, actor=actor).id], slot=False)

    return {"backup": backup, "drill": drill, "prune": prune, "copy": copy}
