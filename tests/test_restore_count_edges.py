"""Tables whose rows another table's COPY adds to, restored and drilled end to end:

- a table hash-partitioned on an enum column: pg_dump loads its partitions' rows through the
  partitioned root (an enum hashes by its OID, which a restore changes, so a row may land in
  another partition). Every restore mode and the drill must still succeed and bring every row
  back, comparing the sum over the root's partitions; a lost row is still named.
- a table with inheritance children: its count takes in theirs, which are loaded after it, so
  it must not be counted while the load goes on.
"""

from __future__ import annotations

from dumpsafe.compare import check_contents
from dumpsafe.engines import inventory
from dumpsafe.engines.postgres import PgTarget
from dumpsafe.engines.sqlsession import open_session

FEELINGS = """
CREATE TYPE mood AS ENUM ('m00', 'm01', 'm02', 'm03', 'm04', 'm05', 'm06', 'm07', 'm08', 'm09', 'm10', 'm11', 'm12', 'm13', 'm14', 'm15', 'm16', 'm17', 'm18', 'm19');  -- 20 labels: a new set of
-- OIDs all hashing to the same partitions as before is practically impossible (3^-20)
CREATE TABLE feelings (m mood NOT NULL, i int NOT NULL) PARTITION BY HASH (m);
CREATE TABLE feelings_0 PARTITION OF feelings FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE feelings_1 PARTITION OF feelings FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE feelings_2 PARTITION OF feelings FOR VALUES WITH (MODULUS 3, REMAINDER 2);
INSERT INTO feelings SELECT (enum_range(NULL::mood))[1 + g % 20], g FROM generate_series(1, 5000) g;
CREATE TABLE spans (k int NOT NULL) PARTITION BY RANGE (k);
CREATE TABLE spans_low PARTITION OF spans FOR VALUES FROM (0) TO (100);
CREATE TABLE spans_high PARTITION OF spans FOR VALUES FROM (100) TO (1000);
INSERT INTO spans SELECT g FROM generate_series(0, 999) g;
"""
CONTENT = "SELECT m::text, count(*), sum(i) FROM feelings GROUP BY 1 ORDER BY 1"


def test_hash_partitions_on_an_enum_restore_in_every_mode_and_drill(env):
    with env.pg.connect(env.db) as c:
        c.execute(FEELINGS)
        before = c.execute(CONTENT).fetchall()
    r = env.cli("backup", "create", "acme", "--no-uploads", "--json")
    assert r.code == 0, r.err
    rec = r.json()[0]
    # which partition holds which rows depends on the enum's OIDs, different in every database
    assert sum(rec["tables"][f"public.feelings_{i}"] for i in range(3)) == 5000
    assert rec["partitioned"]["public.feelings"] == 5000
    copy = env.db + "_hash"
    for mode, target in (("new", copy), ("atomic", env.db), ("clean", env.db)):
        r = env.cli("backup", "restore", rec["id"], "--database", target, "--mode", mode, "--no-uploads", "--yes", "--json")
        assert r.code == 0, (mode, r.err)
        with env.pg.connect(target) as c:
            assert c.execute(CONTENT).fetchall() == before, mode
            assert c.execute("SELECT count(*) FROM spans_low").fetchone()[0] == 100
    r = env.cli("backup", "verify", rec["id"], "--drill", "--json")
    assert r.code == 0, r.err
    assert r.json()["last_verification"]["result"] == "passed"

    target = PgTarget(tenant="t", host=env.pg.host, port=env.pg.port, user=env.pg.user, password=env.pg.password)
    with open_session(target, copy) as s:
        # only the hash-on-enum tree goes through its root; the range tree's partitions are compared one by one
        assert inventory.loaded_via_root(s) == {f"public.feelings_{i}": "public.feelings" for i in range(3)}
        assert inventory.loaded_via_root(s, quoted=False) == {f"public.feelings_{i}": "public.feelings" for i in range(3)}
        # a row short in that tree, or in a range partition, is still named
        svc = env.service()
        record = svc.get(rec["id"])
        short = record.model_copy(update={"tables": {**record.tables, "public.feelings_0": record.tables["public.feelings_0"] + 1,
                                                     "public.spans_low": 101}})
        _, mismatch = check_contents(short, s)
    assert mismatch.startswith("row counts differ for 2 tables: ")
    assert "public.feelings's partitions (recorded 5001 rows, restored 5000 rows)" in mismatch
    assert "public.spans_low (recorded 101 rows, restored 100 rows)" in mismatch
    env.pg.drop_database(copy)


def test_an_inheritance_parent_restores_and_drills_with_its_childrens_rows(env):
    with env.pg.connect(env.db) as c:
        c.execute("""
            CREATE TABLE a_base (x int);
            CREATE TABLE b_derived (y int) INHERITS (a_base);
            INSERT INTO a_base SELECT g FROM generate_series(1, 3000) g;
            INSERT INTO b_derived SELECT g, g FROM generate_series(1, 4000) g;
        """)
    r = env.cli("backup", "create", "acme", "--no-uploads", "--json")
    assert r.code == 0, r.err
    rec = r.json()[0]
    assert rec["tables"]["public.a_base"] == 7000 and rec["tables"]["public.b_derived"] == 4000
    copy = env.db + "_inh"
    for mode, target in (("new", copy), ("atomic", env.db)):
        r = env.cli("backup", "restore", rec["id"], "--database", target, "--mode", mode, "--no-uploads", "--yes", "--json")
        assert r.code == 0, (mode, r.err)
        with env.pg.connect(target) as c:
            assert c.execute("SELECT count(*) FROM ONLY a_base").fetchone()[0] == 3000
            assert c.execute("SELECT count(*) FROM a_base").fetchone()[0] == 7000
    r = env.cli("backup", "verify", rec["id"], "--drill", "--json")
    assert r.code == 0, r.err
    env.pg.drop_database(copy)
