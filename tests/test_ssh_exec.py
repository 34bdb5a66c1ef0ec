"""`exec = ["ssh", "db1"]` against a real sshd on 127.0.0.1: ssh joins its arguments into one
remote command line, so dumpsafe sends one shell-quoted string. Backup and restore go
through it, database names with spaces and quotes included, and no password is on any
command line. (docker/incus-style prefixes keep argv as it is: see test_exec.py.)"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

import sshd
from conftest import all_cmdlines, table_digest


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory):
    server = sshd.start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


ODD = "it's a \"db\" $HOME"


@pytest.fixture
def ssh_env(env, pg, ssh_server):
    pg.create_database(ODD)
    with pg.connect(ODD) as c:
        c.execute("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 37) g")
    prefix = ", ".join(f'"{a}"' for a in ssh_server.prefix())
    env.tenant_extra = f'exec = [{prefix}]\npg_bin_dir = "{pg.bin_dir}"'
    text = env.write_config().read_text().replace(f'databases = ["{env.db}"]', f"databases = [\"{env.db}\", '''{ODD}''']")
    env.config_path.write_text(text)
    yield env
    pg.drop_database(ODD)


def test_backup_and_restore_through_real_ssh(ssh_env, pg):
    env = ssh_env
    before = {env.db: table_digest(pg, env.db), ODD: table_digest(pg, ODD)}
    proc = subprocess.Popen(env.cli_argv("backup", "create", "acme", "--no-uploads", "--json"), env=env.subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen_ssh = False
    while proc.poll() is None:  # the password is on no command line, ssh's included
        for _pid, cmd in all_cmdlines():
            assert pg.password.encode() not in cmd
            seen_ssh = seen_ssh or cmd.startswith(b"ssh\x00")
        time.sleep(0.01)
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert seen_ssh
    recs = {r["database"]: r for r in json.loads(out)}
    assert set(recs) == {env.db, ODD}
    assert recs[ODD]["tables"] == {"public.notes": 37} and recs[env.db]["tables"]["public.orders"] == 800

    with pg.connect(ODD) as c:
        c.execute("DELETE FROM notes WHERE id > 5")
    with pg.connect(env.db) as c:
        c.execute("TRUNCATE orders CASCADE")
    for db, rec in recs.items():
        r = env.cli("backup", "restore", rec["id"], "--yes", "--no-uploads")
        assert r.code == 0, r.err
        assert table_digest(pg, db) == before[db]
    r = env.cli("backup", "verify", recs[ODD]["id"], "--drill", "--json")
    assert r.code == 0, r.err
    assert r.json()["last_verification"]["result"] == "passed"


def test_ssh_wrong_password_blames_the_password_not_the_channel(ssh_env, monkeypatch):
    monkeypatch.setenv("ACME_PGPASSWORD", "wrong-ssh-secret")
    r = ssh_env.cli("backup", "create", "acme", "--database", ssh_env.db)
    assert r.code == 1 and "password authentication failed" in r.err and "wrong-ssh-secret" not in r.err
