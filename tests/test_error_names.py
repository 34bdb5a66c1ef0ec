"""Errors are named for what happened, whichever operation met them: a server that is down
during a restore is ``database_unavailable`` (not ``backup_failed``), over the CLI and REST;
a backup whose server is down still says ``backup_failed``."""

from __future__ import annotations

import json

import httpx
import pytest

from dumpsafe import errors


def _server_down(env) -> None:
    text = env.config_path.read_text()
    assert f"port = {env.pg.port}" in text
    env.config_path.write_text(text.replace(f"port = {env.pg.port}", "port = 1"))


@pytest.fixture
def backed_up_then_down(env) -> str:
    r = env.cli("backup", "create", "acme", "--no-uploads", "--json")
    assert r.code == 0, r.err
    _server_down(env)
    return r.json()[0]["id"]


def test_restore_against_a_stopped_server_is_database_unavailable_on_the_cli(env, backed_up_then_down):
    r = env.cli("backup", "restore", backed_up_then_down, "--yes", "--no-uploads", "--json")
    assert r.code == errors.DatabaseUnavailable.exit_code == 1, r.err
    err = json.loads(r.err.strip().splitlines()[-1])
    assert err["kind"] == "database_unavailable", err
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in err["error"]


def test_restore_against_a_stopped_server_is_database_unavailable_over_rest(env, backed_up_then_down):
    from live import LiveServer

    from dumpsafe.fronts.api import create_app
    from dumpsafe.auth import SCOPES, TokenStore

    service = env.service()
    _, token = TokenStore(service.state_dir).create(name="admin", tenant=None, scopes=list(SCOPES))
    server = LiveServer(create_app(service)).start()
    try:
        r = httpx.post(f"{server.url}/v1/backups/{backed_up_then_down}/restore", json={"uploads": False},
                       headers={"Authorization": f"Bearer {token}"}, timeout=120)
    finally:
        server.stop()
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "database_unavailable"
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in r.json()["detail"]


def test_backup_against_a_stopped_server_still_says_backup_failed(env):
    _server_down(env)
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 1
    err = json.loads(r.err.strip().splitlines()[-1])
    assert err["kind"] == "backup_failed" and "cannot connect to PostgreSQL at 127.0.0.1:1" in err["error"]


def test_the_new_names_map_to_their_codes_in_errors_py():
    """Exit codes and HTTP statuses are class attributes in errors.py, the one place the fronts read them from."""
    by_kind: dict[str, set[tuple[int, int]]] = {}
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.DumpsafeError):
            by_kind.setdefault(cls.kind, set()).add((cls.exit_code, cls.http_status))
    assert by_kind["database_unavailable"] == {(1, 503)}
    assert by_kind["sql_failed"] == {(1, 502)}
    assert by_kind["tool_failed"] == {(1, 502)}
    assert not issubclass(errors.ToolFailed, (errors.BackupFailed, errors.RestoreFailed))  # not a drill verdict
    assert issubclass(errors.WrongKey, errors.UsageError) and errors.WrongKey.exit_code == 2
    assert not issubclass(errors.SqlFailed, (errors.BackupFailed, errors.RestoreFailed))
