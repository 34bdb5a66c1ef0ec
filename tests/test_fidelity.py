"""Restore fidelity: the database comes back as it was backed up (its own properties, schema and
contents) in every mode, or the restore is refused before anything changes.

One feature-rich fixture (tests/fidelity_db.py) is built and backed up once per module; each
test restores it in one mode and compares, in SQL written independently of dumpsafe, the
properties (pg_database, pg_db_role_setting, shobj_description, aclexplode), the schema
fingerprint and every table's contents with the backup-time state.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from psycopg import sql

import fidelity_db as F
from conftest import PASSWORD_ENV, Env
from restore_helpers import databases


@pytest.fixture(scope="module")
def fid(pg, tmp_path_factory):
    """The fixture databases, a config naming them, one backup of each, and their state at backup time."""
    F.build(pg)
    root = tmp_path_factory.mktemp("fidelity")
    (root / "uploads").mkdir()
    env = Env(root=root, pg=pg, db=F.FID, uploads=root / "uploads")
    dbs = ", ".join(f"\"{d}\"" for d in (F.FID, F.LATIN, F.TMPL, "fid_gone"))
    env.config_path.write_text(f"""state_dir = "state"
[stores.local]
kind = "local"
path = "backups"

[tenants.acme]
host = "127.0.0.1"
port = {pg.port}
user = "postgres"
password_env = "{PASSWORD_ENV}"
databases = [{dbs}]
""")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PASSWORD_ENV, pg.password)
        mp.delenv("DUMPSAFE_CONFIG", raising=False)
        ids, states = {}, {}
        for db in (F.FID, F.LATIN, F.TMPL):
            states[db] = F.state(pg, db)
            r = env.cli("backup", "create", "acme", "--database", db, "--no-uploads", "--json")
            assert r.code == 0, r.err
            ids[db] = r.json()[0]["id"]
        yield env, ids, states


def _drop(pg, name: str) -> None:
    with pg.connect() as c:
        c.execute(sql.SQL("UPDATE pg_database SET datistemplate = false WHERE datname = {}").format(sql.Literal(name)))
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _leftovers(pg) -> set[str]:
    return {d for d in databases(pg) if "_dsstage_" in d or "_dsold_" in d or d.startswith("dumpsafe_drill_")}


def test_the_record_keeps_properties_fingerprint_and_unambiguous_counts(fid):
    env, ids, _ = fid
    rec = env.cli("backup", "get", ids[F.FID], "--json").json()
    t = rec["tables"]
    assert rec["table_keys"] == "quoted"
    assert t['"x.y".z'] == 3 and t['x."y.z"'] == 5  # two tables, two keys
    assert t['app."Ünïcode ✓ table"'] == 2 and t['app."select"'] == 1 and t['app."quo""te"'] == 1 and t['app."my table"'] == 1
    assert rec["partitioned"] == {"app.events": 121, "app.regions": 4}
    assert rec["matviews"] == {"app.kinds": 3, "app.kinds_later": None}
    assert rec["large_objects"] == {"count": 2, "bytes": len("first large object") + 30000}
    props = rec["database_properties"]
    assert props["owner"] == F.OWNER and props["tablespace"] == F.TABLESPACE and props["connection_limit"] == 17
    assert props["locale_provider"] == "icu" and props["icu_locale"] == "de-DE"
    assert {"role": None, "setting": "search_path=app, public"} in props["settings"]
    assert {"role": F.APP, "setting": 'search_path=app, "$user", public'} in props["settings"]
    assert {"grantee": F.APP, "privilege": "CREATE", "grantor": F.GRANTOR, "grantable": False} in props["grants"]
    assert not any(g["grantee"] == "PUBLIC" and g["privilege"] == "CONNECT" for g in props["grants"])
    assert len(rec["schema_sha256"]) == 64


def test_new_mode_creates_the_backups_database(fid, pg):
    env, ids, states = fid
    target = "fid copy ✓ " + secrets.token_hex(2)
    r = env.cli("backup", "restore", ids[F.FID], "--database", target, "--no-uploads", "--json")
    assert r.code == 0, r.err
    try:
        assert F.state(pg, target) == states[F.FID]
        assert F.app_finds_its_tables(pg, target) == (40, 1)
    finally:
        _drop(pg, target)
    assert not _leftovers(pg)


def test_atomic_over_a_target_changed_after_the_backup(fid, pg):
    env, ids, states = fid
    db = sql.Identifier(F.FID)
    with pg.connect() as c:
        c.execute(sql.SQL("ALTER DATABASE {} SET search_path = public").format(db))
        c.execute(sql.SQL("ALTER DATABASE {} RESET work_mem").format(db))
        c.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(sql.Identifier(F.APP), db))
        c.execute(sql.SQL("COMMENT ON DATABASE {} IS 'changed'").format(db))
        c.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 3").format(db))
        c.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(db))
    with pg.connect(F.FID) as c:
        c.execute("DELETE FROM app.things WHERE id > 10; SELECT setval('app.tickets', 1); "
                  "SELECT lo_unlink(min(oid)) FROM pg_largeobject_metadata")
    assert F.state(pg, F.FID) != states[F.FID]

    pf = env.cli("backup", "restore", ids[F.FID], "--dry-run", "--no-uploads", "--json").json()
    assert pf["ok"] and pf["roles_missing"] == [] and {F.OWNER, F.GRANTOR, F.APP} <= set(pf["roles_needed"])
    changed = " | ".join(pf["property_changes"])
    assert "connection_limit (3 → 17)" in changed and "comment ('changed' → " in changed
    assert "search_path=app, public" in changed and "grants" in changed

    for _ in range(2):  # a second restore over the restored database changes nothing
        r = env.cli("backup", "restore", ids[F.FID], "--yes", "--no-uploads", "--json")
        assert r.code == 0, r.err
        assert F.state(pg, F.FID) == states[F.FID]
        assert F.app_finds_its_tables(pg, F.FID) == (40, 1)
    assert not _leftovers(pg)


def test_clean_over_partitioned_tables_with_keys_brings_back_the_database(fid, pg):
    """Partitioned tables with primary keys (range, list, default partitions) clean-restore; the
    database's own properties changed after the backup are the backup's again."""
    env, ids, states = fid
    db = sql.Identifier(F.FID)
    with pg.connect(F.FID) as c:
        c.execute("DELETE FROM app.events WHERE kind = 'k1'; UPDATE app.regions SET name = 'x'; SELECT setval('app.tickets', 3)")
    with pg.connect() as c:
        c.execute(sql.SQL("ALTER DATABASE {} SET search_path = public").format(db))
        c.execute(sql.SQL("COMMENT ON DATABASE {} IS 'changed'").format(db))
    pf = env.cli("backup", "restore", ids[F.FID], "--mode", "clean", "--dry-run", "--no-uploads", "--json").json()
    assert pf["ok"], pf["problems"]
    r = env.cli("backup", "restore", ids[F.FID], "--mode", "clean", "--yes", "--no-uploads", "--json")
    assert r.code == 0, r.err
    assert F.state(pg, F.FID) == states[F.FID]
    assert F.app_finds_its_tables(pg, F.FID) == (40, 1)


def test_clean_mode_brings_back_contents_and_the_databases_own_properties(fid, pg):
    env, ids, states = fid
    with pg.connect(F.LATIN) as c:
        c.execute("UPDATE words SET w = 'x'")
    db = sql.Identifier(F.LATIN)
    with pg.connect() as c:  # changed after the backup: all of it must go
        c.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '9MB'").format(db))
        c.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = nowhere").format(sql.Identifier(F.APP), db))
        c.execute(sql.SQL("COMMENT ON DATABASE {} IS 'changed'").format(db))
        c.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 4").format(db))
        c.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
        c.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {} WITH GRANT OPTION").format(db, sql.Identifier(F.GRANTOR)))
        c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(F.GRANTOR)))
        c.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(db, sql.Identifier(F.APP)))
        c.execute("RESET ROLE")
        c.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(F.APP)))
    assert F.properties(pg, F.LATIN) != states[F.LATIN]["properties"]
    r = env.cli("backup", "restore", ids[F.LATIN], "--mode", "clean", "--yes", "--no-uploads", "--json")
    assert r.code == 0, r.err
    assert F.state(pg, F.LATIN) == states[F.LATIN]


def test_latin1_c_database_restores_new_and_drills(fid, pg):
    env, ids, states = fid
    target = "fid_latin1_copy"
    r = env.cli("backup", "restore", ids[F.LATIN], "--database", target, "--no-uploads", "--json")
    assert r.code == 0, r.err
    try:
        got = F.state(pg, target)
        assert got == states[F.LATIN] and got["properties"]["encoding"] == "LATIN1" and got["properties"]["collate"] == "C"
    finally:
        _drop(pg, target)
    r = env.cli("backup", "verify", ids[F.LATIN], "--drill", "--json")
    assert r.code == 0, r.err


def test_template_database_swaps_and_restores_new_cleanly(fid, pg):
    env, ids, states = fid
    with pg.connect(F.TMPL) as c:
        c.execute("DELETE FROM seed")
    r = env.cli("backup", "restore", ids[F.TMPL], "--yes", "--no-uploads", "--json")
    assert r.code == 0, r.err
    assert F.state(pg, F.TMPL) == states[F.TMPL] and states[F.TMPL]["properties"]["is_template"] is True
    target = "fid_tmpl_copy"
    r = env.cli("backup", "restore", ids[F.TMPL], "--database", target, "--no-uploads", "--json")
    assert r.code == 0, r.err
    try:
        assert F.properties(pg, target)["is_template"] is True
    finally:
        _drop(pg, target)
    assert not _leftovers(pg)
    r = env.cli("backup", "verify", ids[F.TMPL], "--drill", "--json")
    assert r.code == 0, r.err
    assert not _leftovers(pg)


def test_drill_compares_the_whole_database(fid, pg):
    env, ids, _ = fid
    r = env.cli("backup", "verify", ids[F.FID], "--drill", "--json")
    assert r.code == 0, r.err
    v = r.json()["last_verification"]
    compared = " | ".join(v["compared"])
    for what in ("row counts of", "2 partitioned tables", "2 materialized views", "2 large objects", "sequence values",
                 "database properties", "schema fingerprint"):
        assert what in compared
    assert not _leftovers(pg)


def test_drill_over_a_damaged_scratch_database_fails_and_names_it(fid, pg):
    from dumpsafe.verify import Verifier

    env, ids, _ = fid

    class Damaging(Verifier):
        count_as_loaded = False  # the damage lands after the load: counts taken during it cannot see it

        def before_compare(self, target, scratch):
            with pg.connect() as c:
                c.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 99").format(sql.Identifier(scratch)))
                c.execute(sql.SQL("ALTER DATABASE {} RESET search_path").format(sql.Identifier(scratch)))
            with pg.connect(scratch) as c:
                c.execute("SELECT setval('app.tickets', 7); DELETE FROM \"x.y\".z WHERE i = 1; ALTER TABLE app.things ADD COLUMN extra int")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PASSWORD_ENV, pg.password)
        svc = env.service()
        from dumpsafe.errors import RestoreFailed

        with pytest.raises(RestoreFailed) as e:
            Damaging(svc).verify(ids[F.FID], drill=True)
    msg = str(e.value)
    assert "connection_limit (99 → 17)" in msg and "search_path=app, public" in msg
    assert "app.tickets" in msg and '"x.y".z (recorded 3 rows, restored 2 rows)' in msg and "schema fingerprint differs" in msg
    assert svc.get(ids[F.FID]).last_verification.result == "failed"
    assert not _leftovers(pg)


def test_a_property_the_server_cannot_take_is_refused_before_anything_changes(fid, pg):
    env, _, _ = fid
    gone_ts, gone_role, db = "fid_gone_ts", "fid gone owner", "fid_gone"
    ts_dir = Path(pg.base) / "ts_gone"
    ts_dir.mkdir(exist_ok=True)
    pg._chown(ts_dir)
    with pg.connect() as c:
        c.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(gone_role)))
        c.execute(sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(sql.Identifier(gone_ts), sql.Literal(str(ts_dir))))
        c.execute(sql.SQL("CREATE DATABASE {} OWNER {} TABLESPACE {}").format(
            sql.Identifier(db), sql.Identifier(gone_role), sql.Identifier(gone_ts)))
    with pg.connect(db) as c:
        c.execute(sql.SQL("CREATE TABLE t (i int); INSERT INTO t VALUES (1), (2); ALTER TABLE t OWNER TO {}").format(
            sql.Identifier(gone_role)))
    r = env.cli("backup", "create", "acme", "--database", db, "--no-uploads", "--json")
    assert r.code == 0, r.err
    bid = r.json()[0]["id"]
    _drop(pg, db)
    with pg.connect() as c:
        c.execute(sql.SQL("DROP TABLESPACE {}").format(sql.Identifier(gone_ts)))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(gone_role)))
    before = databases(pg)

    pf = env.cli("backup", "restore", bid, "--no-uploads", "--dry-run", "--json").json()
    text = " | ".join(pf["problems"])
    assert not pf["ok"] and f"tablespace '{gone_ts}'" in text and "--no-tablespaces" in text
    assert f"owner role '{gone_role}'" in text and "--no-owner" in text
    r = env.cli("backup", "restore", bid, "--no-uploads", "--yes")
    assert r.code == 1 and "--no-tablespaces" in r.err and "nothing was changed" in r.err
    assert databases(pg) == before

    r = env.cli("backup", "restore", bid, "--no-uploads", "--yes", "--no-tablespaces", "--owner", F.APP, "--json")
    assert r.code == 0, r.err
    try:
        props = F.properties(pg, db)
        assert props["owner"] == F.APP and props["tablespace"] == "pg_default"
        with pg.connect(db) as c:
            assert c.execute("SELECT tableowner, (SELECT count(*) FROM t) FROM pg_tables WHERE tablename = 't'").fetchone() == (F.APP, 2)
    finally:
        _drop(pg, db)
    r = env.cli("backup", "restore", bid, "--no-uploads", "--yes", "--no-tablespaces", "--no-owner", "--json")
    assert r.code == 0, r.err
    try:
        assert F.properties(pg, db)["owner"] == "postgres"
    finally:
        _drop(pg, db)


def test_sweep_drops_every_leftover_dumpsafe_creates_and_nothing_else(fid, pg):
    from dumpsafe.engines import databases as dbs

    env, _, _ = fid
    orphan_old, orphan_stage = "fid_dsold_0badf00d", "fid_dsstage_0badf00d"
    held, foreign = "fid_dsold_feedbeef", "fid_dsold_notours"
    with pg.connect() as c:
        for name in (orphan_old, orphan_stage, held, foreign):
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        c.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(orphan_old)))
    target = env.service().pg_target("acme")
    try:
        with dbs.claimed(target, held):  # a live restore holds it
            swept = dbs.sweep_orphans(target)
        assert orphan_old in swept and orphan_stage in swept
        left = databases(pg)
        assert orphan_old not in left and orphan_stage not in left and held in left and foreign in left
    finally:
        for name in (orphan_old, orphan_stage, held, foreign):
            _drop(pg, name)


def test_records_written_before_quoted_keys_still_restore_dry_run_and_drill(env):
    """A record as older dumpsafe wrote it: plain "schema.table" keys, none of the newer fields."""
    with env.pg.connect(env.db) as c:
        c.execute('CREATE SCHEMA "odd schema"; CREATE TABLE "odd schema"."t 1" (i int); INSERT INTO "odd schema"."t 1" VALUES (7)')
    r = env.cli("backup", "create", "acme", "--no-uploads", "--json")
    assert r.code == 0, r.err
    bid = r.json()[0]["id"]
    svc = env.service()
    rec = svc.get(bid)
    plain = {}
    for key, n in rec.tables.items():
        from dumpsafe.engines.toc import split_key

        s, t = split_key(key, True)
        plain[f"{s}.{t}"] = n
    data = rec.to_json_dict()
    for k in ("table_keys", "partitioned", "matviews", "large_objects", "database_properties", "schema_sha256"):
        data.pop(k)
    data["tables"] = plain
    from dumpsafe.models import BackupRecord

    old = BackupRecord.model_validate(data)
    assert old.table_keys == "plain" and old.tables["odd schema.t 1"] == 1
    svc.save_record(old)

    pf = env.cli("backup", "restore", bid, "--database", env.db + "_old", "--dry-run", "--no-uploads", "--json").json()
    assert pf["ok"] and pf["tables_without_data"] == [], pf["problems"]
    r = env.cli("backup", "restore", bid, "--database", env.db + "_old", "--no-uploads", "--json")
    assert r.code == 0, r.err
    env.pg.drop_database(env.db + "_old")
    r = env.cli("backup", "verify", bid, "--drill", "--json")
    assert r.code == 0, r.err
    assert r.json()["last_verification"]["compared"][0] == f"row counts of {len(plain)} tables"


def test_clean_refuses_a_target_whose_encoding_it_cannot_change(fid, pg):
    env, ids, _ = fid
    target = "fid_utf8_target"
    with pg.connect() as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(target)))
    try:
        pf = env.cli("backup", "restore", ids[F.LATIN], "--database", target, "--mode", "clean", "--dry-run",
                     "--no-uploads", "--json").json()
        assert not pf["ok"] and any("encoding ('UTF8', backup 'LATIN1')" in p for p in pf["problems"])
        r = env.cli("backup", "restore", ids[F.LATIN], "--database", target, "--mode", "clean", "--yes", "--no-uploads")
        assert r.code == 1 and "encoding ('UTF8', backup 'LATIN1')" in r.err and "--mode atomic" in r.err
        with pg.connect(target) as c:
            assert c.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
    finally:
        _drop(pg, target)


def test_clean_keeps_extension_functions_executable_under_revoking_default_privileges(env):
    """The extension was created before default privileges revoked EXECUTE from PUBLIC: its
    functions stay executable by PUBLIC after a clean restore, as in the backup."""
    q = ("SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e' "
         "WHERE has_function_privilege('public', p.oid, 'EXECUTE')")
    with env.pg.connect(env.db) as c:
        c.execute("CREATE EXTENSION citext; ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")
        executable = c.execute(q).fetchone()[0]
    assert executable > 40
    r = env.cli("backup", "create", "acme", "--no-uploads", "--json")
    assert r.code == 0, r.err
    bid = r.json()[0]["id"]
    r = env.cli("backup", "restore", bid, "--mode", "clean", "--yes", "--no-uploads", "--json")
    assert r.code == 0, r.err
    with env.pg.connect(env.db) as c:
        assert c.execute(q).fetchone()[0] == executable
        assert c.execute("SELECT count(*) FROM pg_default_acl").fetchone()[0] == 1


def _utf8_cluster():
    """A second cluster whose default locale is C.UTF-8 (the session cluster's is C), where a
    database created without the archive's locale cannot be LATIN1."""
    from dumpsafe.devcluster import Cluster

    class Utf8(Cluster):
        def _run(self, argv, **kw):
            return super()._run(["--locale=C.UTF-8" if a == "--locale=C" else a for a in argv], **kw)

    return Utf8(password="pw-" + secrets.token_hex(8))


def test_latin1_c_database_drills_on_a_server_whose_default_locale_is_utf8(fid, tmp_path, monkeypatch):
    env, ids, states = fid
    other = _utf8_cluster().init().start()
    try:
        with other.connect() as c:
            assert c.execute("SELECT datcollate FROM pg_database WHERE datname = 'template1'").fetchone()[0] == "C.UTF-8"
        monkeypatch.setenv("UTF8_PGPASSWORD", other.password)
        text = env.config_path.read_text().replace('path = "backups"', f'path = "{env.store_dir}"')
        text = text.replace("[tenants.acme]", f"""[drill_servers.utf8]
host = "127.0.0.1"
port = {other.port}
user = "postgres"
password_env = "UTF8_PGPASSWORD"

[tenants.acme]
drill_server = "utf8\"""")
        drill_env = Env(root=tmp_path, pg=env.pg, db=F.LATIN, uploads=env.uploads)
        drill_env.config_path.write_text(text)
        monkeypatch.setenv(PASSWORD_ENV, env.pg.password)
        r = drill_env.cli("backup", "verify", ids[F.LATIN], "--drill", "--json")
        assert r.code == 0, r.err
        v = r.json()["last_verification"]
        assert v["server"] == f"127.0.0.1:{other.port}" and "database properties" in v["compared"]
    finally:
        other.destroy()


def test_a_libc_locale_the_server_lacks_is_named_and_nothing_stays(pg):
    """The check is exact (a temporary collation, rolled back): a missing locale is named, an
    installed one passes, and the server keeps no trace of the probe."""
    from dumpsafe.engines.databases import unsupported_properties
    from dumpsafe.engines.dbspec import parse_spec
    from dumpsafe.engines.sqlsession import open_session
    from dumpsafe.engines.postgres import PgTarget

    target = PgTarget(tenant="acme", host=pg.host, port=pg.port, user=pg.user, password=pg.password)
    missing = parse_spec(["CREATE DATABASE x WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc "
                          "LOCALE = 'xx_NOWHERE.UTF-8'"])
    present = parse_spec(["CREATE DATABASE x WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc "
                          "LC_COLLATE = 'C.UTF-8' LC_CTYPE = 'C'"])
    with open_session(target, "postgres") as s:
        problems = unsupported_properties(s, missing, owner=None, no_owner=False, tablespaces=True)
        assert len(problems) == 2 and "libc locale 'xx_NOWHERE.UTF-8' (collation) is not installed" in problems[0]
        assert unsupported_properties(s, present, owner=None, no_owner=False, tablespaces=True) == []
        assert s.rows("SELECT count(*) FROM pg_collation WHERE collname = 'dumpsafe_probe'")[0][0] == 0


def test_drill_on_another_major_says_the_fingerprint_was_not_compared(env, monkeypatch):
    """pg_dump of another major writes the same schema differently (e.g. spacing in ALTER DEFAULT
    PRIVILEGES): the drill compares everything else and says it left the fingerprint out."""
    import importlib.util

    bin16 = Path(importlib.util.find_spec("pgserver").submodule_search_locations[0]) / "pginstall" / "bin"  # dev extra
    from dumpsafe.devcluster import Cluster

    other = Cluster(password="pw16-" + secrets.token_hex(6), bin_dir=bin16).init().start()
    try:
        monkeypatch.setenv("PG16_PASSWORD", other.password)
        r = env.cli("backup", "create", "acme", "--no-uploads", "--json")
        assert r.code == 0, r.err
        with_ext = r.json()[0]["id"]
        with env.pg.connect(env.db) as c:  # this PostgreSQL 16 build has no contrib extensions
            c.execute("DROP EXTENSION pgcrypto CASCADE")
        r = env.cli("backup", "create", "acme", "--no-uploads", "--json")
        assert r.code == 0, r.err
        bid = r.json()[0]["id"]
        env.config_path.write_text(env.config_path.read_text().replace("[tenants.acme]", f"""[drill_servers.pg16]
host = "127.0.0.1"
port = {other.port}
user = "postgres"
password_env = "PG16_PASSWORD"
pg_bin_dir = "{bin16}"

[tenants.acme]
drill_server = "pg16\""""))
        r = env.cli("backup", "verify", with_ext, "--drill")
        assert r.code == 1 and "extensions not available there: pgcrypto" in r.err
        r = env.cli("backup", "verify", bid, "--drill", "--json")
        assert r.code == 0, r.err
        compared = r.json()["last_verification"]["compared"]
        assert "database properties" in compared
        assert any(c.startswith("schema fingerprint not compared (pg_dump 16.") for c in compared)
    finally:
        other.destroy()


def test_anomaly_check_sees_the_same_table_across_the_switch_to_quoted_keys():
    """The first backup with quoted keys is compared with older ones by (schema, table), so a
    table whose name needs quoting is not reported missing; a real drop still is."""
    from dumpsafe.anomaly import detect
    from recordfactory import make_record

    old = make_record("2026-11-01T00:00:00Z", tables={"odd schema.T 1": 100, "public.orders": 50})
    new = make_record("2026-11-02T00:00:00Z", tables={'"odd schema"."T 1"': 100, "public.orders": 50})
    new = new.model_copy(update={"table_keys": "quoted"})
    assert detect(new, [old], drop=0.5) == []
    fell = new.model_copy(update={"tables": {'"odd schema"."T 1"': 10, "public.orders": 50}})
    assert detect(fell, [old], drop=0.5) == ['table "odd schema"."T 1" fell 90 %: 10 rows against a median of 100']
