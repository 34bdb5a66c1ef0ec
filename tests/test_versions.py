"""pg_dump matched to the server: a PostgreSQL 16 server next to Debian's 15 client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dumpsafe.devcluster import Cluster, load_sample
from dumpsafe.engines.postgres import find_tool


def _pg16_bin() -> Path:
    pgserver = pytest.importorskip("pgserver", reason="the pgserver wheel (dev extra) ships PostgreSQL 16")
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


@pytest.fixture(scope="module")
def pg16():
    cluster = Cluster(password="pw16-secret", bin_dir=_pg16_bin())
    try:
        cluster.init().start()
        cluster.create_database("app")
        load_sample(cluster, "app", customers=50, orders=100)
        yield cluster
    finally:
        cluster.destroy()


def _config(env, cluster, extra=""):
    text = env.config_path.read_text()
    text = text.replace(f"port = {env.pg.port}", f"port = {cluster.port}").replace(f'databases = ["{env.db}"]', 'databases = ["app"]')
    env.config_path.write_text(text + extra)


def test_older_client_refused_for_newer_server(env, pg16, monkeypatch):
    monkeypatch.setenv("ACME_PGPASSWORD", pg16.password)
    newest_local = find_tool("pg_dump")[1]
    if newest_local[0] >= 16:
        pytest.skip("this machine has a PostgreSQL 16+ client on PATH already")
    _config(env, pg16)
    r = env.cli("backup", "create", "acme", "--no-uploads")
    assert r.code == 2
    assert f"the server is PostgreSQL 16 but the newest pg_dump found is {newest_local[0]}.{newest_local[1]}" in r.err
    assert "pg_bin_dir" in r.err
    assert env.cli("backup", "list", "--json").json() == []


def test_matching_client_picked_from_pg_bin_dir(env, pg16, monkeypatch):
    monkeypatch.setenv("ACME_PGPASSWORD", pg16.password)
    _config(env, pg16, f'pg_bin_dir = "{_pg16_bin()}"\n')
    rec = env.cli("backup", "create", "acme", "--no-uploads", "--json").json()[0]
    assert rec["server_version"].startswith("16.") and rec["client_version"].startswith("16.")
    assert rec["tables"]["public.orders"] == 100


def test_newer_client_serves_older_server(env):
    """A 16 pg_dump may dump a 15 server: newer or equal majors are accepted."""
    path, ver = find_tool("pg_dump", 15, (_pg16_bin(),))
    assert ver[0] == 16 and os.path.dirname(path) == str(_pg16_bin())
