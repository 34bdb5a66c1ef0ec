"""Selective restores (issue 19): one table back beside the live data (--into-schema) while the
application keeps writing, or some tables into a new database (--mode new); bad selections
refused in one sentence with nothing changed."""

from __future__ import annotations

import json
import threading

import pytest
from conftest import table_digest
from restore_helpers import databases, enrich

ODD_SCHEMA = 'odd.schema "q" ✓'
ODD_TABLE = 'line items. ✓'


def _digest(pg, db: str, schema: str, table: str) -> tuple[int, str]:
    """table_digest for one table whose names need quoting."""
    from psycopg import sql

    with pg.connect(db) as c:
        return c.execute(sql.SQL("SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') "
                                 "FROM {}.{} t").format(sql.Identifier(schema), sql.Identifier(table))).fetchone()


def _schemas(pg, db: str) -> set[str]:
    with pg.connect(db) as c:
        return {r[0] for r in c.execute("SELECT nspname FROM pg_namespace").fetchall()}


def _backup(env) -> str:
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    return r.json()[0]["id"]


class Writer:
    """Another session inserting into app_events, one committed row at a time, until stopped."""

    def __init__(self, pg, db: str):
        self.pg, self.db = pg, db
        self.ids: list[int] = []
        self.stop = threading.Event()
        self.wrote = threading.Condition()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self.pg.connect(self.db) as c:
                while not self.stop.is_set():
                    i = c.execute("INSERT INTO app_events (what) VALUES ('tick') RETURNING id").fetchone()[0]
                    with self.wrote:
                        self.ids.append(i)
                        self.wrote.notify_all()
        except BaseException as e:  # reported by the test
            self.error = e
            with self.wrote:
                self.wrote.notify_all()

    def wait_for(self, n: int) -> None:
        with self.wrote:
            assert self.wrote.wait_for(lambda: len(self.ids) >= n or self.error is not None, timeout=60)
        assert self.error is None, self.error


