"""A configured store that is down does not hide a backup another store holds: get, restore
and drill of a backup in a healthy store work while an earlier store in the config cannot be
reached; an ID found nowhere while a store is down is that store's error, not 'not found'."""

from __future__ import annotations

import socket

import pytest

from conftest import table_digest
from stores import fake_aws_env  # noqa: F401  (fixture)


def _dead_port() -> int:
    with socket.socket() as s:  # bound and closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def down_env(env, fake_aws_env):
    env.stores_toml = (
        '[stores.local]\nkind = "local"\npath = "backups"\n'
        f'[stores.primary]\nkind = "s3"\nbucket = "down"\nendpoint_url = "http://127.0.0.1:{_dead_port()}"\n'
        'region = "us-east-1"\nmax_attempts = 1\nconnect_timeout_s = 2\n'
        '[stores.offsite]\nkind = "local"\npath = "offsite"\n'
    )
    env.write_config()
    return env


def test_a_store_that_is_down_does_not_hide_a_backup_held_elsewhere(down_env, pg):
    env = down_env
    r = env.cli("backup", "create", "acme", "--store", "offsite", "--no-uploads", "--json")
    assert r.code == 0, r.err
    bid = r.json()[0]["id"]
    digest = table_digest(pg, env.db)

    r = env.cli("backup", "get", bid, "--json")
    assert r.code == 0, r.err
    assert r.json()["store"] == "offsite"
    r = env.cli("backup", "verify", bid, "--drill", "--json")
    assert r.code == 0, r.err
    other = env.db + "_back"
    r = env.cli("backup", "restore", bid, "--database", other, "--mode", "new", "--yes", "--no-uploads", "--json")
    assert r.code == 0, r.err
    try:
        assert table_digest(pg, other) == digest
    finally:
        pg.drop_database(other)

    # found nowhere, one store unreachable: it may be there, so that store's error, not "not found"
    missing = bid[:-8] + "zzzzzzzz"
    r = env.cli("backup", "get", missing, "--json")
    assert r.code == 1 and "store 'primary': cannot reach" in r.err and "not found" not in r.err, r.err
