"""prune, pin/unpin, status and schedule export through the real CLI against a real cluster."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from dumpsafe.models import utcnow
from dumpsafe.service import BackupService


def _create(env, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        r = env.cli("backup", "create", "acme", "--json")
        assert r.code == 0, r.err
        ids.append(r.json()[0]["id"])
    return ids


def _listed(env) -> list[str]:
    r = env.cli("backup", "list", "acme", "--json")
    assert r.code == 0, r.err
    return [rec["id"] for rec in r.json()]


def test_prune_dry_run_then_pin_then_prune(env):
    env.write_config(tenant_extra="retention = { last = 1 }")
    oldest, middle, newest = _create(env, 3)

    r = env.cli("prune", "acme", "--dry-run", "--json")
    assert r.code == 0, r.err
    plan = {d["id"]: (d["action"], d["reasons"]) for d in r.json()}
    assert plan == {newest: ("keep", ["newest", "last"]), middle: ("remove", []), oldest: ("remove", [])}
    assert _listed(env) == [newest, middle, oldest]  # a dry run changes nothing

    r = env.cli("backup", "pin", oldest)
    assert r.code == 0 and f"pinned {oldest}" in r.err
    assert env.cli("backup", "get", oldest, "--json").json()["pinned"] is True

    r = env.cli("prune", "acme", "--json")
    assert r.code == 0, r.err
    plan = {d["id"]: (d["action"], d["reasons"]) for d in r.json()}
    assert plan[oldest] == ("keep", ["pinned"]) and plan[middle] == ("remove", [])
    assert _listed(env) == [newest, oldest]
    assert not (env.store_dir / "objects" / middle).exists() or not any((env.store_dir / "objects" / middle).iterdir())

    audit = [e for e in env.service().audit.entries()]
    assert [(e["action"], e["backup_id"], e["outcome"]) for e in audit if e["action"] in ("delete", "pin")] == [
        ("pin", oldest, "ok"),
        ("delete", middle, "ok"),
    ]
    (prune_line,) = [e for e in audit if e["action"] == "prune"]
    assert (prune_line["tenant"], prune_line["removed"], prune_line["kept"], prune_line["outcome"]) == ("acme", 1, 2, "ok")

    # unpinned, the old one goes at the next prune
    assert env.cli("backup", "unpin", oldest).code == 0
    r = env.cli("prune", "--json")
    assert r.code == 0, r.err
    assert _listed(env) == [newest]


def test_prune_without_policy_keeps_everything(env):
    ids = _create(env, 2)
    r = env.cli("prune", "--json")
    assert r.code == 0, r.err
    assert sorted((d["id"], d["action"], d["reasons"]) for d in r.json()) == sorted((i, "keep", ["no_policy"]) for i in ids)
    assert sorted(_listed(env)) == sorted(ids)


def test_pin_unknown_backup_is_not_found(env):
    r = env.cli("backup", "pin", "acme.app.20260101T000000Z.aaaaaaaa")
    assert r.code == 1 and "not found" in r.err
    r = env.cli("backup", "pin", "not-an-id")
    assert r.code == 2 and "is not a backup ID" in r.err


def test_status_exit_codes_and_formats(env, monkeypatch):
    env.write_config(tenant_extra='max_age = "1h"\nschedule = "0 30 2 * * *"')
    # no backup at all: the absence of success is a breach
    r = env.cli("status", "--json")
    assert r.code == 1
    (row,) = r.json()
    assert row["breached"] and row["breach"] == f"acme/{env.db} has no successful backup (max_age 1h)"

    # the backup was made 45 minutes ago (an injected clock, not a sleep): fresh for max_age 1h, stale for 30m
    (rec,) = BackupService(env.config(), clock=lambda: utcnow() - timedelta(minutes=45)).create("acme")
    bid = rec.id
    r = env.cli("status", "--json")
    assert r.code == 0, r.err
    (row,) = r.json()
    assert (row["last_success_id"], row["breached"], row["backups"]) == (bid, False, 1)
    assert row["next_run_at"].endswith("T02:30:00.000000Z")

    r = env.cli("status")
    assert r.code == 0 and env.db in r.out and "ok" in r.out

    r = env.cli("status", "--format", "prometheus")
    assert r.code == 0
    samples = {
        s.name: s.value for fam in text_string_to_metric_families(r.out) for s in fam.samples if s.labels.get("tenant") == "acme"
    }
    assert samples["dumpsafe_max_age_breached"] == 0 and samples["dumpsafe_backups"] == 1
    assert samples["dumpsafe_last_backup_size_bytes"] > 0

    # a failed backup shows up as the last failure, with its reason (from the audit log)
    env.write_config(tenant_extra='max_age = "30m"')
    monkeypatch.setenv("ACME_PGPASSWORD", "wrong-password")
    assert env.cli("backup", "create", "acme").code == 1
    r = env.cli("status", "--json")
    assert r.code == 1
    (row,) = r.json()
    assert row["breached"] and row["last_failure_error"] and row["failures"] == 1

    r = env.cli("status", "--format", "yaml")
    assert r.code == 2 and "'yaml' is not one of 'table', 'json', 'prometheus'" in r.err


def test_schedule_export_cli(env):
    env.write_config(tenant_extra='schedule = "*/2 * * * * *"\nretention = { daily = 7 }')
    r = env.cli("schedule", "export", "--format", "cron")
    assert r.code == 0, r.err
    (line,) = [x for x in r.out.splitlines() if x.startswith("* * * * * /")]  # dumpsafe by its absolute path
    assert line.endswith(f"dumpsafe --config {env.config_path.resolve()} backup create acme"
                         f" && {line.split()[5]} --config {env.config_path.resolve()} prune acme")
    assert "cron has no seconds field" in r.err
    r = env.cli("schedule", "export", "--format", "systemd")
    assert r.code == 0 and "OnCalendar=*-*-* *:*:00/2 UTC" in r.out
    r = env.cli("schedule", "export", "--format", "launchd")
    assert r.code == 2 and "'launchd' is not one of 'cron', 'systemd', 'kubernetes'" in r.err


def test_a_cli_backup_that_shrank_raises_an_anomaly_alert(env, pg):
    from httpreceiver import Receiver

    with Receiver() as hook:
        env.write_config(tenant_extra=f'notify = ["json://127.0.0.1:{hook.port}/"]')
        _create(env, 2)
        assert hook.received == []  # normal backups are quiet
        with pg.connect(env.db) as c:
            c.execute("TRUNCATE billing.invoices")
        (bid,) = _create(env, 1)
    (alert,) = hook.received
    assert alert["type"] == "warning" and f"backup: {bid}" in alert["message"]
    assert "table billing.invoices fell 100 %" in alert["message"]
