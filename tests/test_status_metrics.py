"""Status rows (absence of success is a breach) and Prometheus metrics scraped over HTTP."""

from __future__ import annotations

import threading
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families

from dumpsafe import metrics
from dumpsafe.config_load import config_from_dict
from dumpsafe.models import Verification
from dumpsafe.status import any_breach, compute
from recordfactory import make_record

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def _cfg(tmp_path: Path):
    return config_from_dict(
        {
            "tenants": {
                "acme": {"databases": ["app", "crm"], "schedule": "0 30 2 * * *", "max_age": "26h"},
                "beta": {"max_age": "1h"},
                "free": {},
            }
        },
        tmp_path / "dumpsafe.toml",
    )


def _records():
    fresh = make_record(NOW - timedelta(hours=3), size_bytes=5000)
    fresh = fresh.model_copy(
        update={
            "duration_s": 12.5,
            "last_verification": Verification(at=NOW - timedelta(hours=2), result="passed", detail="ok", kind="drill", duration_s=42.0),
        }
    )
    older = make_record(NOW - timedelta(days=2), size_bytes=4000)
    stale = make_record(NOW - timedelta(hours=30), database="crm", size_bytes=100)
    return [fresh, older, stale]


EVENTS = [
    {"time": "2026-06-01T08:00:00Z", "action": "create", "tenant": "acme", "database": "crm", "outcome": "failure", "error": "connection refused"},
    {"time": "2026-06-01T09:00:00Z", "action": "create", "tenant": "acme", "database": "crm", "outcome": "failure", "error": "disk full"},
    {"time": "2026-06-01T09:30:00Z", "action": "create", "tenant": "acme", "database": "app", "outcome": "success"},
    {"time": "2026-06-01T09:40:00Z", "action": "restore", "tenant": "acme", "database": "app", "outcome": "failure", "error": "x"},
]


def test_status_rows(tmp_path):
    rows = {(r.tenant, r.database): r for r in compute(_cfg(tmp_path), _records(), EVENTS, NOW)}
    assert sorted(rows) == [("acme", "app"), ("acme", "crm"), ("beta", None), ("free", None)]

    app = rows[("acme", "app")]
    assert (app.backups, app.last_size_bytes, app.last_duration_s) == (2, 5000, 12.5)
    assert app.last_success_age_s == 3 * 3600
    assert app.last_drill_result == "passed" and app.last_drill_rto_s == 42.0
    assert app.next_run_at == datetime(2026, 6, 2, 2, 30, tzinfo=timezone.utc)
    assert not app.breached and app.failures == 0 and app.last_failure_error is None

    crm = rows[("acme", "crm")]
    assert crm.breached
    assert crm.breach == "acme/crm: last successful backup is 1d 6h old, more than max_age 1d 2h"
    assert (crm.failures, crm.last_failure_error) == (2, "disk full")
    assert crm.last_failure_at == datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)

    # absence of success: a tenant with max_age and no backup at all is in breach
    assert rows[("beta", None)].breached and rows[("beta", None)].breach == "beta has no successful backup (max_age 1h)"
    assert not rows[("free", None)].breached  # no max_age, nothing to breach
    assert any_breach(rows.values())
    assert app.to_json_dict()["last_success_at"] == "2026-06-01T09:00:00.000000Z"


def test_status_for_one_tenant(tmp_path):
    rows = compute(_cfg(tmp_path), _records(), EVENTS, NOW, tenant="beta")
    assert [(r.tenant, r.database) for r in rows] == [("beta", None)]


def _by_name(text: str) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[(s.labels.get("tenant"), s.labels.get("database"))] = s.value
    return out


def test_prometheus_text(tmp_path):
    rows = compute(_cfg(tmp_path), _records(), EVENTS, NOW)
    m = _by_name(metrics.render(rows))
    assert m["dumpsafe_last_success_timestamp_seconds"][("acme", "app")] == (NOW - timedelta(hours=3)).timestamp()
    assert m["dumpsafe_last_backup_size_bytes"][("acme", "crm")] == 100
    assert m["dumpsafe_last_backup_duration_seconds"][("acme", "app")] == 12.5
    assert m["dumpsafe_backup_failures_total"][("acme", "crm")] == 2
    assert m["dumpsafe_last_drill_success"] == {("acme", "app"): 1.0}
    assert m["dumpsafe_last_drill_rto_seconds"] == {("acme", "app"): 42.0}
    assert m["dumpsafe_max_age_breached"] == {("acme", "app"): 0, ("acme", "crm"): 1, ("beta", ""): 1, ("free", ""): 0}
    # a private registry: nothing from the process-wide default registry leaks in
    assert "process_cpu_seconds_total" not in m and "python_info" not in m


def test_metrics_scraped_over_http_follow_the_state(tmp_path):
    cfg = _cfg(tmp_path)
    records = _records()
    reg = metrics.registry(lambda: compute(cfg, records, EVENTS, NOW))
    assert reg is not REGISTRY

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, make_wsgi_app(reg), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        first = _by_name(urllib.request.urlopen(url, timeout=10).read().decode())
        assert first["dumpsafe_backups"][("acme", "crm")] == 1
        records.append(make_record(NOW - timedelta(minutes=5), database="crm", size_bytes=150))
        second = _by_name(urllib.request.urlopen(url, timeout=10).read().decode())
        assert second["dumpsafe_backups"][("acme", "crm")] == 2
        assert second["dumpsafe_max_age_breached"][("acme", "crm")] == 0
    finally:
        server.shutdown()
        server.server_close()
