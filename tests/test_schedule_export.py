"""schedule export: crontab lines and systemd units; OnCalendar checked by systemd itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from dumpsafe.config_load import config_from_dict
from dumpsafe.cron import parse_schedule
from dumpsafe.schedule_export import export, on_calendar

CONFIG = Path("/etc/dumpsafe/dumpsafe.toml")


def _cfg(tmp_path: Path, tenants: dict, **top):
    return config_from_dict({"stores": {"local": {"kind": "local", "path": "b"}}, "tenants": tenants, **top}, tmp_path / "d.toml")


def test_cron_lines(tmp_path):
    cfg = _cfg(
        tmp_path,
        {
            "acme": {"schedule": "0 30 2 * * *", "retention": {"daily": 7}},
            "beta": {"schedule": "15 4 * * 1-5", "timezone": "Europe/Berlin"},
            "idle": {},
        },
    )
    out = export(cfg, CONFIG, "cron")
    lines = [l for l in out.text.splitlines() if l and not l.startswith("#")]
    assert lines == [
        "CRON_TZ=UTC",
        "30 2 * * * dumpsafe --config /etc/dumpsafe/dumpsafe.toml backup create acme"
        " && dumpsafe --config /etc/dumpsafe/dumpsafe.toml prune acme",
        "CRON_TZ=Europe/Berlin",
        "15 4 * * 1-5 dumpsafe --config /etc/dumpsafe/dumpsafe.toml backup create beta",
    ]
    assert out.warnings == ["tenant idle: no schedule, not exported"]


def test_cron_says_clearly_when_seconds_are_lost(tmp_path):
    cfg = _cfg(tmp_path, {"fast": {"schedule": "*/2 * * * * *"}, "odd": {"schedule": "30 0 3 * * *"}})
    out = export(cfg, Path("/srv/my conf/d%.toml"), "cron")
    assert len(out.warnings) == 2
    assert out.warnings[0].startswith("tenant fast: schedule '*/2 * * * * *' fires at second(s) '*/2' but cron has no seconds field")
    assert "# WARNING: tenant odd:" in out.text
    # the shell sees one quoted argument; cron's % is escaped
    assert "* * * * * dumpsafe --config '/srv/my conf/d\\%.toml' backup create fast" in out.text.splitlines()


def test_systemd_units(tmp_path):
    cfg = _cfg(
        tmp_path,
        {"acme": {"schedule": "0 30 2 * * *", "retention": {"last": 3}, "drill_schedule": "@weekly"}},
        scheduler={"jitter": "30s"},
    )
    out = export(cfg, CONFIG, "systemd")
    assert sorted(out.files) == ["dumpsafe-backup-acme.service", "dumpsafe-backup-acme.timer", "dumpsafe-failure@.service"]
    service = out.files["dumpsafe-backup-acme.service"]
    timer = out.files["dumpsafe-backup-acme.timer"]
    assert "Type=oneshot" in service.splitlines()
    assert "ExecStart=dumpsafe --config /etc/dumpsafe/dumpsafe.toml backup create acme" in service.splitlines()
    assert "ExecStartPost=dumpsafe --config /etc/dumpsafe/dumpsafe.toml prune acme" in service.splitlines()
    for line in ("OnCalendar=*-*-* 02:30:00 UTC", "Persistent=true", "RandomizedDelaySec=30", "Unit=dumpsafe-backup-acme.service"):
        assert line in timer.splitlines()
    assert out.warnings == ["tenant acme: drill_schedule is run by 'dumpsafe serve' only and is not exported"]
    assert "# --- dumpsafe-backup-acme.timer ---" in out.text


def test_systemd_quotes_paths_and_specifiers(tmp_path):
    cfg = _cfg(tmp_path, {"acme": {"schedule": "@daily"}})
    service = export(cfg, Path('/srv/my "conf"/50%.toml'), "systemd").files["dumpsafe-backup-acme.service"]
    assert 'ExecStart=dumpsafe --config "/srv/my \\"conf\\"/50%%.toml" backup create acme' in service.splitlines()


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'xml' \\(use cron, systemd or kubernetes\\)"):
        export(_cfg(tmp_path, {}), CONFIG, "xml")


EXPRESSIONS = [
    ("0 30 2 * * *", None),
    ("*/15 2 * * 1-5", None),
    ("0 0 1,15 jan-mar mon", None),  # day-of-month OR weekday, as cron does
    ("*/20 * * * * *", None),
    ("5 */6 * * sat,sun", None),
    ("0 9 * * 0,1,2,5", None),
    ("0 0 L * *", None),
    ("0 8-18/2 */3 * *", None),
    ("@weekly", "Europe/Berlin"),
    ("45 23 * * *", "America/New_York"),
]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("text, tz", EXPRESSIONS)
def test_on_calendar_fires_when_croniter_does(text, tz):
    """Ask systemd itself for the next elapses of our OnCalendar= and compare with croniter."""
    sched = parse_schedule(text, tz)
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    n = 12
    expected = sched.upcoming(base, n)
    got: set[datetime] = set()
    for expr in on_calendar(sched):
        proc = subprocess.run(
            ["systemd-analyze", "calendar", f"--iterations={n}", "--base-time=2026-01-01 00:00:00 UTC", expr],
            capture_output=True,
            text=True,
            env={**os.environ, "TZ": "UTC", "SYSTEMD_COLORS": "0"},
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        for m in re.finditer(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", proc.stdout):
            got.add(datetime.fromisoformat(m.group(1)).replace(tzinfo=timezone.utc))
    assert sorted(got)[:n] == expected


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_units(tmp_path):
    cfg = _cfg(
        tmp_path,
        {
            "acme": {"schedule": "0 30 2 * * *", "timezone": "Europe/Berlin", "retention": {"last": 2}},
            "beta": {"schedule": "0 0 1,15 * mon"},
        },
        scheduler={"jitter": "30s"},
    )
    out = export(cfg, Path("/etc/my conf/d%.toml"), "systemd", command="/bin/echo")
    units = []
    for name, text in out.files.items():
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OnCalendar=Mon *-*-* 00:00:00 UTC" in out.files["dumpsafe-backup-beta.timer"]
