"""The unattended part of `dumpsafe demo`: a seconds-level schedule firing real backups,
prune removing by policy after each success, and `status` reporting (issue 5)."""

from __future__ import annotations

import os
import sys
import time

from dumpsafe.config_load import load_config
from dumpsafe.scheduler import Scheduler
from dumpsafe.service import BackupService


def schedule_steps(demo, backups: int = 3, timeout: float = 90.0) -> None:
    """Run the built-in scheduler (as `dumpsafe serve` does) until it made ``backups`` backups."""
    demo.step("Schedule: a backup every 2 seconds (6 fields, seconds FIRST), keep the last 2")
    demo.write_config('schedule = "*/2 * * * * *"\n\n[scheduler]\ngrace = "1s"\n')
    text = demo.config.read_text().replace("retention = { last = 3, daily = 7 }", "retention = { last = 2 }")
    demo.config.write_text(text)
    demo.run("schedule", "export", "--format", "systemd")
    demo.run("prune", "demo", "--dry-run")

    # the scheduler runs in this process: give it the password the CLI gets from demo.env
    os.environ.update({k: v for k, v in demo.env.items() if k not in os.environ})
    service = BackupService(load_config(demo.config))
    sched = Scheduler(service, check_interval=3600).start()
    demo.console.print(f"scheduler started; waiting for {backups} scheduled backups ...")
    end = time.monotonic() + timeout
    try:
        while sum(r.outcome == "ok" for r in sched.runs) < backups and time.monotonic() < end:
            time.sleep(0.2)
    finally:
        sched.stop(graceful=True)
    for r in sched.runs:
        if r.outcome == "ok":
            pruned = f", pruned {', '.join(r.pruned)}" if r.pruned else ""
            demo.console.print(f"  fired {r.fire:%H:%M:%S}: backup {', '.join(r.backup_ids)}{pruned}", highlight=False)
        elif r.outcome == "failed":
            demo.console.print(f"  fired {r.fire:%H:%M:%S}: FAILED {r.detail}", highlight=False)
    if sum(r.outcome == "ok" for r in sched.runs) < backups:
        raise SystemExit(f"demo: the scheduler made fewer than {backups} backups in {timeout:.0f}s")

    demo.step("After the scheduled runs: only what the policy keeps is left")
    demo.run("backup", "list", "demo")
    demo.step("Status: last success, next run, max_age (exit 1 on a breach, for cron and monitoring)")
    demo.run("status")
    demo.console.print("[bold cyan]$ dumpsafe status --format prometheus | grep -v '^#'[/]", highlight=False)
    metrics = demo.run("status", "--format", "prometheus", show=False).stdout
    sys.stdout.write("".join(l + "\n" for l in metrics.splitlines() if not l.startswith("#")))
