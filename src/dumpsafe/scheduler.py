"""The scheduler inside ``dumpsafe serve``: backups and restore drills on each tenant's
schedule, prune after every successful backup, and alerts when success goes missing.

- No overlapping runs: a tenant's backup that is still running (or queued) when its next
  fire time comes makes that fire a skip, in this process (an in-flight set) and across
  processes (a non-blocking lock file in state_dir/locks).
- Bounded concurrency across tenants: at most ``max_parallel`` jobs run at once.
- Hosts sharing a store (issue 16): the first host to claim a fire in the store runs it,
  under the tenant's lease there (lease.py), so two ``serve`` processes on one bucket run
  each scheduled backup once. With a ``queue`` configured each fire is only deferred to the
  workers instead, once for the whole fleet (queue.py).
- Optional jitter (``[scheduler] jitter``) delays each run by a random amount.
- A run missed while the service was down runs once on start when the missed fire time
  is within ``[scheduler] grace`` and no attempt was audited since.
- ``stop(graceful=True)`` (what SIGTERM does): take no new work, let running jobs finish.
  Jobs that are cut short by the process dying leave only temp objects, which the store
  sweeps; a record is only ever written last, so nothing is half-listed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from dumpsafe.config import Config, parse_duration
from dumpsafe.cron import Schedule
from dumpsafe.errors import DumpsafeError
from dumpsafe.fsutil import private_dir
from dumpsafe.models import utcnow
from dumpsafe.notify import Event, EventKind, Notifier

log = logging.getLogger(__name__)
ACTOR = "scheduler"


@dataclass
class Run:
    """One job execution, kept in memory for status and tests."""

    tenant: str
    kind: str  # "backup" | "drill"
    fire: datetime
    started: datetime | None = None
    finished: datetime | None = None
    outcome: str = "pending"  # ok | failed | skipped | queued
    job_id: int | None = None  # issue 16: the queued job, when a queue is configured
    detail: str | None = None
    backup_ids: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)


@dataclass
class _Job:
    tenant: str
    kind: str
    schedule: Schedule
    fire: datetime  # next fire time
    due: datetime  # fire + jitter


class Scheduler:
    """Runs the tenants' schedules against a BackupService until stopped."""

    def __init__(
        self,
        service,
        config: Config | None = None,
        *,
        notifier: Notifier | None = None,
        check_interval: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.service = service
        self.config = config or service.config
        self.notifier = notifier or Notifier(self.config)
        self.check_interval = check_interval
        self.clock = clock
        sc = self.config.scheduler
        self.jitter = parse_duration(sc.jitter).total_seconds() if sc.jitter else 0.0
        self.grace = parse_duration(sc.grace)
        self.runs: list[Run] = []
        self._lock = threading.Lock()
        self._inflight: set[tuple[str, str]] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=self.config.max_parallel, thread_name_prefix="dumpsafe-job")
        self._alerted: set[tuple] = set()
        self._lock_dir = Path(self.config.state_dir) / "locks"
        self._rng = random.Random()
        self.queue = None  # issue 16: with a queue configured, each fire is deferred to the workers
        if getattr(self.config, "queue", None):
            from dumpsafe.queue import queue_for

            self.queue = queue_for(self.config)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Scheduler":
        now = self.clock()
        self.plan(now)
        for job in self._missed_on_start(now):
            self._dispatch(job.tenant, job.kind, job.fire)
        self._thread = threading.Thread(target=self._loop, name="dumpsafe-scheduler", daemon=True)
        self._thread.start()
        log.info("scheduler started: %d scheduled job(s), max_parallel=%d", len(self._jobs), self.config.max_parallel)
        return self

    def stop(self, graceful: bool = True, timeout: float | None = None) -> None:
        """Stop taking work; with ``graceful`` wait for running jobs to finish."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        # queued-but-not-started jobs are dropped; running ones finish when graceful
        self._pool.shutdown(wait=graceful, cancel_futures=True)
        with self._lock:
            for run in self.runs:
                if run.outcome == "pending" and run.started is None:
                    run.outcome, run.detail = "skipped", "scheduler stopped before it started"
                    self._inflight.discard((run.tenant, run.kind))
        log.info("scheduler stopped")

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop taking work (call from the main thread)."""

        def handler(signum, _frame):
            log.info("signal %d: taking no new work, letting running jobs finish", signum)
            self._stopping.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def wait(self) -> None:
        """Block until stop is requested (by a signal or another thread)."""
        while not self._stopping.wait(0.5):
            pass

    # ---- planning --------------------------------------------------------------------------
    def _build_jobs(self, now: datetime) -> list[_Job]:
        jobs: list[_Job] = []
        for name, t in sorted(self.config.tenants.items()):
            for kind, drill in (("backup", False), ("drill", True)):
                sched = t.parsed_schedule(drill=drill)
                if sched is not None:
                    fire = sched.next_after(now)
                    jobs.append(_Job(name, kind, sched, fire, self._jittered(fire)))
        return jobs

    def _jittered(self, fire: datetime) -> datetime:
        return fire + timedelta(seconds=self._rng.uniform(0, self.jitter)) if self.jitter else fire

    def _missed_on_start(self, now: datetime) -> list[_Job]:
        """Backup jobs whose last fire time was missed while we were down, within grace."""
        last_attempt: dict[str, datetime] = {}
        for ev in self.service.audit.entries():
            if ev.get("action") == "create" and ev.get("tenant") and not ev.get("refused"):  # refused: issue 12
                try:
                    at = datetime.fromisoformat(str(ev["time"]).replace("Z", "+00:00"))
                except (KeyError, ValueError):
                    continue
                if at > last_attempt.get(ev["tenant"], datetime.min.replace(tzinfo=timezone.utc)):
                    last_attempt[ev["tenant"]] = at
        missed = []
        for job in self._jobs:
            if job.kind != "backup":
                continue
            prev = job.schedule.prev_before(now)
            seen = last_attempt.get(job.tenant)
            if now - prev <= self.grace and (seen is None or seen < prev):
                missed.append(_Job(job.tenant, job.kind, job.schedule, prev, prev))
        return missed

    # ---- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        next_check = self.clock()
        while not self._stopping.is_set():
            now = self.clock()
            self.tick(now)
            if now >= next_check:
                self._safe(self.check_max_age)
                next_check = now + timedelta(seconds=self.check_interval)
            wake = min([j.due for j in self._jobs] + [next_check])
            self._stopping.wait(max(0.01, min(1.0, (wake - self.clock()).total_seconds())))

    def plan(self, now: datetime) -> None:
        """Compute each scheduled job's next fire time after ``now`` (start() does this)."""
        self._jobs = self._build_jobs(now)

    def tick(self, now: datetime) -> None:
        """Dispatch every job due at ``now`` (run it, or with a queue defer it), then plan its next fire."""
        for job in self._jobs:
            if job.due <= now:
                self._dispatch(job.tenant, job.kind, job.fire)
                # one run per due time; fires missed while busy are not replayed
                job.fire = job.schedule.next_after(max(job.fire, now))
                job.due = self._jittered(job.fire)

    def _dispatch(self, tenant: str, kind: str, fire: datetime) -> None:
        run = Run(tenant, kind, fire)
        with self._lock:
            self.runs.append(run)
            if self._stopping.is_set():
                run.outcome, run.detail = "skipped", "scheduler is stopping"
                return
        if self.queue is not None:
            self._defer(run)
            return
        with self._lock:
            if (tenant, kind) in self._inflight:
                run.outcome, run.detail = "skipped", f"previous {kind} of {tenant} still running"
                log.warning("skipping %s of %s due %s: the previous run is still going", kind, tenant, fire)
                return
            self._inflight.add((tenant, kind))
        try:
            self._pool.submit(self._execute, run)
        except RuntimeError:  # pool shut down between the check and the submit
            with self._lock:
                self._inflight.discard((tenant, kind))
            run.outcome, run.detail = "skipped", "scheduler is stopping"

    def _defer(self, run: Run) -> None:
        """Queue the fire for the workers, once for the whole fleet (however many serve processes)."""
        try:
            dbs = self.config.tenant(run.tenant).databases
            from dumpsafe.queue import audited_defer

            run.job_id = audited_defer(self.service.audit, ACTOR, run.kind, run.tenant, lambda: self.queue.defer_tick(
                run.kind, run.tenant, run.fire, list(dbs) if dbs else None))
        except DumpsafeError as e:
            run.outcome, run.detail = "failed", e.message
            log.warning("could not queue the %s of %s due %s: %s", run.kind, run.tenant, run.fire, e.message)
            return
        if run.job_id is None:
            run.outcome, run.detail = "skipped", f"this {run.kind} of {run.tenant} is already queued"
        else:
            run.outcome = "queued"

    def _execute(self, run: Run) -> None:
        try:
            if self._stopping.is_set():
                run.outcome, run.detail = "skipped", "scheduler is stopping"
                return
            with _TenantLock(self._lock_dir, run.tenant, run.kind) as got:
                if not got:
                    run.outcome, run.detail = "skipped", f"another {run.kind} of {run.tenant} holds the lock"
                    return
                self._shared_store_run(run)
        except Exception as e:  # a bug in one job must not kill the scheduler
            run.outcome, run.detail = "failed", f"internal error ({type(e).__name__})"
            log.exception("scheduled %s of %s failed unexpectedly", run.kind, run.tenant)
        finally:
            run.finished = self.clock()
            with self._lock:
                self._inflight.discard((run.tenant, run.kind))

    def _shared_store_run(self, run: Run) -> None:
        """Run once per fire across hosts sharing the tenant's store (issue 16): the first host to
        claim the fire runs it, under the tenant's lease (renewed while it runs)."""
        from dumpsafe.lease import Lease, claim_once, held

        try:
            store = self.service.store(self.config.store_for(run.tenant))
            if not claim_once(store, f"{run.kind}-{run.tenant}", run.fire):
                run.outcome, run.detail = "skipped", f"another host ran the {run.kind} of {run.tenant} due {run.fire}"
                return
            with held(Lease(store, f"{run.kind}-{run.tenant}")) as got:
                if not got:
                    run.outcome, run.detail = "skipped", f"another host holds the {run.kind} lease of {run.tenant}"
                    return
                run.started = self.clock()
                if run.kind == "backup":
                    self._backup(run)
                else:
                    self._drill(run)
        except DumpsafeError as e:  # the store could not be reached to claim the fire
            run.outcome, run.detail = "failed", e.message
            kind = EventKind.BACKUP_FAILED if run.kind == "backup" else EventKind.DRILL_FAILED
            self._send(Event(kind, run.tenant, None, f"scheduled {run.kind} of tenant {run.tenant} failed: {e.message}"))

    # ---- jobs ------------------------------------------------------------------------------
    def _backup(self, run: Run) -> None:
        try:
            records = self.service.create(run.tenant, actor=ACTOR)
        except DumpsafeError as e:
            run.outcome, run.detail = "failed", e.message
            self._history(run, ok=False)  # issue 15
            self._send(Event(EventKind.BACKUP_FAILED, run.tenant, None, f"scheduled backup of tenant {run.tenant} failed: {e.message}"))
            return
        run.backup_ids = [r.id for r in records]
        self._history(run, ok=True)  # issue 15
        run.outcome = "ok"  # (the service already checked each new backup for anomalies)
        if self.config.scheduler.prune_after_backup and self.config.retention_for(run.tenant) is not None:
            try:
                decisions = self.service.prune(run.tenant, actor=ACTOR)
                run.pruned = [d.id for d in decisions if not d.keep]
            except DumpsafeError as e:
                run.detail = f"backup ok, prune failed: {e.message}"
                log.warning("prune after backup of %s failed: %s", run.tenant, e.message)

    def _drill(self, run: Run) -> None:
        latest: dict[str, object] = {}
        for rec in self.service.list(run.tenant):  # newest first
            latest.setdefault(rec.database, rec)
        failed = []
        for db, rec in sorted(latest.items()):
            try:
                v = self.service.verify(rec.id, drill=True, actor=ACTOR).last_verification
            except DumpsafeError as e:
                failed.append((db, rec.id, e.message))
                continue
            if v is not None and v.result == "failed":
                failed.append((db, rec.id, v.detail))
            run.backup_ids.append(rec.id)
        run.outcome = "failed" if failed else "ok"
        for db, bid, why in failed:
            self._send(Event(EventKind.DRILL_FAILED, run.tenant, db, f"restore drill of {bid} failed: {why}", backup_id=bid))
        if failed:
            run.detail = "; ".join(f"{db}: {why}" for db, _, why in failed)

    def _history(self, run: Run, *, ok: bool) -> None:
        """The scheduled run's outcome, appended to the tenant's history (issue 15)."""
        from dumpsafe import history

        history_of = getattr(self.service, "history", None)
        if history_of is None:
            return
        started = run.started or self.clock()
        took = (self.clock() - started).total_seconds()
        self._safe(lambda: history_of.append(history.scheduled_run(
            run.tenant, run.fire, started, ok=ok, backup_ids=list(run.backup_ids), detail=run.detail,
            duration_s=round(took, 3))))

    def check_max_age(self) -> list:
        """Alert once per breach (absence of success); re-arm when the breach clears."""
        rows = self.service.status(now=self.clock())
        for row in rows:
            key = (row.tenant, row.database)
            if row.breached and key not in self._alerted:
                self._alerted.add(key)
                self._send(Event(EventKind.MAX_AGE_BREACHED, row.tenant, row.database, row.breach or "max_age breached"))
            elif not row.breached:
                self._alerted.discard(key)
            dkey = ("drill", row.tenant, row.database)  # issue 15: max_drill_age, alerted once per breach
            if getattr(row, "drill_overdue", False) and dkey not in self._alerted:
                self._alerted.add(dkey)
                self._send(Event(EventKind.DRILL_OVERDUE, row.tenant, row.database, row.drill_breach or "max_drill_age breached"))
            elif not getattr(row, "drill_overdue", False):
                self._alerted.discard(dkey)
        return rows

    def _send(self, event: Event) -> None:
        self._safe(lambda: self.notifier.send(event))

    @staticmethod
    def _safe(fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:
            log.exception("scheduler side task failed")


class _TenantLock:
    """A non-blocking flock on state_dir/locks/<kind>-<tenant>.lock (across processes)."""

    def __init__(self, directory: Path, tenant: str, kind: str):
        self.path = directory / f"{kind}-{tenant}.lock"
        self.fd: int | None = None

    def __enter__(self) -> bool:
        private_dir(self.path.parent)  # 0700 (issue 12)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            return False
        return True

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


def run_forever(service, config: Config | None = None) -> Scheduler:
    """Start a scheduler, stop taking work on SIGTERM/SIGINT, let running jobs finish, return."""
    sched = Scheduler(service, config)
    sched.install_signal_handlers()
    sched.start()
    sched.wait()
    sched.stop(graceful=True)
    return sched
