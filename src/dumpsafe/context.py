"""What the flows (restore, selective restore, export, verify, report, recovery) use of the
service, typed: a structural Protocol that ``service.BackupService`` satisfies.

The flows receive this instead of ``Any``: the interface they depend on is written down once and
checked (tests/test_context.py), and they never import service.py (which imports them)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:  # types only: the modules below import the flows that take this context
    from dumpsafe.audit import AuditLog
    from dumpsafe.config import Config
    from dumpsafe.engines.postgres import PgTarget
    from dumpsafe.errors import DumpsafeError
    from dumpsafe.history import History
    from dumpsafe.catalog import Catalog
    from dumpsafe.models import BackupRecord
    from dumpsafe.storage import Store


@runtime_checkable
class ServiceContext(Protocol):
    """The service's parts a flow may use: configuration, audit, history, time, stores and their
    catalogs, records, database targets and the client tools that match a server."""

    config: Config
    audit: AuditLog
    state_dir: Path
    clock: Callable[[], datetime]

    @property
    def history(self) -> History: ...

    def store(self, name: str) -> Store: ...

    def catalog(self, store_name: str) -> Catalog: ...

    def get(self, backup_id: str, store: str | None = None) -> BackupRecord: ...

    def list(self, tenant: str | None = None, database: str | None = None,
             store: str | None = None) -> list[BackupRecord]: ...

    def save_record(self, record: BackupRecord) -> None: ...

    def pg_target(self, tenant: str) -> PgTarget: ...

    def pg_tool(self, target: PgTarget, name: str, server_major: int | None, *,
                error: type[DumpsafeError] = ...) -> tuple[str, str]: ...

    def sweep_store(self, st: Store) -> None: ...