def test_one_table_into_schema_while_the_app_keeps_writing(env):
    with env.pg.connect(env.db) as c:
        c.execute("CREATE TABLE app_events (id bigserial PRIMARY KEY, what text NOT NULL)")
    enrich(env.pg, env.db)
    at_backup = table_digest(env.pg, env.db)
    bid = _backup(env)
    with env.pg.connect(env.db) as c:  # the incident: rows deleted, a column scrambled
        c.execute("DELETE FROM orders o WHERE id % 3 = 0 AND NOT EXISTS (SELECT 1 FROM billing.invoices i WHERE i.order_id = o.id); UPDATE orders SET note = md5(note || 'x')")
    before = table_digest(env.pg, env.db)
    assert before["public.orders"] != at_backup["public.orders"]

    # the dry run lists what would be created and changes nothing
    r = env.cli("backup", "restore", bid, "--table", "public.orders", "--into-schema", "restored_1", "--dry-run", "--json")
    assert r.code == 0, r.err
    plan = r.json()
    assert plan["dry_run"] is True and plan["tables"] == {"public.orders": at_backup["public.orders"][0]}
    assert "SCHEMA restored_1 (in database %s)" % env.db in plan["would_create"]
    assert "TABLE public.orders" in plan["would_create"] and "TABLE DATA public.orders" in plan["would_create"]
    assert not any("customers" in w.split()[-1] for w in plan["would_create"] if w.startswith("TABLE"))
    assert any("orders_customer_id_fkey" in x for x in plan["left_out"])
    assert "restored_1" not in _schemas(env.pg, env.db) and table_digest(env.pg, env.db) == before

    writer = Writer(env.pg, env.db)
    writer.thread.start()
    writer.wait_for(1)
    try:
        r = env.cli("backup", "restore", bid, "--table", "public.orders", "--into-schema", "restored_1", "--json")
        assert r.code == 0, r.err
        n = len(writer.ids)
        writer.wait_for(n + 1)  # still writing after the restore
    finally:
        writer.stop.set()
        writer.thread.join(timeout=60)
    assert writer.error is None
    res = r.json()
    assert res["tables"] == {"public.orders": at_backup["public.orders"][0]}
    after = table_digest(env.pg, env.db)
    assert after["restored_1.orders"] == at_backup["public.orders"]  # the backup's content, beside the live table
    for k, v in before.items():  # nothing else changed
        if k != "public.app_events":
            assert after[k] == v, k
    with env.pg.connect(env.db) as c:  # the writer lost nothing
        assert sorted(r[0] for r in c.execute("SELECT id FROM app_events").fetchall()) == sorted(writer.ids)
        idx = {r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'restored_1'").fetchall()}
        assert idx == {"orders_pkey", "orders_customer_idx"}
        fks = c.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'restored_1'::regnamespace").fetchone()[0]
        assert fks == 0
        # the owned sequence came along, at its value
        assert c.execute("SELECT last_value FROM restored_1.orders_id_seq").fetchone()[0] == \
            c.execute("SELECT max(id) FROM restored_1.orders").fetchone()[0]
    audit = [json.loads(x) for x in (env.state_dir / "audit.jsonl").read_text().splitlines()]
    last = [a for a in audit if a["action"] == "restore"][-1]
    assert last["outcome"] == "ok" and "public.orders" in json.dumps(last)

    # the same schema again: refused, nothing changed
    r = env.cli("backup", "restore", bid, "--table", "public.orders", "--into-schema", "restored_1")
    assert r.code != 0 and "schema 'restored_1' already exists" in r.err and "Traceback" not in r.err


def test_mode_new_brings_related_tables_with_fk_and_sequence(env):
    import secrets

    reader = "sel_reader_" + secrets.token_hex(3)
    with env.pg.connect(env.db) as c:
        c.execute("SELECT setval('orders_id_seq', 987654)")
        c.execute("COMMENT ON TABLE customers IS 'who buys'")
        c.execute(f"CREATE ROLE {reader}; GRANT SELECT ON orders TO {reader}")
        c.execute("SELECT setval('ticket_seq', 4242)")  # a sequence the tables do not own, drawn by a default
        c.execute("ALTER TABLE customers ADD COLUMN ticket bigint DEFAULT nextval('ticket_seq')")
    at_backup = table_digest(env.pg, env.db)
    try:
        bid = _backup(env)
    finally:
        with env.pg.connect(env.db) as c:
            c.execute(f"REVOKE SELECT ON orders FROM {reader}")
    target = env.db + "_two"
    dbs = databases(env.pg)
    r = env.cli("backup", "restore", bid, "--mode", "new", "--database", target,
                "--table", "public.orders", "--table", "public.customers", "--json")
    assert r.code == 0, r.err
    try:
        got = table_digest(env.pg, target)
        assert got == {"public.orders": at_backup["public.orders"], "public.customers": at_backup["public.customers"]}
        with env.pg.connect(target) as c:
            fk = c.execute("SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
                           "WHERE contype = 'f'").fetchall()
            assert fk == [("orders", "customers")]
            assert c.execute("SELECT last_value FROM orders_id_seq").fetchone()[0] == 987654
            assert c.execute("SELECT last_value FROM ticket_seq").fetchone()[0] == 4242 + 200  # one per customer row
            assert c.execute("SELECT obj_description('customers'::regclass)").fetchone()[0] == "who buys"
            assert c.execute("SELECT count(*) FROM pg_views WHERE schemaname = 'public'").fetchone()[0] == 0
            assert c.execute(f"SELECT has_table_privilege('{reader}', 'orders', 'SELECT')").fetchone()[0] is True
        assert databases(env.pg) == dbs | {target}  # no staging database left behind
    finally:
        env.pg.drop_database(target)
        with env.pg.connect() as c:
            c.execute(f"DROP ROLE {reader}")


def test_odd_names_select_exactly(env):
    with env.pg.connect(env.db) as c:
        c.execute(f'CREATE SCHEMA "{ODD_SCHEMA.replace(chr(34), chr(34) * 2)}"')
        q = '"' + ODD_SCHEMA.replace('"', '""') + '"."' + ODD_TABLE + '"'
        c.execute(f"CREATE TABLE {q} (id int PRIMARY KEY, v text)")
        c.execute(f"INSERT INTO {q} SELECT g, 'v' || g FROM generate_series(1, 37) g")
    at_backup = _digest(env.pg, env.db, ODD_SCHEMA, ODD_TABLE)
    bid = _backup(env)
    r = env.cli("backup", "restore", bid, "--table", f"{ODD_SCHEMA}.{ODD_TABLE}", "--into-schema", "back ✓", "--json")
    assert r.code == 0, r.err
    assert list(r.json()["tables"].values()) == [37]
    assert _digest(env.pg, env.db, "back ✓", ODD_TABLE) == at_backup


def test_unknown_table_is_one_error_and_nothing_changes(env):
    bid = _backup(env)
    before, dbs, schemas = table_digest(env.pg, env.db), databases(env.pg), _schemas(env.pg, env.db)
    for args in (["--into-schema", "restored_x"], ["--mode", "new", "--database", env.db + "_x"]):
        r = env.cli("backup", "restore", bid, "--table", "public.orders", "--table", "public.nope", *args)
        assert r.code == 2, r.err
        assert "table 'public.nope' is not a table of backup" in r.err and "Traceback" not in r.err
        assert len(r.err.strip().splitlines()) == 1
    r = env.cli("backup", "restore", bid, "--table", "public.orders")
    assert r.code == 2 and "needs --mode new" in r.err
    r = env.cli("backup", "restore", bid, "--schema", "nope", "--into-schema", "restored_x")
    assert r.code == 2 and "schema 'nope' holds no table of backup" in r.err
    r = env.cli("backup", "restore", bid, "--table", "public.orders", "--mode", "new")  # the live database exists
    assert r.code != 0 and "--mode new needs a new name (--database NAME)" in r.err
    assert table_digest(env.pg, env.db) == before and databases(env.pg) == dbs and _schemas(env.pg, env.db) == schemas


def test_tampered_dump_is_refused_before_anything_is_written(env):
    bid = _backup(env)
    path = env.store_dir / env.service().get(bid).object("database").key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    dbs, schemas = databases(env.pg), _schemas(env.pg, env.db)
    r = env.cli("backup", "restore", bid, "--table", "public.orders", "--into-schema", "restored_t")
    assert r.code == 1 and "integrity check failed" in r.err
    assert databases(env.pg) == dbs and _schemas(env.pg, env.db) == schemas


@pytest.mark.parametrize("flag", ["--keep-old", "--no-uploads"])
def test_selective_refuses_whole_restore_options(env, flag):
    bid = _backup(env)
    r = env.cli("backup", "restore", bid, "--table", "public.orders", "--into-schema", "r", flag)
    assert r.code == 2 and "restore tables only" in r.err


def _staging_left(env) -> list[str]:
    return [d for d in databases(env.pg) if "_dsstage_" in d]


def test_a_failure_inside_the_copy_rolls_the_whole_schema_back(env):
    """pg_restore fails half-way through the copy into the live database (an event trigger
    refuses the indexes, after the schema, tables and rows were created): one transaction,
    so no schema is left behind, and the staging database is dropped."""
    bid = _backup(env)
    with env.pg.connect(env.db) as c:
        c.execute("CREATE FUNCTION no_index() RETURNS event_trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN RAISE EXCEPTION 'no indexes today'; END $$")
        c.execute("CREATE EVENT TRIGGER no_index ON ddl_command_end WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION no_index()")
    before, schemas = table_digest(env.pg, env.db), _schemas(env.pg, env.db)
    r = env.cli("backup", "restore", bid, "--table", "public.orders", "--into-schema", "restored_f")
    assert r.code == 1 and "was rolled back" in r.err and "no indexes today" in r.err, r.err
    assert _schemas(env.pg, env.db) == schemas and table_digest(env.pg, env.db) == before
    assert _staging_left(env) == []


@pytest.mark.parametrize("point", ["restore_selective.after_staged", "restore_selective.after_copy"])
def test_kill_then_recover_leaves_all_or_nothing(env, point):
    from dumpsafe.failpoints import points
    from test_failpoints_backup import run_killed

    assert set(points("restore_selective")) == {"restore_selective.after_staged", "restore_selective.after_copy"}
    at_backup = table_digest(env.pg, env.db)["public.orders"]
    bid = _backup(env)
    before = table_digest(env.pg, env.db)
    run_killed(env, point, "backup", "restore", bid, "--table", "public.orders", "--into-schema", "restored_k")
    r = env.cli("recover", "--json")
    assert r.code == 0, r.err
    assert _staging_left(env) == []
    after = table_digest(env.pg, env.db)
    if point.endswith("after_copy"):  # committed: the whole schema
        assert after.pop("restored_k.orders") == at_backup
    else:
        assert "restored_k" not in _schemas(env.pg, env.db)
    assert after == before
