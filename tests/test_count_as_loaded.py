"""Tables of a staging or scratch database counted while pg_restore goes on loading the others:
each early count equals the table's final count (a table is counted only once its COPY has
committed), ambiguous names are left to the count after the load, and the count after the
load gives exactly what counting everything at the end gives."""

from __future__ import annotations

import subprocess

from dumpsafe.compare import check_contents
from dumpsafe.engines import inventory
from dumpsafe.engines import pg_restore as pgr
from dumpsafe.engines.postgres import PgTarget
from dumpsafe.engines.sqlsession import open_session
from recordfactory import make_record

SCHEMA = """
CREATE TABLE a_big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 150000) g;
CREATE TABLE b_mid AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 40000) g;
CREATE TABLE c_empty (x int);
CREATE SCHEMA "d.e";
CREATE TABLE "d.e".f AS SELECT g FROM generate_series(1, 1234) g;   -- printed as d.e.f ...
CREATE SCHEMA d;
CREATE TABLE d."e.f" AS SELECT g FROM generate_series(1, 4321) g;   -- ... and so is this one
CREATE TABLE "d.e".f_kid () INHERITS ("d.e".f);                        -- (not counted early either:
INSERT INTO "d.e".f_kid SELECT g FROM generate_series(1, 10) g;        --  so d.e.f matches one of two)
CREATE TABLE parts (k int, v text) PARTITION BY RANGE (k);
CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (50000);
CREATE TABLE parts_2 PARTITION OF parts FOR VALUES FROM (50000) TO (200000);
INSERT INTO parts SELECT g, md5(g::text) FROM generate_series(1, 120000) g;
CREATE INDEX ON a_big (v);
CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM b_mid;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE feel (m mood, i int) PARTITION BY HASH (m);                -- loaded through its root:
CREATE TABLE feel_0 PARTITION OF feel FOR VALUES WITH (MODULUS 2, REMAINDER 0);  -- a later COPY may
CREATE TABLE feel_1 PARTITION OF feel FOR VALUES WITH (MODULUS 2, REMAINDER 1);  -- add rows to either
INSERT INTO feel SELECT (enum_range(NULL::mood))[1 + g % 3], g FROM generate_series(1, 3000) g;
CREATE TABLE a_inh_parent (x int);                                     -- its count takes in its
CREATE TABLE b_inh_child (y int) INHERITS (a_inh_parent);               -- child's rows, loaded later
INSERT INTO a_inh_parent SELECT g FROM generate_series(1, 500) g;
INSERT INTO b_inh_child SELECT g, g FROM generate_series(1, 700) g;
CREATE TABLE z_last AS SELECT g FROM generate_series(1, 77) g;
"""


def _rel_oids(pg, dbname: str) -> dict[str, int]:
    with pg.connect(dbname) as c:
        return {k: int(o) for k, o in c.execute(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.oid::int8 FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'").fetchall()}


def test_tables_are_counted_as_they_load_and_equal_the_final_counts(pg, new_db):
    src, dst = new_db("cal"), new_db("cal")
    with pg.connect(src) as c:
        c.execute(SCHEMA)
    archive = pg.base / f"{src}.dump"
    subprocess.run([str(pg.bin_dir / "pg_dump"), "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-Fc", "-Z0",
                    "-f", str(archive), src], check=True, env={"PGPASSWORD": pg.password, "PATH": "/usr/bin:/bin"})
    target = PgTarget(tenant="t", host=pg.host, port=pg.port, user=pg.user, password=pg.password)
    early = inventory.CountAsLoaded(lambda: open_session(target, dst))
    seen: list[str | None] = []

    def on_table(table: str | None) -> None:
        seen.append(table)
        early.saw(table)

    with open(archive, "rb") as fh:
        pgr.run_pg_restore(target, str(pg.bin_dir / "pg_restore"), dst, fh.read, on_table=on_table)
    counted = early.finish()

    oids = _rel_oids(pg, dst)
    loaded = [t for t in seen if t is not None]
    assert set(loaded) == {"public.a_big", "public.b_mid", "public.c_empty", "d.e.f", "public.parts_1",
                           "public.parts_2", "public.z_last", "public.feel_0", "public.feel_1",
                           "public.a_inh_parent", "public.b_inh_child", "d.e.f_kid"}
    assert seen[-1] is None  # items after the last table's data (indexes, the view's refresh) were seen
    by_oid = {v: k for k, v in oids.items()}
    # every unambiguous table was counted during the load; the two "d.e.f" ones never, nor
    # the partitions loaded through their root, nor a table with inheritance children
    assert {by_oid[o] for o in counted} == {"public.a_big", "public.b_mid", "public.c_empty", "public.parts_1",
                                            "public.parts_2", "public.z_last", "public.b_inh_child",
                                            '"d.e".f_kid'}
    with open_session(target, dst) as s:
        at_the_end = inventory.count_tables(s)
        combined = inventory.count_tables(s, known=counted)
    assert at_the_end["public.a_big"] == 150000 and at_the_end["public.parts_2"] == 70001
    assert at_the_end["public.a_inh_parent"] == 1200  # a table's count includes its children's rows
    for oid, n in counted.items():  # a count taken before its COPY committed would be short
        assert n == at_the_end[by_oid[oid]], by_oid[oid]
    assert combined == at_the_end and list(combined) == list(at_the_end)

    # a difference is still named when the early counts are used
    record = make_record("2026-11-27T00:00:00Z", tables={**at_the_end, "public.a_big": 150001}).model_copy(
        update={"table_keys": "quoted"})
    with open_session(target, dst) as s:
        _, mismatch = check_contents(record, s, known=counted)
    assert mismatch == "row counts differ for 1 table: public.a_big (recorded 150001 rows, restored 150000 rows)"


def test_a_refused_counting_session_leaves_every_table_to_the_count_after_the_load(pg, new_db):
    name = new_db("cal")
    with pg.connect(name) as c:
        c.execute("CREATE TABLE t1 AS SELECT 1 AS x; CREATE TABLE t2 AS SELECT 2 AS x")
    target = PgTarget(tenant="t", host=pg.host, port=pg.port, user=pg.user, password=pg.password)
    early = inventory.CountAsLoaded(lambda: open_session(target, name + "_gone"))
    for item in ("public.t1", "public.t2", None):
        early.saw(item)
    assert early.finish() == {}
