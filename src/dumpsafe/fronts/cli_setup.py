"""CLI commands for setting dumpsafe up: ``init``, ``config check`` and ``schedule export``.

cli.py registers them; each runs where the config file is (never with --server).
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from dumpsafe.fronts import output
from dumpsafe.fronts.cli_common import JsonOpt, WideOpt

schedule_app = typer.Typer(help="Export the tenants' schedules for cron, systemd or Kubernetes.", no_args_is_help=True)


class ScheduleFormat(str, Enum):
    cron = "cron"
    systemd = "systemd"
    kubernetes = "kubernetes"


@schedule_app.command("export")
def schedule_export_cmd(
    ctx: typer.Context,
    fmt: Annotated[ScheduleFormat, typer.Option("--format", help="cron, systemd or kubernetes.")] = ScheduleFormat.cron,
    command: Annotated[Optional[str], typer.Option(
        "--command", help="How cron/systemd should call dumpsafe [default: this dumpsafe's absolute path].")] = None,
    output_dir: Annotated[Optional[Path], typer.Option(
        "--output-dir", help="systemd: write each .service and .timer file into DIR instead of printing them.")] = None,
    image: Annotated[Optional[str], typer.Option("--image", help="kubernetes: the dumpsafe image [default: dumpsafe:VERSION].")] = None,
    namespace: Annotated[Optional[str], typer.Option("--namespace", help="kubernetes: the namespace of the CronJobs.")] = None,
) -> None:
    """Print crontab lines, systemd service + timer units, or a Kubernetes CronJob per tenant."""
    from dumpsafe.errors import UsageError
    from dumpsafe.schedule_export import export, write_units

    st = ctx.obj
    if st.server:
        raise UsageError("'dumpsafe schedule export' reads the config on the host that runs the backups; "
                         "run it there without --server/DUMPSAFE_SERVER")
    if output_dir is not None and fmt is not ScheduleFormat.systemd:
        raise UsageError("--output-dir is for --format systemd (cron and kubernetes print to stdout)")
    cfg = st.config()
    path = (cfg.source or Path("dumpsafe.toml")).resolve()
    try:
        result = export(cfg, path, fmt.value, command or _own_command(), image=image, namespace=namespace)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if output_dir is not None:
        for written in write_units(result, output_dir):
            output.info(f"wrote {written}")
        timers = " ".join(n for n in result.files if n.endswith(".timer"))
        output.info(f"then, as root: cp {output_dir}/* /etc/systemd/system/ && systemctl daemon-reload "
                    f"&& systemctl enable --now {timers}")
    else:
        sys.stdout.write(result.text)
    for w in result.warnings:
        output.info(f"warning: {w}")


def _own_command() -> str:
    """This dumpsafe by absolute path (cron's PATH is short), or this Python running it."""
    import shlex
    import shutil

    beside = Path(sys.executable).parent / "dumpsafe"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("dumpsafe")
    if found:
        return str(Path(found).resolve())
    return shlex.join([sys.executable, "-m", "dumpsafe"])


config_app = typer.Typer(help="Check the config file: every tenant's connection and every store.", no_args_is_help=True)


def init_cmd(ctx: typer.Context) -> None:
    """Write a commented sample dumpsafe.toml (to --config, $DUMPSAFE_CONFIG or ./dumpsafe.toml); never overwrites."""
    from dumpsafe.config_load import config_path
    from dumpsafe.initconfig import write_sample

    path = write_sample(config_path(ctx.obj.config_path))
    output.info(f"wrote {path}; edit it, then run 'dumpsafe config check'")


@config_app.command("check")
def config_check_cmd(ctx: typer.Context, as_json: JsonOpt = False, wide: WideOpt = False) -> None:
    """Validate the config, then test each tenant (password, connection, pg_dump version, databases, uploads)
    and each store (reachable and writable). Exit 1 on any failure."""
    from dumpsafe.configcheck import run_checks
    from dumpsafe.errors import UsageError

    st = ctx.obj
    if st.server:
        raise UsageError("'dumpsafe config check' runs where the config is; drop --server/DUMPSAFE_SERVER")
    checks = run_checks(st.service())
    if as_json:
        output.emit_json([c.to_json_dict() for c in checks])
    else:
        output.show_checks(checks, wide)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
