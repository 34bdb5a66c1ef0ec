"""``restore --with-globals``: roles from the backup's globals object, into a FRESH cluster
(a second real PostgreSQL), directly and through an exec channel; never with passwords."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from conftest import table_digest
from dumpsafe.devcluster import Cluster
from dumpsafe.engines.pg_globals import parse_globals
from restore_helpers import audit_lines, databases
from test_exec import FAKE_EXEC


@pytest.fixture
def owned(env, pg):
    """Roles only the source cluster has: an owner (LOGIN, password, limits, a setting, a comment)
    that owns a table, a group it belongs to, and a role both clusters have with other attributes."""
    tag = secrets.token_hex(3)
    names = {"owner": f"app_owner_{tag}", "group": f"Readers {tag}", "shared": f"shared_{tag}"}
    with pg.connect(env.db) as c:
        c.execute(f'CREATE ROLE "{names["owner"]}" LOGIN PASSWORD \'role-secret-{tag}\' CONNECTION LIMIT 5')
        c.execute(f'ALTER ROLE "{names["owner"]}" SET search_path TO billing, public')
        c.execute(f"""COMMENT ON ROLE "{names['owner']}" IS 'owns the app; it''s fine'""")
        c.execute(f'CREATE ROLE "{names["group"]}" NOLOGIN')
        c.execute(f'GRANT "{names["group"]}" TO "{names["owner"]}"')
        c.execute(f'CREATE ROLE "{names["shared"]}" CREATEDB')
        c.execute(f'ALTER TABLE billing.invoices OWNER TO "{names["owner"]}"')
        c.execute(f'GRANT SELECT ON customers TO "{names["group"]}"')
    env.tenant_extra = "include_globals = true"
    env.write_config()
    r = env.cli("backup", "create", "acme", "--no-uploads", "--json")
    assert r.code == 0, r.err
    rec = r.json()[0]
    assert [o["role"] for o in rec["objects"]].count("globals") == 1
    yield rec["id"], table_digest(pg, env.db), names, f"role-secret-{tag}"
    with pg.connect(env.db) as c:
        c.execute("ALTER TABLE billing.invoices OWNER TO postgres")
        c.execute(f'REVOKE SELECT ON customers FROM "{names["group"]}"')
    with pg.connect() as c:
        for n in names.values():
            c.execute(f'DROP ROLE IF EXISTS "{n}"')


@pytest.fixture
def fresh():
    """A second, empty cluster: a fresh host with none of the tenant's roles."""
    cluster = Cluster(password="fresh-" + secrets.token_hex(8)).init().start()
    yield cluster
    cluster.destroy()


def _point_at(env, cluster: Cluster, monkeypatch, exec_tool: Path | None = None) -> None:
    monkeypatch.setenv("ACME_PGPASSWORD", cluster.password)
    extra = "include_globals = true"
    if exec_tool is not None:
        extra += f'\nexec = ["{exec_tool}", "--container", "acme", "--"]\npg_bin_dir = "{env.pg.bin_dir}"'
    env.write_config(tenant_extra=extra)
    env.config_path.write_text(env.config_path.read_text().replace(f"port = {env.pg.port}", f"port = {cluster.port}"))


def _roles(cluster: Cluster) -> dict[str, tuple]:
    with cluster.connect() as c:
        return {r[0]: r[1:] for r in c.execute(
            "SELECT rolname, rolcanlogin, rolconnlimit, rolcreatedb, rolpassword IS NULL, "
            "shobj_description(oid, 'pg_authid') FROM pg_authid").fetchall()}


