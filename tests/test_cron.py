"""Schedule parsing: 5 fields, 6 with seconds FIRST, @descriptors, timezones, bad input."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from dumpsafe.config_load import config_from_dict
from dumpsafe.cron import parse_schedule
from dumpsafe.errors import ConfigError


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


BASE = utc(2026, 1, 1, 0, 0, 0)  # a Thursday

# schedule, timezone, expected next fire times after BASE (worked out by hand)
KNOWN = [
    ("30 2 * * *", None, [utc(2026, 1, 1, 2, 30), utc(2026, 1, 2, 2, 30)]),
    # ofelia style: seconds first. croniter alone would read "0 30 2 * * *" as minute 0,
    # hour 30 (invalid) -- the rotation is what makes this 02:30:00.
    ("0 30 2 * * *", None, [utc(2026, 1, 1, 2, 30), utc(2026, 1, 2, 2, 30)]),
    ("15 30 2 * * *", None, [utc(2026, 1, 1, 2, 30, 15), utc(2026, 1, 2, 2, 30, 15)]),
    ("*/2 * * * * *", None, [utc(2026, 1, 1, 0, 0, 2), utc(2026, 1, 1, 0, 0, 4), utc(2026, 1, 1, 0, 0, 6)]),
    ("*/20 * * * * *", None, [utc(2026, 1, 1, 0, 0, 20), utc(2026, 1, 1, 0, 0, 40), utc(2026, 1, 1, 0, 1, 0)]),
    ("0 0 * * 1", None, [utc(2026, 1, 5), utc(2026, 1, 12)]),  # Mondays
    ("0 */6 * * *", None, [utc(2026, 1, 1, 6), utc(2026, 1, 1, 12)]),
    ("@daily", None, [utc(2026, 1, 2), utc(2026, 1, 3)]),
    ("@hourly", None, [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]),
    ("@weekly", None, [utc(2026, 1, 4), utc(2026, 1, 11)]),  # Sundays
    ("@monthly", None, [utc(2026, 2, 1), utc(2026, 3, 1)]),
    ("@yearly", None, [utc(2027, 1, 1), utc(2028, 1, 1)]),
    # 02:30 in Berlin is 01:30 UTC in winter (CET, +01:00)
    ("0 30 2 * * *", "Europe/Berlin", [utc(2026, 1, 1, 1, 30), utc(2026, 1, 2, 1, 30)]),
    ("30 2 * * *", "America/New_York", [utc(2026, 1, 1, 7, 30), utc(2026, 1, 2, 7, 30)]),
]


@pytest.mark.parametrize("text, tz, expected", KNOWN, ids=[f"{k[0]} {k[1] or 'UTC'}" for k in KNOWN])
def test_known_next_fire_times(text, tz, expected):
    sched = parse_schedule(text, tz)
    assert sched.upcoming(BASE, len(expected)) == expected
    assert sched.next_after(BASE) == expected[0]
    assert all(t.tzinfo == timezone.utc for t in expected)


def test_six_fields_put_seconds_first_and_croniter_gets_them_last():
    sched = parse_schedule("5 30 2 * * *")
    assert sched.seconds == "5" and sched.fields == ("30", "2", "*", "*", "*")
    assert sched.croniter_expr == "30 2 * * * 5"
    assert parse_schedule("0 30 2 * * *").croniter_expr == "30 2 * * *"


def test_prev_before_counts_a_fire_exactly_at_the_moment():
    sched = parse_schedule("0 30 2 * * *")
    assert sched.prev_before(utc(2026, 1, 1, 2, 30)) == utc(2026, 1, 1, 2, 30)
    assert sched.prev_before(utc(2026, 1, 1, 2, 29, 59)) == utc(2025, 12, 31, 2, 30)


def test_daylight_saving_in_the_schedule_timezone():
    berlin = parse_schedule("0 30 2 * * *", "Europe/Berlin")
    # spring forward (29 March 2026): 02:30 does not exist; it runs once, at 03:00 CEST
    assert berlin.upcoming(utc(2026, 3, 28, 12), 2) == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    # fall back (25 October 2026): 02:30 happens twice; a fixed-hour job runs once
    assert berlin.upcoming(utc(2026, 10, 24, 12), 2) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    # a wildcard-hour job keeps firing every real hour through the repeated hour
    hourly = parse_schedule("0 * * * *", "Europe/Berlin")
    assert hourly.upcoming(utc(2026, 10, 24, 23, 30), 3) == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)]


@pytest.mark.parametrize(
    "text, tz, fragment",
    [
        ("", None, "empty schedule"),
        ("* * *", None, "has 3 fields; use 5"),
        ("0 0 0 * * * *", None, "has 7 fields"),
        ("61 * * * *", None, "the minute field '61'"),
        ("0 61 * * * *", None, "the minute field '61'"),
        ("75 * * * * *", None, "the second field '75'"),
        ("0 25 * * *", None, "the hour field '25'"),
        ("* * * 13 *", None, "the month field '13'"),
        ("* * * * funday", None, "the day-of-week field 'funday'"),
        ("0 0 30 2 *", None, "never fires"),
        ("@reboot", None, "unsupported schedule '@reboot'"),
        ("@daily", "Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
    ],
)
def test_bad_schedules_say_what_is_wrong(text, tz, fragment):
    with pytest.raises(ValueError) as exc:
        parse_schedule(text, tz)
    assert fragment in str(exc.value)


def test_config_names_the_file_and_key(tmp_path: Path):
    path = tmp_path / "dumpsafe.toml"
    cases = [
        ({"schedule": "0 61 * * * *"}, "tenants.acme.schedule: invalid schedule '0 61 * * * *': the minute field '61'"),
        ({"drill_schedule": "@sometimes"}, "tenants.acme.drill_schedule: unsupported schedule '@sometimes'"),
        ({"timezone": "Europe/Nowhere"}, "tenants.acme.timezone: unknown timezone 'Europe/Nowhere'"),
    ]
    for tenant, message in cases:
        with pytest.raises(ConfigError) as exc:
            config_from_dict({"tenants": {"acme": tenant}}, path)
        assert str(exc.value).startswith(f"{path}: {message}")


def test_config_gives_the_tenant_schedule_in_its_timezone(tmp_path: Path):
    cfg = config_from_dict(
        {"tenants": {"acme": {"schedule": "0 30 2 * * *", "timezone": "Europe/Berlin", "drill_schedule": "@weekly"}}},
        tmp_path / "dumpsafe.toml",
    )
    t = cfg.tenants["acme"]
    assert t.parsed_schedule().next_after(BASE) == utc(2026, 1, 1, 1, 30)
    assert t.parsed_schedule(drill=True).next_after(BASE) == utc(2026, 1, 3, 23, 0)  # Sunday 00:00 Berlin
