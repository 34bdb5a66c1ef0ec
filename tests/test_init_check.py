"""`dumpsafe init` writes a commented sample config (never overwrites); `dumpsafe config check`
tests every tenant (password, connection, pg_dump version, databases, uploads) and every
store (reachable, writable) against real servers and prints one row per check."""

from __future__ import annotations

import json
import stat

from stores import fake_aws_env, s3_server, store_section  # noqa: F401  (fixtures)
from test_stores_service import toml_table

from dumpsafe.config_load import load_config
from dumpsafe.initconfig import SAMPLE


def test_init_writes_a_sample_that_loads_and_never_overwrites(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "new" / "dumpsafe.toml"
    target.parent.mkdir()
    r = env.cli("--config", str(target), "init")  # a later --config wins over the Env's own
    assert r.code == 0, r.err
    assert target.read_text() == SAMPLE and stat.S_IMODE(target.stat().st_mode) == 0o600
    cfg = load_config(target)
    assert set(cfg.tenants) == {"acme"} and set(cfg.stores) == {"local"}
    assert "config check" in r.err
    target.write_text(SAMPLE + "# mine\n")
    r = env.cli("--config", str(target), "init")
    assert r.code == 2 and "already exists" in r.err and "never overwrites" in r.err
    assert target.read_text().endswith("# mine\n")
    r = env.cli("--config", str(tmp_path / "missing" / "x.toml"), "init")
    assert r.code == 2 and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1


def _rows(r) -> dict[tuple[str, str], dict]:
    return {(c["subject"], c["check"]): c for c in r.json()}


def test_config_check_passes_on_a_working_config(env, pg, tmp_path, request):
    env.stores_toml = '[stores.local]\nkind = "local"\npath = "backups"\n' + toml_table(
        "offsite", store_section("s3", tmp_path, request))
    env.write_config()
    r = env.cli("config", "check", "--json")
    assert r.code == 0, r.out + r.err
    rows = _rows(r)
    assert all(c["ok"] for c in rows.values())
    assert set(rows) == {("tenant acme", k) for k in ("password", "connection", "pg_dump version", "databases", "uploads")} | {
        ("store local", "read/write"), ("store offsite", "read/write")}
    assert f"PostgreSQL {pg.version[0]}" in rows[("tenant acme", "connection")]["detail"]
    assert rows[("store offsite", "read/write")]["detail"].startswith("s3://")
    assert not [p for p in env.store_dir.rglob("*") if p.is_file()]  # the probe object is gone
    table = env.cli("config", "check")
    assert table.code == 0 and "7 of 7 checks passed" in table.err and "FAILED" not in table.out


def test_config_check_names_each_failure_and_exits_1(env, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env.stores_toml = (f'[stores.local]\nkind = "local"\npath = "{blocker}/backups"\n'
                       '[stores.offsite]\nkind = "s3"\nbucket = "nobucket"\nendpoint_url = "http://127.0.0.1:1"\n'
                       'max_attempts = 1\nconnect_timeout_s = 1\n')
    env.write_config()
    env.config_path.write_text(env.config_path.read_text()
                               .replace(f'databases = ["{env.db}"]', f'databases = ["{env.db}", "nosuchdb"]')
                               .replace(f'uploads = "{env.uploads}"', f'uploads = "{tmp_path / "no-uploads"}"'))
    r = env.cli("config", "check", "--json")
    assert r.code == 1
    rows = _rows(r)
    failed = {k for k, c in rows.items() if not c["ok"]}
    assert failed == {("tenant acme", "databases"), ("tenant acme", "uploads"), ("store local", "read/write"),
                      ("store offsite", "read/write")}
    assert "'nosuchdb' does not exist" in rows[("tenant acme", "databases")]["detail"]
    assert "no-uploads is not a directory" in rows[("tenant acme", "uploads")]["detail"]
    monkeypatch.delenv("ACME_PGPASSWORD")
    r = env.cli("config", "check")
    assert r.code == 1 and "ACME_PGPASSWORD is not set" in r.out and "FAILED" in r.out
    # a config that does not load is one sentence naming the key, exit 2
    env.config_path.write_text(env.config_path.read_text().replace("port = ", "port = 'x' #"))
    r = env.cli("config", "check")
    assert r.code == 2 and "tenants.acme.port" in r.err


def test_config_check_refuses_server_mode(env):
    r = env.cli("--server", "http://127.0.0.1:1", "config", "check", "--json")
    assert r.code == 2 and json.loads(r.err)["kind"] == "usage"


def test_config_check_tests_the_queue(env, pg):
    """Issue 16: with a queue, `config check` connects to the control-plane PostgreSQL and
    checks the job queue's schema is applied, naming how to apply it when it is not."""
    import secrets

    from conftest import PASSWORD_ENV

    from dumpsafe.queue import JobQueue

    queue_db = "q_" + secrets.token_hex(4)
    pg.create_database(queue_db)
    try:
        env.extra_toml = f'queue = "postgresql://postgres@127.0.0.1:{pg.port}/{queue_db}"\nqueue_password_env = "{PASSWORD_ENV}"'
        env.write_config()
        r = env.cli("config", "check", "--json")
        assert r.code == 1
        row = _rows(r)[("queue", "control-plane database")]
        assert not row["ok"] and f"schema is not applied in database '{queue_db}'" in row["detail"]
        assert "start 'dumpsafe worker' or 'dumpsafe serve' once" in row["detail"]
        assert [k for k, c in _rows(r).items() if not c["ok"]] == [("queue", "control-plane database")]

        JobQueue(env.config()).ensure_schema()
        r = env.cli("config", "check", "--json")
        assert r.code == 0, r.out
        row = _rows(r)[("queue", "control-plane database")]
        assert row["ok"] and f"database '{queue_db}'" in row["detail"] and "job tables are there" in row["detail"]

        env.extra_toml = (f'queue = "postgresql://postgres@127.0.0.1:{pg.port}/{queue_db}"\n'
                          'queue_password_env = "QUEUE_PW_WRONG"')
        env.write_config()
        env_pw = "wrong-" + secrets.token_hex(4)
        import os

        os.environ["QUEUE_PW_WRONG"] = env_pw
        try:
            r = env.cli("config", "check", "--json")
        finally:
            del os.environ["QUEUE_PW_WRONG"]
        row = _rows(r)[("queue", "control-plane database")]
        assert r.code == 1 and not row["ok"] and "cannot reach the control-plane database" in row["detail"]
        assert env_pw not in r.out + r.err
    finally:
        pg.drop_database(queue_db)
