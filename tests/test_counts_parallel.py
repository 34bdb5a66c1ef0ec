"""Row counts of a staging or scratch database over several sessions: the same exact counts
as one session, keyed the same way, with the extra sessions really used."""

from __future__ import annotations

from contextlib import contextmanager

from dumpsafe.compare import counted_in_parallel
from dumpsafe.engines import inventory
from dumpsafe.engines.postgres import PgTarget
from dumpsafe.engines.sqlsession import open_session


def test_parallel_counts_equal_serial_counts(pg, new_db):
    name = new_db("cnt")
    with pg.connect(name) as c:
        c.execute('CREATE SCHEMA "we.ird"')
        c.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 60000) g")
        c.execute("CREATE TABLE mid AS SELECT g AS id FROM generate_series(1, 7000) g")
        c.execute('CREATE TABLE "we.ird"."Quoted Name" AS SELECT g FROM generate_series(1, 321) g')
        c.execute('CREATE TABLE "we.ird".small (x int)')
        c.execute("INSERT INTO \"we.ird\".small VALUES (1), (2)")
        c.execute("CREATE TABLE empty (x int)")
    target = PgTarget(tenant="t", host=pg.host, port=pg.port, user=pg.user, password=pg.password)
    opened = []

    @contextmanager
    def more():
        with open_session(target, name) as s:
            opened.append(s)
            yield s

    with open_session(target, name) as s:
        serial = inventory.count_tables(s)
        parallel = inventory.count_tables(s, more=more, workers=3)
        plain = inventory.count_tables(s, quoted=False, more=more, workers=3)
    assert serial == {"public.big": 60000, "public.mid": 7000, '"we.ird"."Quoted Name"': 321,
                      '"we.ird".small': 2, "public.empty": 0}
    assert parallel == serial and list(parallel) == list(serial)  # same keys, same order
    assert plain["we.ird.Quoted Name"] == 321 and plain["public.big"] == 60000
    assert len(opened) == 4  # two extra sessions per parallel count
    # no extra connection to be had (here: a database that is not there): one session counts all
    with open_session(target, name) as s:
        alone = inventory.count_tables(s, more=lambda: open_session(target, name + "_gone"), workers=3)
    assert alone == serial
    assert counted_in_parallel(target, name)["workers"] >= 1
    assert counted_in_parallel(PgTarget(tenant="t", host="h", port=1, user="u", exec_prefix=("docker", "exec", "c")), name) == {}