@pytest.mark.parametrize("channel", ["direct", "exec"])
def test_globals_round_trip_into_a_fresh_cluster(env, owned, fresh, monkeypatch, tmp_path, channel):
    bid, digest, names, role_password = owned
    exec_tool = None
    if channel == "exec":
        exec_tool = tmp_path / "fake-exec"
        exec_tool.write_text(FAKE_EXEC)
        exec_tool.chmod(0o755)
        monkeypatch.setenv("FAKE_EXEC_LOG", str(tmp_path / "exec.log"))
    with fresh.connect() as c:  # exists on both: must not be altered (here it cannot create databases)
        c.execute(f'CREATE ROLE "{names["shared"]}" NOCREATEDB')
    _point_at(env, fresh, monkeypatch, exec_tool)
    roles_before, dbs_before = _roles(fresh), databases(fresh)

    # the dry run names the missing roles from the dump and from the globals object
    r = env.cli("backup", "restore", bid, "--no-uploads", "--dry-run", "--json")
    assert r.code == 1
    pf = r.json()
    assert names["owner"] in pf["roles_missing"]
    assert set(pf["globals_roles_missing"]) >= {names["owner"], names["group"]}
    assert names["shared"] not in pf["globals_roles_missing"]
    assert any("--with-globals" in p for p in pf["problems"])
    r = env.cli("backup", "restore", bid, "--no-uploads", "--dry-run", "--with-globals", "--json")
    assert r.code == 0, r.out + r.err
    assert r.json()["ok"]

    # without the roles the dump's owner is missing: refused, nothing created
    r = env.cli("backup", "restore", bid, "--no-uploads", "--yes")
    assert r.code == 1 and names["owner"] in r.err
    assert _roles(fresh) == roles_before and databases(fresh) == dbs_before

    r = env.cli("backup", "restore", bid, "--no-uploads", "--yes", "--with-globals", "--json")
    assert r.code == 0, r.err
    res = r.json()
    assert {names["owner"], names["group"]} <= set(res["globals"]["roles_created"])
    assert names["shared"] not in res["globals"]["roles_created"]
    assert f"{names['group']} -> {names['owner']}" in res["globals"]["memberships_granted"]
    assert "without passwords" in res["globals"]["passwords"]
    assert table_digest(fresh, env.db) == digest

    roles = _roles(fresh)
    login, connlimit, _createdb, no_password, comment = roles[names["owner"]]
    assert login and connlimit == 5 and no_password and comment == "owns the app; it's fine"
    assert roles[names["shared"]] == roles_before[names["shared"]]  # existing role untouched
    assert roles[names["group"]][0] is False
    with fresh.connect(env.db) as c:
        assert c.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'invoices'").fetchone()[0] == names["owner"]
        assert c.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (names["owner"], names["group"])).fetchone()[0]
        assert c.execute("SELECT has_table_privilege(%s, 'customers', 'SELECT')", (names["group"],)).fetchone()[0]
        cfg = c.execute("SELECT setconfig FROM pg_db_role_setting WHERE setrole = %s::regrole", (names["owner"],)).fetchone()[0]
    assert cfg == ["search_path=billing, public"]
    assert audit_lines(env, "restore")[-1]["roles_created"] == res["globals"]["roles_created"]
    text = env.state_dir.joinpath("audit.jsonl").read_text() + r.out + r.err
    assert role_password not in text and fresh.password not in text
    if exec_tool is not None:
        calls = [json.loads(line) for line in (tmp_path / "exec.log").read_text().splitlines()]
        tools = {Path(c["argv"][c["argv"].index("--") + 5]).name for c in calls if "sh" in c["argv"]}
        assert {"psql", "pg_restore"} <= tools  # roles and restore went through the channel
        for call in calls:
            assert fresh.password not in " ".join(call["argv"]) and not call["env_has_password"]


def test_failed_restore_drops_the_roles_it_created(env, owned, fresh, monkeypatch, tmp_path):
    bid, _digest, names, _ = owned
    _point_at(env, fresh, monkeypatch)
    real = Path(env.pg.bin_dir) / "pg_restore"
    d = tmp_path / "fakebin"
    d.mkdir()
    (d / "pg_restore").write_text(f"""#!/bin/sh
case " $* " in *" --version "*|*" --list "*|*" --schema-only "*) exec {real} "$@";; esac
echo 'pg_restore: error: simulated failure' >&2; exit 1
""")
    (d / "pg_restore").chmod(0o755)
    env.config_path.write_text(env.config_path.read_text().replace("include_globals = true", f'include_globals = true\npg_bin_dir = "{d}"'))
    roles_before, dbs_before = _roles(fresh), databases(fresh)
    r = env.cli("backup", "restore", bid, "--no-uploads", "--yes", "--with-globals")
    assert r.code == 1 and "simulated failure" in r.err
    assert _roles(fresh) == roles_before and databases(fresh) == dbs_before


def test_with_globals_needs_a_globals_object(env):
    r = env.cli("backup", "create", "acme", "--no-uploads", "--json")
    assert r.code == 0, r.err
    bid = r.json()[0]["id"]
    r = env.cli("backup", "restore", bid, "--no-uploads", "--yes", "--with-globals")
    assert r.code == 2 and "holds no globals object" in r.err and len(r.err.strip().splitlines()) == 1


def test_parse_globals_skips_tablespaces_and_strips_grantor():
    g = parse_globals('''
SET standard_conforming_strings = on;
-- a comment; with a semicolon
CREATE ROLE "odd ""name""";
ALTER ROLE "odd ""name""" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 3 VALID UNTIL '2030-01-01 00:00:00+00';
COMMENT ON ROLE "odd ""name""" IS 'has; a semicolon
and a newline';
ALTER ROLE "odd ""name""" IN DATABASE app SET work_mem TO '8MB';
CREATE ROLE grp;
ALTER ROLE grp WITH PASSWORD 'never' LOGIN;
ALTER ROLE grp SET search_path TO x \\! touch /tmp/pwned;
ALTER ROLE grp SET work_mem TO '4MB';
GRANT grp TO "odd ""name""" WITH INHERIT TRUE GRANTED BY postgres;
CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';
''')
    odd = 'odd "name"'
    assert set(g.roles) == {odd, "grp"}
    assert g.roles[odd].attributes.strip().endswith("VALID UNTIL '2030-01-01 00:00:00+00'")
    assert g.roles[odd].extra == ['COMMENT ON ROLE "odd ""name""" IS \'has; a semicolon\nand a newline\'']
    assert g.roles["grp"].attributes == ""  # a PASSWORD clause does not fit the grammar: never applied
    assert g.roles["grp"].extra == ["ALTER ROLE grp SET work_mem TO '4MB'"]  # a psql meta-command is never replayed
    assert g.memberships == [("grp", odd, " WITH INHERIT TRUE")]
    assert g.tablespaces == ["fast"]
