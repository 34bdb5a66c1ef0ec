"""pg_dump matched to the server: a PostgreSQL 16 server next to Debian's 15 client."""

from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path

import pytest

from dumpsafe.devcluster import Cluster, load_sample
from dumpsafe.engines.postgres import find_tool, tool_version

PG15_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's client, what `make test` installs


def _pg16_bin() -> Path:
    with warnings.catch_warnings():  # pgserver's import warns about XDG_RUNTIME_DIR (not ours to fix)
        warnings.simplefilter("ignore")
        import pgserver  # the dev extra's wheel ships PostgreSQL 16
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


def test_older_client_refused_for_newer_server(env, pg16, monkeypatch, tmp_path):
    """The test sets PATH itself: only the PostgreSQL 15 client tools are on it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("pg_dump", "pg_dumpall", "pg_restore", "psql"):
        (bin_dir / tool).symlink_to(PG15_BIN / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert not [d for d in glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/pgsql-*/bin")
                if (tool_version(os.path.join(d, "pg_dump")) or (0,))[0] >= 16], "a PostgreSQL 16+ client is installed system-wide"
    monkeypatch.setenv("ACME_PGPASSWORD", pg16.password)
    newest_local = find_tool("pg_dump")[1]
    assert newest_local[0] == 15
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
