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

from conftest import all_cmdlines
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
    rec = rec.json()
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
    try:
        proc = subprocess.Popen(env.cli_argv("backup", "create", "acme"), env=env.subprocess_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            for _pid, cmd in all_cmdlines():
                assert secret not in cmd
                for tool in (b"pg_dump\x00", b"psql\x00"):
                    if tool in cmd:
                        seen.add(tool)
            time.sleep(0.02)
    finally:
        lock.release()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert seen == {b"pg_dump\x00", b"psql\x00"}
