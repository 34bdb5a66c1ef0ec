"""Alerts reach a real local HTTP endpoint through apprise json://; anomaly detection."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dumpsafe import anomaly
from dumpsafe.config_load import config_from_dict
from dumpsafe.errors import ConfigError
from dumpsafe.notify import Event, EventKind, Notifier
from httpreceiver import Receiver
from recordfactory import make_record


def _config(tmp_path: Path, global_urls: list[str], tenant_urls: list[str]):
    return config_from_dict(
        {"notify": global_urls, "tenants": {"acme": {"notify": tenant_urls}, "quiet": {}}},
        tmp_path / "dumpsafe.toml",
    )


def test_events_are_delivered_to_global_and_tenant_urls(tmp_path):
    with Receiver() as ops, Receiver() as team:
        cfg = _config(tmp_path, [f"json://127.0.0.1:{ops.port}/ops"], [f"json://127.0.0.1:{team.port}/acme"])
        notifier = Notifier(cfg)
        event = Event(
            EventKind.BACKUP_FAILED,
            "acme",
            "app",
            "backup of acme/app failed: connection refused (is the database up?)",
        )
        assert notifier.send(event) is True
        assert notifier.send(Event(EventKind.MAX_AGE_BREACHED, "quiet", "db", "quiet/db: no backup for 2d")) is True
    assert ops.paths == ["/ops", "/ops"] and team.paths == ["/acme"]
    first = ops.received[0]
    assert first == team.received[0]
    assert first["title"] == "dumpsafe: backup failed (acme/app)"
    assert first["type"] == "failure"
    assert first["message"].splitlines()[0] == "backup of acme/app failed: connection refused (is the database up?)"
    assert "event: backup_failed" in first["message"] and "database: app" in first["message"]
    assert ops.received[1]["title"] == "dumpsafe: no recent successful backup (quiet/db)"


def test_anomaly_is_a_warning_and_lists_findings(tmp_path):
    with Receiver() as ops:
        cfg = _config(tmp_path, [f"json://127.0.0.1:{ops.port}/"], [])
        ok = Notifier(cfg).send(
            Event(EventKind.ANOMALY, "acme", "app", "backup looks wrong", backup_id="acme.app.x", details=("table public.users fell 90 %",))
        )
    assert ok is True
    (got,) = ops.received
    assert got["type"] == "warning"
    assert "backup: acme.app.x" in got["message"] and "table public.users fell 90 %" in got["message"]


def test_a_failing_endpoint_reports_false_without_raising(tmp_path):
    with Receiver(status=500) as broken:
        cfg = _config(tmp_path, [f"json://127.0.0.1:{broken.port}/"], [])
        assert Notifier(cfg).send(Event(EventKind.DRILL_FAILED, "acme", "app", "drill failed")) is False
    assert len(broken.received) == 1


def test_no_urls_is_not_a_failure(tmp_path):
    cfg = _config(tmp_path, [], [])
    assert Notifier(cfg).send(Event(EventKind.DRILL_FAILED, "quiet", None, "drill failed")) is True


def test_a_bad_url_is_a_config_error_that_does_not_echo_it(tmp_path):
    path = tmp_path / "dumpsafe.toml"
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"tenants": {"acme": {"notify": ["json://ok/", "nosuch://user:s3cret@host/"]}}}, path)
    assert str(exc.value).startswith(f"{path}: tenants.acme.notify: entry 1 is not a notification URL")
    assert "s3cret" not in str(exc.value)


# ---- anomaly detection -----------------------------------------------------------------------

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


def _history(sizes, users):
    return [
        make_record(T0 + timedelta(days=i), size_bytes=s, tables={"public.users": u, "public.orders": 500})
        for i, (s, u) in enumerate(zip(sizes, users))
    ]


def _new(size, tables, day=10):
    return make_record(T0 + timedelta(days=day), size_bytes=size, tables=tables)


def test_normal_backup_is_not_an_anomaly():
    hist = _history([1000, 1100, 900, 1050, 1000], [100, 101, 102, 103, 104])
    assert anomaly.detect(_new(980, {"public.users": 105, "public.orders": 510}), hist, 0.5) == []


def test_size_drop_against_median_of_last_five():
    # the oldest (huge) backup is outside the window of 5: the median is 1000, not higher
    hist = _history([100_000, 1000, 1100, 900, 1050, 1000], [100] * 6)
    (finding,) = anomaly.detect(_new(400, {"public.users": 100, "public.orders": 500}), hist, 0.5)
    assert finding.startswith("size fell 60 %: 400 bytes against a median of 1000 over the last 5 backups")
    # 49 % down is within a 50 % threshold; 0.4 makes it an anomaly
    assert anomaly.detect(_new(510, {"public.users": 100, "public.orders": 500}), hist, 0.5) == []
    assert len(anomaly.detect(_new(510, {"public.users": 100, "public.orders": 500}), hist, 0.4)) == 1


def test_row_count_drop_and_missing_table():
    hist = _history([1000] * 5, [1000, 1000, 990, 1010, 1000])
    found = anomaly.detect(_new(1000, {"public.users": 10}), hist, 0.5)
    assert found == [
        "table public.orders fell 100 %: 0 rows against a median of 500 (table missing from this backup)",
        "table public.users fell 99 %: 10 rows against a median of 1000",
    ]


def test_only_earlier_backups_of_the_same_database_count():
    hist = _history([1000] * 5, [100] * 5)
    other_db = [make_record(T0, database="other", size_bytes=10**9)]
    later = [make_record(T0 + timedelta(days=20), size_bytes=10**9)]
    new = _new(1000, {"public.users": 100, "public.orders": 500})
    assert anomaly.detect(new, hist + other_db + later, 0.5) == []
    assert anomaly.detect(new, [], 0.5) == []
