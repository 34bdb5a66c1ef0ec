"""Prometheus metrics, per tenant and database, derived from status rows.

Metrics are computed at scrape time from the same status rows as ``dumpsafe status``
(records in the store + the audit log), so ``/metrics`` of ``serve`` and
``status --format prometheus`` (for node_exporter's textfile collector) agree and
survive restarts. Each exposition uses its own CollectorRegistry, never the global one;
serve registers ``StatusCollector(service.status)`` in the registry behind /metrics.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dumpsafe.status import DatabaseStatus

_LABELS = ["tenant", "database"]


def _labels(row: DatabaseStatus) -> list[str]:
    return [row.tenant, row.database or ""]


class StatusCollector(Collector):
    """Turns status rows into metric families each time the registry is collected."""

    def __init__(self, rows: Callable[[], Iterable[DatabaseStatus]]):
        self._rows = rows

    def collect(self) -> Iterator[Metric]:
        rows = list(self._rows())
        gauges = {
            "last_success": GaugeMetricFamily(
                "dumpsafe_last_success_timestamp_seconds", "Unix time of the newest completed backup", labels=_LABELS
            ),
            "age": GaugeMetricFamily(
                "dumpsafe_last_success_age_seconds", "Seconds since the newest completed backup", labels=_LABELS
            ),
            "duration": GaugeMetricFamily(
                "dumpsafe_last_backup_duration_seconds", "Duration of the newest completed backup", labels=_LABELS
            ),
            "size": GaugeMetricFamily(
                "dumpsafe_last_backup_size_bytes", "Stored size of the newest completed backup", labels=_LABELS
            ),
            "backups": GaugeMetricFamily("dumpsafe_backups", "Completed backups in the catalog", labels=_LABELS),
            "drill_ok": GaugeMetricFamily(
                "dumpsafe_last_drill_success", "1 when the latest restore drill passed, 0 when it failed", labels=_LABELS
            ),
            "drill_at": GaugeMetricFamily(
                "dumpsafe_last_drill_timestamp_seconds", "Unix time of the latest restore drill", labels=_LABELS
            ),
            "rto": GaugeMetricFamily(
                "dumpsafe_last_drill_rto_seconds", "Restore time measured by the latest drill", labels=_LABELS
            ),
            "next": GaugeMetricFamily(
                "dumpsafe_next_run_timestamp_seconds", "Unix time of the next scheduled backup", labels=_LABELS
            ),
            "max_age": GaugeMetricFamily("dumpsafe_max_age_seconds", "Configured max_age", labels=_LABELS),
            "breached": GaugeMetricFamily(
                "dumpsafe_max_age_breached", "1 when the newest success is older than max_age (or missing)", labels=_LABELS
            ),
        }
        failures = CounterMetricFamily(
            "dumpsafe_backup_failures", "Failed backup attempts recorded in the audit log", labels=_LABELS
        )
        for row in rows:
            lv = _labels(row)
            gauges["backups"].add_metric(lv, row.backups)
            gauges["breached"].add_metric(lv, 1.0 if row.breached else 0.0)
            failures.add_metric(lv, row.failures)
            if row.last_success_at is not None:
                gauges["last_success"].add_metric(lv, row.last_success_at.timestamp())
            if row.last_success_age_s is not None:
                gauges["age"].add_metric(lv, row.last_success_age_s)
            if row.last_duration_s is not None:
                gauges["duration"].add_metric(lv, row.last_duration_s)
            if row.last_size_bytes is not None:
                gauges["size"].add_metric(lv, row.last_size_bytes)
            if row.last_drill_result is not None:
                gauges["drill_ok"].add_metric(lv, 1.0 if row.last_drill_result == "passed" else 0.0)
            if row.last_drill_at is not None:
                gauges["drill_at"].add_metric(lv, row.last_drill_at.timestamp())
            if row.last_drill_rto_s is not None:
                gauges["rto"].add_metric(lv, row.last_drill_rto_s)
            if row.next_run_at is not None:
                gauges["next"].add_metric(lv, row.next_run_at.timestamp())
            if row.max_age_s is not None:
                gauges["max_age"].add_metric(lv, row.max_age_s)
        yield from gauges.values()
        yield failures


def registry(rows: Callable[[], Iterable[DatabaseStatus]]) -> CollectorRegistry:
    """A private registry whose metrics are recomputed from ``rows()`` on every scrape."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StatusCollector(rows))
    return reg


def render(rows: Iterable[DatabaseStatus]) -> str:
    """Prometheus text exposition of the given status rows."""
    fixed = list(rows)
    return generate_latest(registry(lambda: fixed)).decode("utf-8")
