"""Alerts through apprise URLs from the config (``notify = [...]``, global and per tenant).

Four events: a backup failed, a restore drill failed, a tenant/database has had no
successful backup for longer than ``max_age`` (the absence of success), and an anomaly
(a dump that shrank suspiciously, see anomaly.py). Delivery failures are logged and
reported as False, never raised: an alert must not break the backup that raised it.
Notification URLs often carry tokens, so they are never echoed in errors or logs.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator

import apprise

log = logging.getLogger(__name__)


class EventKind(str, Enum):
    BACKUP_FAILED = "backup_failed"
    DRILL_FAILED = "drill_failed"
    MAX_AGE_BREACHED = "max_age_breached"
    DRILL_OVERDUE = "drill_overdue"  # issue 15: no drill passed within max_drill_age
    ANOMALY = "anomaly"


_TITLES = {
    EventKind.BACKUP_FAILED: "backup failed",
    EventKind.DRILL_FAILED: "restore drill failed",
    EventKind.MAX_AGE_BREACHED: "no recent successful backup",
    EventKind.DRILL_OVERDUE: "no recent passed restore drill",
    EventKind.ANOMALY: "backup anomaly",
}


@dataclass(frozen=True)
class Event:
    """One thing worth waking someone for. ``message`` is one secret-free sentence."""

    kind: EventKind
    tenant: str
    database: str | None
    message: str
    backup_id: str | None = None
    details: tuple[str, ...] = field(default=())

    @property
    def title(self) -> str:
        where = f"{self.tenant}/{self.database}" if self.database else self.tenant
        return f"dumpsafe: {_TITLES[self.kind]} ({where})"

    @property
    def body(self) -> str:
        lines = [self.message, "", f"event: {self.kind.value}", f"tenant: {self.tenant}"]
        if self.database:
            lines.append(f"database: {self.database}")
        if self.backup_id:
            lines.append(f"backup: {self.backup_id}")
        lines.extend(self.details)
        return "\n".join(lines)

    @property
    def notify_type(self) -> apprise.NotifyType:
        return apprise.NotifyType.WARNING if self.kind is EventKind.ANOMALY else apprise.NotifyType.FAILURE


@contextlib.contextmanager
def _quiet_apprise() -> Iterator[None]:
    """apprise logs bad URLs verbatim; URLs may hold tokens."""
    logger = logging.getLogger("apprise")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_urls(urls: list[str]) -> None:
    """Raise ValueError naming the position of the first URL apprise cannot use."""
    for i, url in enumerate(urls):
        with _quiet_apprise():
            ok = isinstance(url, str) and apprise.Apprise.instantiate(url) is not None
        if not ok:
            raise ValueError(
                f"entry {i} is not a notification URL apprise understands "
                "(e.g. json://host:port/path, mailto://..., slack://...; see the apprise documentation)"
            )


class Notifier:
    """Sends events to the apprise URLs configured for the event's tenant."""

    def __init__(self, config):
        self.config = config

    def urls_for(self, tenant: str) -> list[str]:
        if tenant in self.config.tenants:
            return self.config.notify_for(tenant)
        return list(self.config.notify)

    def send(self, event: Event) -> bool:
        """Deliver to every URL; True when all accepted it (or none are configured)."""
        urls = self.urls_for(event.tenant)
        if not urls:
            return True
        ap = apprise.Apprise()
        with _quiet_apprise():
            for url in urls:
                ap.add(url)
        try:
            result = ap.notify(body=event.body, title=event.title, notify_type=event.notify_type)
        except Exception as e:  # a broken notifier must not break a backup
            log.warning("notification %s for %s could not be sent: %s", event.kind.value, event.tenant, type(e).__name__)
            return False
        if not result:
            log.warning("notification %s for %s was not accepted by every target", event.kind.value, event.tenant)
        return bool(result)
