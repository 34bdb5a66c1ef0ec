"""What every CLI command module shares: the per-invocation state (config, service: local
or a REST client), confirmation, and the common options and arguments."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from dumpsafe.errors import RefusedError, UsageError
from dumpsafe.fronts import output

if TYPE_CHECKING:  # config and models load pydantic: imported when a command needs them, not for --help
    from dumpsafe.config import Config


@dataclass
class State:
    config_path: Optional[Path] = None
    server: Optional[str] = None
    token: Optional[str] = field(default=None, repr=False)
    _config: Optional[Config] = None
    _service: Any = None

    def config(self, reading: bool = False) -> Config:
        """The config; ``reading`` commands (list, get, status) never notify, so skip checking notify URLs."""
        if self._config is None:
            from dumpsafe.config_load import load_config

            self._config = load_config(self.config_path, check_notify=not reading)
        return self._config

    def service(self, reading: bool = False) -> Any:
        """The service the commands call: local, or a REST client when --server is given."""
        if self._service is None and self.server:  # the same commands over REST
            from dumpsafe.fronts.remote import RemoteService

            self._service = RemoteService(self.server, self.token)
        if self._service is None:
            from dumpsafe.service import BackupService

            self._service = BackupService(self.config(reading))
        return self._service


def validate_backup_id(value: str) -> str:
    from dumpsafe.models import validate_backup_id as check

    return check(value)


def state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State)


def local_state(ctx: typer.Context, command: str) -> State:
    """The state, refusing --server: the command runs on the host with the config."""
    st = state(ctx)
    if st.server:
        raise UsageError(f"'dumpsafe {command}' runs on the host with the config; drop --server/DUMPSAFE_SERVER")
    return st


def confirm(question: str, yes: bool, refusal: str) -> None:
    """Ask on a terminal; without one, only --yes proceeds."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise RefusedError(refusal)
    if not typer.confirm(question, default=False):
        raise RefusedError("cancelled; nothing was changed")


def warn_damaged(damaged) -> None:
    """One stderr line per damaged record (stdout, and so --json, stays unchanged)."""
    for d in damaged:
        output.info(d.warning())


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
WideOpt = Annotated[bool, typer.Option("--wide", "-w", help="Show every column in full, whatever the terminal width.")]
IdArg = Annotated[str, typer.Argument(help="Backup ID (see 'dumpsafe backup list').", show_default=False, metavar="ID")]


