"""`schedule export` a newcomer can paste: cron calls dumpsafe by its absolute path and says
how the password gets there; systemd units go to separate files with OnFailure=; a
Kubernetes CronJob per tenant passes the Kubernetes schema; --server is one sentence."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import kubernetes_validate
import yaml

from dumpsafe.schedule_export import FAILURE_UNIT


def _scheduled(env):
    env.write_config(tenant_extra='schedule = "0 30 2 * * *"\nretention = { daily = 7 }')
    return env


def test_cron_calls_an_absolute_dumpsafe_and_says_where_the_password_comes_from(env):
    _scheduled(env)
    r = env.cli("schedule", "export")
    assert r.code == 0, r.err
    (line,) = [x for x in r.out.splitlines() if x.startswith("30 2 * * * ")]
    first = shlex.split(line[len("30 2 * * * "):])[0]
    assert os.path.isabs(first) and os.access(first, os.X_OK), first
    assert "$ACME_PGPASSWORD" in r.out and "password_file" in r.out
    assert env.pg.password not in r.out


def test_systemd_units_written_to_separate_files_with_on_failure(env, tmp_path):
    _scheduled(env)
    out = tmp_path / "units"
    r = env.cli("schedule", "export", "--format", "systemd", "--output-dir", str(out))
    assert r.code == 0, r.err
    assert r.out == ""  # nothing concatenated on stdout
    assert sorted(p.name for p in out.iterdir()) == ["dumpsafe-backup-acme.service", "dumpsafe-backup-acme.timer", FAILURE_UNIT]
    service = (out / "dumpsafe-backup-acme.service").read_text().splitlines()
    assert f"OnFailure={FAILURE_UNIT.replace('@', '@%n')}" in service
    assert "EnvironmentFile=-/etc/dumpsafe/acme.env" in service
    assert any(x.startswith("ExecStart=/") and x.endswith("backup create acme") for x in service)
    assert any(x.startswith("ExecStartPost=/") and x.endswith("prune acme") for x in service)
    assert "OnCalendar=*-*-* 02:30:00 UTC" in (out / "dumpsafe-backup-acme.timer").read_text()
    assert "ExecStart=/usr/bin/logger" in (out / FAILURE_UNIT).read_text()
    assert "systemctl enable --now dumpsafe-backup-acme.timer" in r.err
    r = env.cli("schedule", "export", "--format", "cron", "--output-dir", str(out))
    assert r.code == 2 and "--output-dir is for --format systemd" in r.err


def test_kubernetes_cronjob_per_tenant_passes_the_schema(env):
    env.write_config(tenant_extra='schedule = "*/20 * * * * *"\ntimezone = "Europe/Berlin"\nretention = { last = 2 }\n'
                                  f'\n[tenants.beta]\nhost = "127.0.0.1"\nuser = "postgres"\npassword_env = "B"\n'
                                  'schedule = "@daily"')
    r = env.cli("schedule", "export", "--format", "kubernetes", "--image", "registry.example/dumpsafe:1", "--namespace", "ops")
    assert r.code == 0, r.err
    docs = [d for d in yaml.safe_load_all(r.out) if d]
    assert [d["metadata"]["name"] for d in docs] == ["dumpsafe-backup-acme", "dumpsafe-backup-beta"]
    for d in docs:
        kubernetes_validate.validate(d, "1.30", strict=True)
        assert d["kind"] == "CronJob" and d["metadata"]["namespace"] == "ops"
        assert d["spec"]["concurrencyPolicy"] == "Forbid"
    acme = docs[0]
    assert acme["spec"]["schedule"] == "* * * * *" and acme["spec"]["timeZone"] == "Europe/Berlin"
    (c,) = acme["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "registry.example/dumpsafe:1"
    assert c["command"][-1] == ("dumpsafe --config /etc/dumpsafe/dumpsafe.toml backup create acme"
                                " && dumpsafe --config /etc/dumpsafe/dumpsafe.toml prune acme")
    assert "has no seconds field" in r.err


def test_schedule_export_under_server_is_one_clear_sentence(env):
    r = env.cli("--server", "http://127.0.0.1:1", "schedule", "export")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1
    assert "run it there without --server" in r.err and "config file not found" not in r.err


def test_cli_default_command_is_this_dumpsafe():
    from dumpsafe.fronts.cli_setup import _own_command

    cmd = shlex.split(_own_command())
    assert Path(cmd[0]).is_absolute() and os.access(cmd[0], os.X_OK)
