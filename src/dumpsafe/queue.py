"""The job queue on a control-plane PostgreSQL (procrastinate), when ``queue`` is configured.

- ``JobQueue(config)`` owns one procrastinate App; ``ensure_schema`` applies procrastinate's
  schema (once, under an advisory lock, so N workers starting together do not race) and
  dumpsafe's one table of job outcomes (backup IDs or the error sentence).
- Jobs: backup (tenant, databases), drill, prune, copy (jobs.py has their bodies). Each job
  carries procrastinate's ``lock`` (never two at once for one tenant/database) and
  ``queueing_lock`` (never two waiting): deferring a job that is already waiting answers
  the waiting job's ID.
- ``defer_tick``: a tenant's scheduled run for one fire time is deferred once for the whole
  fleet, whichever ``serve`` process asks first (procrastinate's periodic-defer table,
  keyed by the fire time), never once per host.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import procrastinate
import psycopg
from procrastinate import exceptions as pexc
from procrastinate import sql as psql

from dumpsafe.errors import DumpsafeError, NotFoundError, first_line
from dumpsafe.queue_config import QUEUE, connect_kwargs

_SCHEMA_LOCK = 0x64756D70  # "dump": serialises schema setup between hosts
_RESULTS = """
CREATE TABLE IF NOT EXISTS dumpsafe_job_results (
    job_id bigint PRIMARY KEY,
    worker text,
    backup_ids jsonb NOT NULL DEFAULT '[]',
    error text,
    finished_at timestamptz NOT NULL DEFAULT now()
)"""


class QueueError(DumpsafeError):
    """The control-plane database cannot be reached or used."""

    kind = "queue"
    http_status = 502


@dataclass
class JobInfo:
    """A queued job as the API and ``--wait`` show it."""

    id: int
    kind: str
    status: str  # todo | doing | succeeded | failed | cancelled | aborted
    tenant: str | None
    args: dict[str, Any]
    attempts: int
    worker: str | None = None
    backup_ids: list[str] = field(default_factory=list)
    error: str | None = None
    already_queued: bool = False

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled", "aborted")

    def to_json_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status, "tenant": self.tenant,
                "attempts": self.attempts, "worker": self.worker, "backup_ids": self.backup_ids, "error": self.error,
                "already_queued": self.already_queued}


def job_locks(kind: str, tenant: str, database: str | None = None) -> tuple[str, str]:
    """(lock, queueing_lock) of a job: one running and one waiting per tenant/database and kind."""
    scope = f"{tenant}/{database}" if database else tenant
    lock = f"dumpsafe:{'backup' if kind == 'backup' else kind}:{scope}"
    return lock, lock + ":queued"


class JobQueue:
    def __init__(self, config: Any):
        self.config = config
        self._kw = connect_kwargs(config)
        conninfo = self._kw.pop("conninfo")
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=conninfo, kwargs=self._kw, min_size=1, max_size=4),
        )
        from dumpsafe import jobs

        self.tasks = jobs.register(self.app, config)
        self._opened = False
        self._open_lock = threading.Lock()

    # ---- plumbing -------------------------------------------------------------------------
    def connect(self, autocommit: bool = True) -> psycopg.Connection:
        try:
            return psycopg.connect(self.config.queue, autocommit=autocommit, **self._kw)
        except psycopg.Error as e:
            raise QueueError(f"queue: cannot reach the control-plane database ({type(e).__name__}: "
                             f"{first_line(e, 'no detail')}); check queue and its password") from None

    def _sync(self) -> Any:
        """procrastinate's sync connector, opened once per process (serve, API)."""
        with self._open_lock:
            if not self._opened:
                try:
                    self.app.open()
                except pexc.ConnectorException as e:
                    raise QueueError(f"queue: cannot reach the control-plane database ({e.__cause__ or e})") from None
                self._opened = True
        return self.app.connector.get_sync_connector()

    def close(self) -> None:
        if self._opened:
            self.app.close()
            self._opened = False

    def ensure_schema(self) -> None:
        """procrastinate's tables and dumpsafe's outcomes table, applied once (idempotent)."""
        with self.connect() as c:
            c.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
            try:
                if c.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is None:
                    c.execute(self.app.schema_manager.get_schema())
                c.execute(_RESULTS)
            finally:
                c.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))

    # ---- deferring ------------------------------------------------------------------------
    def defer(self, kind: str, tenant: str, database: str | None = None, **args: Any) -> JobInfo:
        """Queue one job; a job of the same kind already waiting for the tenant/database answers instead."""
        lock, qlock = job_locks(kind, tenant, database)
        task = self.tasks[kind]
        self._sync()
        try:
            job_id = task.configure(lock=lock, queueing_lock=qlock, queue=QUEUE).defer(tenant=tenant, **args)
        except pexc.AlreadyEnqueued:
            waiting = self._waiting(qlock)
            if waiting is None:  # it started between the two statements: queue a new one
                return self.defer(kind, tenant, database, **args)
            info = self.job(waiting)
            info.already_queued = True
            return info
        except pexc.ConnectorException as e:
            raise QueueError(f"queue: cannot defer the {kind} of tenant {tenant!r} ({e.__cause__ or e})") from None
        return self.job(job_id)

    def defer_tick(self, kind: str, tenant: str, fire: datetime, databases: list[str] | None) -> int | None:
        """Defer a tenant's scheduled run for ``fire`` once for the whole fleet; None: already deferred
        (by another serve) or a run of the tenant is still waiting."""
        lock, qlock = job_locks(kind, tenant)
        stamp = int(fire.timestamp())
        try:
            row = self._sync().execute_query_one(
                query=psql.queries["defer_periodic_job"], queue=QUEUE, lock=lock, queueing_lock=qlock,
                task_name=self.tasks[kind].name, priority=0, periodic_id=f"{kind}:{tenant}", defer_timestamp=stamp,
                args={"tenant": tenant, "databases": databases, "scheduled": stamp, "actor": "scheduler"},
            )
        except pexc.UniqueViolation:
            return None  # the tenant's previous scheduled run is still waiting: skip, as in-process
        except pexc.ConnectorException as e:
            raise QueueError(f"queue: cannot defer the scheduled {kind} of tenant {tenant!r} ({e.__cause__ or e})") from None
        return row["id"]

    def _waiting(self, qlock: str) -> int | None:
        with self.connect() as c:
            row = c.execute("SELECT id FROM procrastinate_jobs WHERE queueing_lock = %s AND status = 'todo'", (qlock,)).fetchone()
        return row[0] if row else None

    # ---- reading --------------------------------------------------------------------------
    def job(self, job_id: int) -> JobInfo:
        with self.connect() as c:
            row = c.execute(
                "SELECT j.id, j.task_name, j.status, j.args, j.attempts, r.worker, r.backup_ids, r.error "
                "FROM procrastinate_jobs j LEFT JOIN dumpsafe_job_results r ON r.job_id = j.id WHERE j.id = %s",
                (job_id,),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"job {job_id} not found")
        jid, task, status, args, attempts, worker, ids, error = row
        return JobInfo(jid, task.rsplit(".", 1)[-1], str(status), (args or {}).get("tenant"), args or {}, attempts,
                       worker, list(ids or []), error)

    def record_outcome(self, job_id: int, worker: str, backup_ids: list[str], error: str | None) -> None:
        with self.connect() as c:
            c.execute(
                "INSERT INTO dumpsafe_job_results (job_id, worker, backup_ids, error) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (job_id) DO UPDATE SET worker = EXCLUDED.worker, backup_ids = EXCLUDED.backup_ids, "
                "error = EXCLUDED.error, finished_at = now()",
                (job_id, worker, psycopg.types.json.Jsonb(backup_ids), error),
            )


def audited_defer(audit: Any, actor: str, kind: str, tenant: str, defer: Any) -> Any:
    """Queue a job through ``defer()`` with one audit line on the queueing host: action
    ``queue``, the job's kind as ``operation``, its ``job_id`` (None: already queued elsewhere),
    tenant and actor; a failure to queue is audited as failed. Workers' lines for the job
    carry the same ``job_id`` (and their ``worker_host``)."""
    with audit.record("queue", actor, tenant=tenant) as ev:
        got = defer()
        job_id = got.id if isinstance(got, JobInfo) else got
        ev.extra.update(operation=kind, job_id=job_id)
        if got is None or (isinstance(got, JobInfo) and got.already_queued):
            ev.extra["already_queued"] = True  # another request or serve host queued it (and audited that)
    return got


_QUEUES: dict[int, JobQueue] = {}
_QUEUES_LOCK = threading.Lock()


def queue_for(config: Any) -> JobQueue | None:
    """The process's JobQueue for a config with ``queue`` set; None: run everything in-process."""
    if not getattr(config, "queue", None):
        return None
    with _QUEUES_LOCK:
        q = _QUEUES.get(id(config))
        if q is None:
            q = _QUEUES[id(config)] = JobQueue(config)
        return q
