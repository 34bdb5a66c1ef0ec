"""``dumpsafe worker``: run queued jobs (procrastinate) on this host, any number of hosts at once.

Each worker registers with the control-plane database and beats every ``heartbeat_s``. A
worker that dies (kill -9, a lost host) stops beating; once its heartbeat is older than
``stalled_after_s`` any live worker puts its running jobs back in the queue (procrastinate's
stalled-job recovery, checked every ``heartbeat_s``), and the retried attempt sweeps what
the dead one left in the store before it starts (jobs.py). SIGTERM/SIGINT: take no new
job, let the running ones finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from procrastinate import exceptions as pexc

from dumpsafe.jobs import Runtime, set_runtime
from dumpsafe.queue import QUEUE, JobQueue

log = logging.getLogger(__name__)


async def retry_stalled(queue: JobQueue, stalled_after_s: float, every_s: float) -> None:
    """Put the running jobs of workers whose heartbeat lapsed back in the queue, forever."""
    manager = queue.app.job_manager
    while True:
        try:
            for job in await manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=stalled_after_s):
                try:
                    await manager.retry_job(job)
                    log.warning("job %s (%s) of a dead worker is queued again", job.id, job.task_name)
                except pexc.ProcrastinateException:
                    pass  # another worker retried it first
        except pexc.ConnectorException as e:
            log.warning("stalled-job check failed (%s); trying again", e.__cause__ or e)
        await asyncio.sleep(every_s)


async def _main(queue: JobQueue, concurrency: int, name: str, heartbeat_s: float, stalled_after_s: float,
                poll_s: float) -> None:
    async with queue.app.open_async():
        rescuer = asyncio.create_task(retry_stalled(queue, stalled_after_s, heartbeat_s))
        try:
            await queue.app.run_worker_async(
                queues=[QUEUE], concurrency=concurrency, name=name, wait=True, install_signal_handlers=True,
                update_heartbeat_interval=heartbeat_s, stalled_worker_timeout=stalled_after_s,
                fetch_job_polling_interval=poll_s, abort_job_polling_interval=max(poll_s, 1.0),
            )
        finally:
            rescuer.cancel()


def run(config: Any, *, concurrency: int = 1, heartbeat_s: float = 10.0, stalled_after_s: float = 30.0,
        poll_s: float = 2.0) -> None:
    """Run jobs until SIGTERM/SIGINT (see the module docstring)."""
    from dumpsafe.service import BackupService

    queue = JobQueue(config)
    queue.ensure_schema()
    set_runtime(Runtime(service=BackupService(config), queue=queue))
    name = f"{socket.gethostname()}-{os.getpid()}"
    log.info("worker %s: concurrency %d, max_parallel_per_server %d", name, concurrency, config.max_parallel_per_server)
    try:
        asyncio.run(_main(queue, concurrency, name, heartbeat_s, stalled_after_s, poll_s))
    finally:
        set_runtime(None)
