"""Dumps through an exec channel (incus/docker/podman exec, ssh): a real exec-like wrapper
program records every argv it is given; the password must be on none of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import all_cmdlines, table_digest
from waiting import wait_for
from test_backup import _TableLock

FAKE_EXEC = r'''#!/usr/bin/env python3
# like `incus exec CONTAINER -- CMD...`: record argv and whether a password is in the
# environment, then exec CMD with stdin/stdout/stderr passed through
import json, os, sys
with open(os.environ["FAKE_EXEC_LOG"], "a") as fh:
    fh.write(json.dumps({"argv": sys.argv, "env_has_password": "PGPASSWORD" in os.environ}) + "\n")
args = sys.argv[sys.argv.index("--") + 1:]
env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
os.execvpe(args[0], args, env)
'''


@pytest.fixture
def exec_env(env, tmp_path, monkeypatch):
    tool = tmp_path / "fake-exec"
    tool.write_text(FAKE_EXEC)
    tool.chmod(0o755)
    log = tmp_path / "exec.log"
    monkeypatch.setenv("FAKE_EXEC_LOG", str(log))
    bindir = Path("/usr/lib/postgresql") / str(env.pg.version[0]) / "bin"
    # pg_bin_dir here is a path INSIDE the exec target (this machine, for the fake)
    env.tenant_extra = f'exec = ["{tool}", "--container", "acme", "--"]\npg_bin_dir = "{env.pg.bin_dir}"\ninclude_globals = true'
    env.write_config()
    env.exec_log = log
    return env


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_backup_through_exec_channel(exec_env, pg):
    env = exec_env
    rec = env.cli("backup", "create", "acme", "--json")
    assert rec.code == 0, rec.err
    rec = rec.json()[0]
    assert rec["tables"]["public.orders"] == 800 and rec["client_version"].startswith(str(pg.version[0]))
    calls = _calls(env.exec_log)
    tools = [os.path.basename(c["argv"][c["argv"].index("--") + 1 + 4]) for c in calls if "sh" in c["argv"]]
    assert {"psql", "pg_dump", "pg_dumpall"} <= set(tools)
    for c in calls:
        assert pg.password not in " ".join(c["argv"])
        assert not c["env_has_password"]
    assert pg.password not in env.config_path.read_text()


def test_exec_all_databases_listed_through_psql(exec_env, pg):
    env = exec_env
    env.config_path.write_text(env.config_path.read_text().replace(f'databases = ["{env.db}"]\n', ""))
    recs = env.cli("backup", "create", "acme", "--no-uploads", "--json").json()
    assert env.db in {r["database"] for r in recs}


def test_exec_wrong_password_is_one_sentence(exec_env, monkeypatch):
    monkeypatch.setenv("ACME_PGPASSWORD", "wrong-exec-secret")
    r = exec_env.cli("backup", "create", "acme")
    assert r.code == 1 and "password authentication failed" in r.err
    assert "wrong-exec-secret" not in r.err


def test_exec_password_never_on_any_command_line(exec_env, pg):
    env = exec_env
    lock = _TableLock(pg, env.db)
    secret = pg.password.encode()
    seen = set()

    def both_tools_seen() -> bool:  # psql holds the snapshot open while pg_dump waits on the lock
        for _pid, cmd in all_cmdlines():
            assert secret not in cmd
            seen.update(tool for tool in (b"pg_dump\x00", b"psql\x00") if tool in cmd)
        return len(seen) == 2

    try:
        proc = subprocess.Popen(env.cli_argv("backup", "create", "acme"), env=env.subprocess_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for("pg_dump and psql to run through the exec channel", both_tools_seen, timeout=60, every=0.02)
    finally:
        lock.release()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert seen == {b"pg_dump\x00", b"psql\x00"}


# ---- restore, dry run and drill through the exec channel -------------------------------------
def _exec_tools(calls: list[dict]) -> set[str]:
    """Basenames of the PostgreSQL tools run through the wrapper (after `sh -c WRAPPER dumpsafe-pg`)."""
    return {os.path.basename(c["argv"][c["argv"].index("--") + 5]) for c in calls if "sh" in c["argv"]}


def _no_secret_anywhere(env, pg) -> None:
    calls = _calls(env.exec_log)
    assert calls
    for c in calls:
        assert pg.password not in " ".join(c["argv"])
        assert not c["env_has_password"]


@pytest.fixture
def exec_backed_up(exec_env, pg):
    from restore_helpers import enrich

    enrich(pg, exec_env.db)
    r = exec_env.cli("backup", "create", "acme", "--json", "--no-uploads")
    assert r.code == 0, r.err
    exec_env.exec_log.write_text("")  # from here on: what restore, dry run and drill run
    return r.json()[0]["id"], table_digest(pg, exec_env.db)


def test_exec_restore_atomic_new_and_clean(exec_env, exec_backed_up, pg):
    from restore_helpers import audit_lines, databases

    env = exec_env
    bid, digest = exec_backed_up
    with pg.connect(env.db) as c:
        c.execute("UPDATE customers SET name = 'overwritten'; DELETE FROM billing.invoices WHERE id % 3 = 0; CREATE TABLE stray (i int)")
        c.execute("ALTER DATABASE " + env.db + " SET work_mem = '7MB'")
    assert table_digest(pg, env.db) != digest
    before = databases(pg)

    r = env.cli("backup", "restore", bid, "--yes", "--no-uploads", "--json")
    assert r.code == 0, r.err
    res = r.json()
    assert res["mode"] == "atomic" and res["rows"] > 0 and res["kept_old"] is None
    assert table_digest(pg, env.db) == digest
    assert databases(pg) == before  # staging swapped in, old copy dropped
    with pg.connect(env.db) as c:  # database-level settings are the backup's (from the archive), not the replaced database's
        cfg = c.execute("SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                        "WHERE d.datname = current_database()").fetchall()
    assert cfg == []
    assert {"psql", "pg_restore"} <= _exec_tools(_calls(env.exec_log))

    other = env.db + "_copy"
    r = env.cli("backup", "restore", bid, "--database", other, "--mode", "new", "--yes", "--no-uploads", "--json")
    assert r.code == 0, r.err
    assert table_digest(pg, other) == digest
    r = env.cli("backup", "restore", bid, "--database", other, "--mode", "new", "--yes", "--no-uploads")
    assert r.code == 1 and "already exists" in r.err
    pg.drop_database(other)

    with pg.connect(env.db) as c:
        c.execute("UPDATE customers SET name = 'again'")
    r = env.cli("backup", "restore", bid, "--mode", "clean", "--yes", "--no-uploads", "--json")
    assert r.code == 0, r.err
    assert table_digest(pg, env.db) == digest
    assert [a["outcome"] for a in audit_lines(env, "restore")].count("ok") == 3
    _no_secret_anywhere(env, pg)


def test_exec_restore_failure_leaves_target_unchanged(exec_env, exec_backed_up, pg):
    from restore_helpers import databases

    env = exec_env
    bid, digest = exec_backed_up
    with pg.connect(env.db) as c:
        c.execute("UPDATE customers SET name = 'damaged'")
    damaged, before = table_digest(pg, env.db), databases(pg)
    # break the channel's pg_restore: a bin dir whose pg_restore fails after reading its input
    bad = env.root / "badbin"
    bad.mkdir()
    for tool in ("psql", "pg_dump", "pg_dumpall"):
        (bad / tool).symlink_to(Path(pg.bin_dir) / tool)
    (bad / "pg_restore").write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && exec {pg.bin_dir}/pg_restore --version\n"
                                    "cat >/dev/null; echo 'pg_restore: error: simulated failure' >&2; exit 1\n")
    (bad / "pg_restore").chmod(0o755)
    env.config_path.write_text(env.config_path.read_text().replace(f'pg_bin_dir = "{pg.bin_dir}"', f'pg_bin_dir = "{bad}"'))
    r = env.cli("backup", "restore", bid, "--yes", "--no-uploads")
    assert r.code == 1 and "simulated failure" in r.err and pg.password not in r.err
    assert table_digest(pg, env.db) == damaged
    assert databases(pg) == before  # the staging database was dropped through the channel


def test_exec_dry_run_and_drill(exec_env, exec_backed_up, pg):
    from restore_helpers import databases

    env = exec_env
    bid, digest = exec_backed_up
    before = databases(pg)
    r = env.cli("backup", "restore", bid, "--dry-run", "--no-uploads", "--json")
    assert r.code == 0, r.err
    pf = r.json()
    assert pf["ok"] and pf["target_exists"] and pf["mode"] == "atomic"
    assert pf["roles_missing"] == [] and "postgres" in pf["roles_needed"]
    assert "table public.orders" in pf["would_replace"]
    assert pf["versions"]["target_server"].split(".")[0] == str(pg.version[0])

    r = env.cli("backup", "verify", bid, "--drill", "--json")
    assert r.code == 0, r.err
    v = r.json()["last_verification"]
    assert v["result"] == "passed" and v["kind"] == "drill"
    assert databases(pg) == before and table_digest(pg, env.db) == digest  # scratch dropped, nothing else changed
    assert {"psql", "pg_restore"} <= _exec_tools(_calls(env.exec_log))
    _no_secret_anywhere(env, pg)


def test_exec_restore_password_never_on_any_command_line(exec_env, exec_backed_up, pg):
    env = exec_env
    bid, digest = exec_backed_up
    secret = pg.password.encode()
    seen = set()
    for args in (("backup", "restore", bid, "--yes", "--no-uploads"), ("backup", "verify", bid, "--drill")):
        proc = subprocess.Popen(env.cli_argv(*args), env=env.subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while proc.poll() is None:
            for _pid, cmd in all_cmdlines():
                assert secret not in cmd
                for tool in (b"pg_restore\x00", b"psql\x00"):
                    if tool in cmd and b"dumpsafe-pg" in cmd:
                        seen.add(tool)
            time.sleep(0.01)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert secret not in out + err
    assert seen == {b"pg_restore\x00", b"psql\x00"}
    assert table_digest(pg, env.db) == digest
    _no_secret_anywhere(env, pg)


def test_exec_restore_into_an_odd_database_name(exec_env, exec_backed_up, pg):
    """Identifiers and literals are quoted on this side, so psql sees exactly what psycopg would send."""
    env = exec_env
    bid, digest = exec_backed_up
    odd = "odd 'name' \"x\" \\ ü;"
    r = env.cli("backup", "restore", bid, "--database", odd, "--mode", "new", "--yes", "--no-uploads", "--json")
    assert r.code == 0, r.err
    try:
        assert table_digest(pg, odd) == digest
        r = env.cli("backup", "restore", bid, "--database", odd, "--yes", "--no-uploads", "--json")  # atomic swap
        assert r.code == 0, r.err
        assert r.json()["mode"] == "atomic" and table_digest(pg, odd) == digest
    finally:
        with pg.connect() as c:
            c.execute('DROP DATABASE IF EXISTS "' + odd.replace('"', '""') + '" WITH (FORCE)')


def test_exec_clean_refuses_partitioned_tables_with_keys_before_touching_anything(exec_env, pg):
    """Through an exec channel clean cannot use its reordered list: it refuses and names the table."""
    env = exec_env
    with pg.connect(env.db) as c:
        c.execute("CREATE TABLE ev (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at); "
                  "CREATE TABLE ev1 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01'); "
                  "INSERT INTO ev VALUES (1, '2025-02-02')")
    r = env.cli("backup", "create", "acme", "--json", "--no-uploads")
    assert r.code == 0, r.err
    bid = r.json()[0]["id"]
    before = table_digest(pg, env.db)
    with pg.connect(env.db) as c:
        c.execute("INSERT INTO ev VALUES (2, '2025-03-03')")
    pf = env.cli("backup", "restore", bid, "--mode", "clean", "--dry-run", "--no-uploads", "--json").json()
    assert not pf["ok"] and any("public.ev" in p and "--mode atomic" in p for p in pf["problems"])
    r = env.cli("backup", "restore", bid, "--mode", "clean", "--yes", "--no-uploads")
    assert r.code == 1 and "public.ev" in r.err and "nothing was changed" in r.err
    with pg.connect(env.db) as c:
        assert c.execute("SELECT count(*) FROM ev").fetchone()[0] == 2
    assert table_digest(pg, env.db) != before  # untouched: still the row added after the backup


def test_exec_drill_whose_pg_dump_will_not_run_is_a_tool_error_not_a_verdict(exec_env, exec_backed_up, pg):
    """A client tool the exec target cannot run says so as ``tool_failed`` (not ``backup_failed``
    on a drill or restore), and a drill that could not compare records no failed verification."""
    import json as _json

    from restore_helpers import databases

    env = exec_env
    bid, digest = exec_backed_up
    before = databases(pg)
    bad = env.root / "nodump"
    bad.mkdir()
    for tool in ("psql", "pg_restore", "pg_dumpall"):
        (bad / tool).symlink_to(Path(pg.bin_dir) / tool)
    (bad / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump: cannot execute: simulated' >&2\nexit 126\n")
    (bad / "pg_dump").chmod(0o755)
    env.config_path.write_text(env.config_path.read_text().replace(f'pg_bin_dir = "{pg.bin_dir}"', f'pg_bin_dir = "{bad}"'))
    r = env.cli("backup", "verify", bid, "--drill", "--json")
    err = _json.loads(r.err.strip().splitlines()[-1])
    assert (r.code, err["kind"]) == (1, "tool_failed"), r.err
    assert "pg_dump --version failed" in err["error"] and pg.password not in r.err
    r = env.cli("backup", "get", bid, "--json")
    assert r.json()["last_verification"] is None  # the attempt failed, the backup was not judged
    assert databases(pg) == before and table_digest(pg, env.db) == digest  # scratch dropped

    (bad / "pg_restore").unlink()
    (bad / "pg_restore").write_text("#!/bin/sh\nexit 127\n")
    (bad / "pg_restore").chmod(0o755)
    r = env.cli("backup", "restore", bid, "--yes", "--no-uploads", "--json")
    err = _json.loads(r.err.strip().splitlines()[-1])
    assert (r.code, err["kind"]) == (1, "tool_failed"), r.err
    assert table_digest(pg, env.db) == digest and databases(pg) == before
