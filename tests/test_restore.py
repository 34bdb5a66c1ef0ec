"""Restore against a real PostgreSQL and real files: every mode round-trips, and every failure
(tampered bytes, a killed pg_restore, a missing role, an unsafe tar) leaves the target as it was."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from restore_helpers import audit_lines, databases, db_state, enrich, pids_with, tree_state
from waiting import wait_for


@pytest.fixture
def backed_up(env):
    """A richer database, backed up; returns (backup id, state at backup time, uploads tree at backup time)."""
    enrich(env.pg, env.db)
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    return r.json()[0]["id"], db_state(env.pg, env.db), tree_state(env.uploads)


def damage(env) -> None:
    """Change the live database and uploads tree the way an incident would."""
    with env.pg.connect(env.db) as c:
        c.execute("""
            DELETE FROM billing.invoices WHERE id % 2 = 0;
            UPDATE customers SET name = 'overwritten';
            DROP MATERIALIZED VIEW order_stats;
            DROP VIEW customer_totals;
            SELECT setval('ticket_seq', 9999);
            SELECT lo_unlink(424242);
            CREATE TABLE stray (i int);
        """)
    (env.uploads / "invoices/README.txt").write_text("defaced\n")
    (env.uploads / "tenant-files/00/upload-000.bin").unlink()
    (env.uploads / "new-junk.txt").write_text("junk")


def test_atomic_in_place_restores_everything(env, backed_up):
    bid, state, tree = backed_up
    damage(env)
    assert db_state(env.pg, env.db) != state
    before_dbs = databases(env.pg)

    t0 = time.monotonic()
    r = env.cli("backup", "restore", bid, "--yes", "--json")
    elapsed = time.monotonic() - t0
    assert r.code == 0, r.err
    res = r.json()
    assert res["mode"] == "atomic" and res["database"] == env.db and res["kept_old"] is None
    assert res["tables"] == 3 and res["rows"] == 1200 and res["uploads"]["files"] == 25

    assert db_state(env.pg, env.db) == state  # tables, sequences, LOs, views, indexes, FKs...
    assert tree_state(env.uploads) == tree
    assert databases(env.pg) == before_dbs  # no staging or old database left behind
    assert not list(env.uploads.parent.glob(".uploads.dumpsafe-*"))
    with env.pg.connect(env.db) as c:
        assert c.execute("SELECT last_value FROM ticket_seq").fetchone()[0] == 5000
        assert c.execute("SELECT lo_get(424242)").fetchone()[0] == b"a large object, restored byte for byte"
        assert c.execute("SELECT count(*) FROM customer_totals").fetchone()[0] == 200
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            c.execute("INSERT INTO orders (customer_id, total) VALUES (987654, 1)")
        assert c.execute("SELECT nextval('customers_id_seq')").fetchone()[0] == 201

    (line,) = audit_lines(env, "restore")
    assert line["outcome"] == "ok" and line["mode"] == "atomic" and line["backup_id"] == bid
    assert line["target"].endswith(f"/{env.db}")
    assert 0 < line["duration_s"] <= round(elapsed, 3) + 0.001  # measured, and within the command's own time
    audit_text = (env.state_dir / "audit.jsonl").read_text()
    assert env.pg.password not in audit_text + r.out + r.err


def test_atomic_brings_back_the_backups_database_settings_and_keeps_the_old_copy(env, backed_up):
    """Settings and grants changed on the live database after the backup are the backup's again
    (they come from the archive, never from the target); the replaced database is kept."""
    bid, state, _ = backed_up
    with env.pg.connect() as c:
        c.execute("DROP ROLE IF EXISTS reader")
        c.execute("CREATE ROLE reader")
        c.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '7MB'").format(sql.Identifier(env.db)))
        c.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(env.db)))
        c.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO reader").format(sql.Identifier(env.db)))
    damage(env)
    damaged = db_state(env.pg, env.db)

    r = env.cli("backup", "restore", bid, "--yes", "--keep-old", "--no-uploads", "--json")
    assert r.code == 0, r.err
    old = r.json()["kept_old"]
    assert old and old in databases(env.pg) and "_dskept_" in old
    try:
        assert db_state(env.pg, env.db) == state
        assert db_state(env.pg, old) == damaged  # the replaced database, intact, under its new name
        with env.pg.connect(env.db) as c:
            assert c.execute("SHOW work_mem").fetchone()[0] == "4MB"
            assert c.execute("SELECT datacl IS NULL FROM pg_database WHERE datname = current_database()").fetchone()[0]
            assert c.execute("SELECT has_database_privilege('public', current_database(), 'CONNECT')").fetchone()[0]
        with env.pg.connect(old) as c:  # the kept copy keeps what it had
            assert c.execute("SHOW work_mem").fetchone()[0] == "7MB"
    finally:
        env.pg.drop_database(old)
        with env.pg.connect() as c:
            c.execute(sql.SQL("DROP OWNED BY reader"))
            c.execute("DROP ROLE reader")


def test_clean_mode_round_trip(env, backed_up):
    bid, state, tree = backed_up
    damage(env)
    r = env.cli("backup", "restore", bid, "--mode", "clean", "--yes", "--json")
    assert r.code == 0, r.err
    assert r.json()["mode"] == "clean"
    after = db_state(env.pg, env.db)
    assert {k: v for k, v in after.items() if k != "tables"} == {k: v for k, v in state.items() if k != "tables"}
    # clean only replaces what the dump holds: the stray table is left as it was
    assert after["tables"] == {**state["tables"], "public.stray": (0, "")}
    assert tree_state(env.uploads) == tree


def test_new_mode_into_another_database_and_refusal_when_it_exists(env, backed_up):
    bid, state, _ = backed_up
    target = env.db + "_copy"
    try:
        # not destructive: no --yes needed
        r = env.cli("backup", "restore", bid, "--database", target, "--no-uploads", "--dry-run", "--json")
        assert r.code == 0, r.err
        pf = r.json()
        assert pf["mode"] == "new" and not pf["target_exists"] and pf["would_drop"] == []
        assert {"table public.orders", "view public.customer_totals", "schema billing"} <= set(pf["would_create"])
        assert target not in databases(env.pg)

        r = env.cli("backup", "restore", bid, "--database", target, "--no-uploads", "--json")
        assert r.code == 0, r.err
        assert r.json()["mode"] == "new"
        assert db_state(env.pg, target) == state
        assert db_state(env.pg, env.db) == state

        r = env.cli("backup", "restore", bid, "--database", target, "--mode", "new", "--no-uploads", "--yes")
        assert r.code == 1 and "already exists" in r.err
    finally:
        env.pg.drop_database(target)


def test_clean_mode_refuses_missing_target(env, backed_up):
    bid, _, _ = backed_up
    before = databases(env.pg)
    r = env.cli("backup", "restore", bid, "--database", "nope_" + env.db, "--mode", "clean", "--yes")
    assert r.code == 1 and "does not exist" in r.err and "--mode new" in r.err
    assert databases(env.pg) == before


def test_uploads_to_another_directory_and_no_uploads(env, backed_up, tmp_path):
    bid, _, tree = backed_up
    damage(env)
    damaged_tree = tree_state(env.uploads)
    other = tmp_path / "elsewhere" / "uploads"
    r = env.cli("backup", "restore", bid, "--yes", "--uploads-to", str(other), "--json")
    assert r.code == 0, r.err
    assert tree_state(other) == tree
    assert tree_state(env.uploads) == damaged_tree

    r = env.cli("backup", "restore", bid, "--yes", "--no-uploads", "--json")
    assert r.code == 0, r.err
    assert r.json()["uploads"] is None
    assert tree_state(env.uploads) == damaged_tree


def test_non_tty_without_yes_is_refused_and_changes_nothing(env, backed_up):
    bid, _, _ = backed_up
    damage(env)
    damaged, damaged_tree, dbs = db_state(env.pg, env.db), tree_state(env.uploads), databases(env.pg)
    r = env.cli("backup", "restore", bid)
    assert r.code == 1
    assert "refusing to replace (atomic swap) database" in r.err and "--yes" in r.err
    assert "Traceback" not in r.err
    assert db_state(env.pg, env.db) == damaged and tree_state(env.uploads) == damaged_tree and databases(env.pg) == dbs


def _tamper(path: Path, offset_fraction: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * offset_fraction)
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("role", ["database", "uploads"])
def test_tampered_byte_is_refused_with_nothing_changed(env, backed_up, role):
    bid, _, _ = backed_up
    damage(env)
    damaged, damaged_tree, dbs = db_state(env.pg, env.db), tree_state(env.uploads), databases(env.pg)
    rec = env.service().get(bid)
    _tamper(env.store_dir / rec.object(role).key)

    for mode in ("atomic", "clean"):
        r = env.cli("backup", "restore", bid, "--mode", mode, "--yes")
        assert r.code == 1
        assert "integrity check failed" in r.err and rec.object(role).key in r.err
        assert db_state(env.pg, env.db) == damaged
        assert tree_state(env.uploads) == damaged_tree
        assert databases(env.pg) == dbs
        assert not list(env.uploads.parent.glob(".uploads.dumpsafe-*"))
    r = env.cli("backup", "restore", bid, "--dry-run")
    assert r.code == 1 and "integrity check failed" in r.err
    assert all(e["outcome"] == "failed" for e in audit_lines(env, "restore"))


def test_truncated_object_is_refused_before_download(env, backed_up):
    bid, state, _ = backed_up
    path = env.store_dir / env.service().get(bid).object("database").key
    path.write_bytes(path.read_bytes()[:-10])
    r = env.cli("backup", "restore", bid, "--yes")
    assert r.code == 1 and "integrity check failed" in r.err and "stored size" in r.err
    assert db_state(env.pg, env.db) == state


def _wrapper_bin(tmp_path: Path, body: str) -> Path:
    """A pg_bin_dir whose pg_restore passes --version/--list/--schema-only through and runs ``body`` otherwise."""
    real = "/usr/lib/postgresql/15/bin/pg_restore"
    d = tmp_path / "fakebin"
    d.mkdir()
    script = d / "pg_restore"
    script.write_text(f"""#!/bin/sh
case " $* " in *" --version "*|*" --list "*|*" --schema-only "*) exec {real} "$@";; esac
{body.replace('REAL', real)}
""")
    script.chmod(0o755)
    return d


def test_pg_restore_killed_midway_leaves_target_identical(env, backed_up, tmp_path):
    bid, _, _ = backed_up
    # the real pg_restore restores tables and data, then the process is killed before the post-data
    # section (indexes, constraints): a restore that died half-way through
    bindir = _wrapper_bin(tmp_path, 'REAL --section=pre-data --section=data "$@"\nkill -9 $$')
    env.write_config(tenant_extra=f'pg_bin_dir = "{bindir}"')
    damage(env)
    damaged, damaged_tree, dbs = db_state(env.pg, env.db), tree_state(env.uploads), databases(env.pg)
    r = env.cli("backup", "restore", bid, "--yes")
    assert r.code == 1 and "pg_restore into database" in r.err and "failed" in r.err
    assert db_state(env.pg, env.db) == damaged
    assert tree_state(env.uploads) == damaged_tree
    assert databases(env.pg) == dbs
    assert not list(env.uploads.parent.glob(".uploads.dumpsafe-*"))


def test_clean_mode_killed_while_running_rolls_back(env, backed_up):
    """A real pg_restore --clean, blocked mid-transaction by a lock, is SIGKILLed: the target is untouched."""
    bid, _, _ = backed_up
    damage(env)
    damaged, dbs = db_state(env.pg, env.db), databases(env.pg)
    svc = env.service()
    holder = env.pg.connect(env.db, autocommit=False)
    holder.execute("SELECT 1 FROM billing.invoices LIMIT 1")  # AccessShareLock until we let go
    errors: list[BaseException] = []

    def run():
        try:
            svc.restore(bid, mode="clean", uploads=False)
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with env.pg.connect() as c:
                waiting = c.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'pg_restore%%' "
                    "AND wait_event_type = 'Lock'", (env.db,)).fetchone()[0]
            if waiting:
                break
            time.sleep(0.05)
        assert waiting, "pg_restore never reached the lock"
        pids = pids_with(b"pg_restore", env.db.encode())
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    finally:
        holder.rollback()
        holder.close()
        t.join(60)
    assert errors and "pg_restore into database" in str(errors[0])
    assert db_state(env.pg, env.db) == damaged
    assert databases(env.pg) == dbs


def test_missing_role_fails_before_swap_and_dry_run_names_it(env, backed_up):
    bid, state, _ = backed_up
    with env.pg.connect(env.db) as c:
        c.execute("DROP ROLE IF EXISTS app_owner")
        c.execute("CREATE ROLE app_owner")
        c.execute("ALTER TABLE billing.invoices OWNER TO app_owner")
    r = env.cli("backup", "create", "acme", "--json", "--no-uploads")
    assert r.code == 0, r.err
    bid2 = r.json()[0]["id"]
    with env.pg.connect(env.db) as c:
        c.execute("REASSIGN OWNED BY app_owner TO postgres")
        c.execute("DROP OWNED BY app_owner")
        c.execute("DROP ROLE app_owner")
    damage(env)
    damaged, dbs = db_state(env.pg, env.db), databases(env.pg)

    r = env.cli("backup", "restore", bid2, "--dry-run", "--json")
    assert r.code == 1
    pf = r.json()
    assert pf["roles_missing"] == ["app_owner"] and not pf["ok"]
    assert any("app_owner" in p for p in pf["problems"])

    r = env.cli("backup", "restore", bid2, "--yes")
    assert r.code == 1 and "app_owner" in r.err
    assert db_state(env.pg, env.db) == damaged
    assert databases(env.pg) == dbs


def test_dry_run_reports_and_changes_nothing(env, backed_up):
    bid, _, _ = backed_up
    damage(env)
    damaged, damaged_tree, dbs = db_state(env.pg, env.db), tree_state(env.uploads), databases(env.pg)
    r = env.cli("backup", "restore", bid, "--dry-run", "--json")
    assert r.code == 0, r.err
    pf = r.json()
    assert pf["ok"] and pf["dry_run"] and pf["mode"] == "atomic"
    assert {i["role"] for i in pf["integrity"]} == {"database", "uploads"}
    assert pf["tables"] == {"billing.invoices": 200, "public.customers": 200, "public.orders": 800}
    assert pf["table_data_entries"] == 3 and pf["tables_without_data"] == []
    assert "table public.stray" in pf["would_drop"]
    assert {"view public.customer_totals", "materialized view public.order_stats"} <= set(pf["would_create"])
    assert "table public.orders" in pf["would_replace"]
    assert pf["roles_needed"] == ["postgres"] and pf["roles_missing"] == []
    assert pf["extensions_needed"] == ["pgcrypto"] and pf["extensions_missing"] == []
    v = pf["versions"]
    assert v["pg_restore"].split(".")[0] == v["pg_dump"].split(".")[0] == v["target_server"].split(".")[0]
    # atomic with one pg_restore job streams the dump from the store: no spool to need room for
    from dumpsafe.restore_models import streams
    assert {d["where"] for d in pf["disk"]} == {"uploads", "server"} | (set() if streams(0) else {"spool"})
    assert all(d["ok"] for d in pf["disk"])
    assert db_state(env.pg, env.db) == damaged and tree_state(env.uploads) == damaged_tree and databases(env.pg) == dbs

    r = env.cli("backup", "restore", bid, "--mode", "clean", "--dry-run", "--json")
    pf = r.json()
    assert "table public.stray" in pf["would_keep"] and pf["would_drop"] == []
    assert {d["where"] for d in pf["disk"]} == {"spool", "uploads", "server"}  # clean verifies a spooled copy first
    r = env.cli("backup", "restore", bid, "--dry-run")  # the human rendering
    assert r.code == 0 and "nothing was changed" in r.out and "public.orders" in r.out


def test_concurrent_clients_during_atomic_swap(env, backed_up):
    """Clients see the old database or the new one, never a missing or half-restored one;
    a session left open on the target is ended so the swap can happen."""
    bid, state, _ = backed_up
    with env.pg.connect(env.db) as c:
        c.execute("DELETE FROM billing.invoices")
    idle = env.pg.connect(env.db, autocommit=False)
    idle.execute("SELECT count(*) FROM orders")  # an open transaction holding a lock on the target

    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                with env.pg.connect(env.db) as c:
                    seen.append(c.execute("SELECT count(*) FROM billing.invoices").fetchone()[0])
            except psycopg.OperationalError as e:
                errors.append(str(e))
            time.sleep(0.005)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for("a client to read the old database", lambda: 0 in seen)
        res = env.service().restore(bid, mode="atomic", uploads=False)
        after = len(seen)
        wait_for("the clients to read the restored database", lambda: len(seen) >= after + 3 and seen[-1] == 200)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert res.mode == "atomic"
    assert set(seen) <= {0, 200} and 0 in seen and seen[-1] == 200
    # the only errors a client may meet are connection ends and a short refusal while swapping
    for e in errors:
        # PostgreSQL's own startup race: a session that resolved the name just before the rename
        # commits is told the database "seems to have just been dropped or renamed"; a retry lands
        # in the new one. A plain "does not exist" (a moment without the target) must never happen.
        assert "terminating connection" in e or "not currently accepting connections" in e or "server closed" in e or \
            "just been dropped or renamed" in e, e
    with pytest.raises(psycopg.OperationalError):
        idle.execute("SELECT 1")
    idle.close()
    assert db_state(env.pg, env.db) == state


def test_second_restore_of_same_target_is_refused_while_one_runs(env, backed_up):
    from dumpsafe.errors import ConflictError
    from dumpsafe.restore import Restorer

    bid, _, _ = backed_up
    svc = env.service()
    with Restorer(svc)._lock("acme", env.db):
        with pytest.raises(ConflictError, match="another restore"):
            svc.restore(bid, mode="atomic", uploads=False)


def test_unknown_mode_and_bad_flags_are_usage_errors(env, backed_up):
    bid, state, _ = backed_up
    r = env.cli("backup", "restore", bid, "--mode", "yolo", "--yes")
    assert r.code == 2 and "'yolo' is not one of 'atomic', 'clean', 'new'" in r.err
    r = env.cli("backup", "restore", bid, "--mode", "clean", "--keep-old", "--yes")
    assert r.code == 2 and "--keep-old" in r.err
    assert db_state(env.pg, env.db) == state


def test_odd_and_long_database_names(env, backed_up):
    """Quotes, spaces, '=' and a 63-byte name: never read as options or conninfo, staging names fit."""
    bid, state, _ = backed_up
    for target in ["it's a \"db\" = odd", "x" * 63]:
        try:
            r = env.cli("backup", "restore", bid, "--database", target, "--no-uploads", "--json")
            assert r.code == 0, r.err
            assert db_state(env.pg, target) == state
            with env.pg.connect(target) as c:
                c.execute("DELETE FROM billing.invoices")
            r = env.cli("backup", "restore", bid, "--database", target, "--no-uploads", "--yes", "--json")
            assert r.code == 0 and r.json()["mode"] == "atomic", r.err
            assert db_state(env.pg, target) == state
        finally:
            env.pg.drop_database(target)
    r = env.cli("backup", "restore", bid, "--database", "y" * 64, "--no-uploads")
    assert r.code == 2 and "not a valid database name" in r.err


def test_symlinked_uploads_path_keeps_its_link(env, backed_up, tmp_path):
    bid, _, tree = backed_up
    real = tmp_path / "data" / "uploads"
    real.parent.mkdir()
    env.uploads.rename(real)
    env.uploads.symlink_to(real)
    (real / "invoices/README.txt").write_text("defaced\n")
    r = env.cli("backup", "restore", bid, "--yes", "--json")
    assert r.code == 0, r.err
    assert env.uploads.is_symlink() and os.readlink(env.uploads) == str(real)
    assert tree_state(real) == tree
    assert sorted(os.listdir(real.parent)) == ["uploads"]


def test_orphans_of_a_dead_dumpsafe_are_swept_but_live_ones_are_not(env, backed_up):
    """Staging/scratch databases left by a killed dumpsafe are dropped by the next restore;
    one that a running restore has claimed is left alone."""
    from dumpsafe.engines import databases as dbs

    bid, state, _ = backed_up
    orphans = [f"{env.db}_dsstage_0badf00d", "dumpsafe_drill_0123456789ab"]
    live = f"{env.db}_dsstage_feedbeef"
    for name in orphans + [live]:
        env.pg.create_database(name)
    target = env.service().pg_target("acme")
    try:
        with dbs.claimed(target, live):
            r = env.cli("backup", "restore", bid, "--yes", "--no-uploads")
            assert r.code == 0, r.err
            dbs = databases(env.pg)
            assert live in dbs and not set(orphans) & dbs
        assert sorted(audit_lines(env, "restore")[-1]["swept"]) == sorted(orphans)
        assert db_state(env.pg, env.db) == state
    finally:
        for name in orphans + [live]:
            env.pg.drop_database(name)


def _on_terminal(env, args: list[str], answer: bytes) -> tuple[int, str]:
    """Run the real CLI on a pseudo-terminal, answer its question, return (exit code, screen)."""
    import pty
    import subprocess

    master, slave = pty.openpty()
    proc = subprocess.Popen(env.cli_argv(*args), env=dict(env.subprocess_env(), COLUMNS="200"),
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    screen = b""
    answered = False
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        screen += data
        if not answered and b"[y/N]" in screen:
            os.write(master, answer)
            answered = True
    proc.wait(timeout=120)
    os.close(master)
    return proc.returncode, screen.decode("utf-8", "replace")


def test_terminal_asks_before_replacing(env, backed_up):
    bid, state, tree = backed_up
    damage(env)
    damaged = db_state(env.pg, env.db)
    code, screen = _on_terminal(env, ["backup", "restore", bid], b"n\n")
    assert code == 1 and "Replace (atomic swap) database" in screen and "cancelled; nothing was changed" in screen
    assert db_state(env.pg, env.db) == damaged

    code, screen = _on_terminal(env, ["backup", "restore", bid], b"y\n")
    assert code == 0, screen
    assert db_state(env.pg, env.db) == state and tree_state(env.uploads) == tree


def test_dry_run_counts_table_data_entries_exactly(env):
    """Names with spaces (even one called "TABLE DATA"), empty and partitioned tables, a
    materialized view, sequences and large objects: one TABLE DATA entry per table, no more."""
    with env.pg.connect(env.db) as c:
        c.execute("""
            CREATE TABLE "TABLE DATA" (i int); INSERT INTO "TABLE DATA" VALUES (1), (2);
            CREATE TABLE "my tab" (i int);
            CREATE SCHEMA "odd schema"; CREATE TABLE "odd schema"."t 1" (i int); INSERT INTO "odd schema"."t 1" VALUES (7);
            CREATE TABLE measurements (d date, v int) PARTITION BY RANGE (d);
            CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
            INSERT INTO measurements VALUES ('2026-05-01', 1), ('2026-06-01', 2);
            CREATE MATERIALIZED VIEW mv AS SELECT 1 AS one;
            SELECT lo_from_bytea(0, 'blob'::bytea);
        """)
    r = env.cli("backup", "create", "acme", "--json", "--no-uploads")
    assert r.code == 0, r.err
    rec = r.json()[0]
    assert rec["tables"]['public."TABLE DATA"'] == 2 and rec["tables"]['"odd schema"."t 1"'] == 1
    assert "public.measurements" not in rec["tables"] and rec["tables"]["public.measurements_2026"] == 2
    # the parent, the materialized view and the large object are counted beside the tables
    assert rec["partitioned"] == {"public.measurements": 2} and rec["matviews"] == {"public.mv": 1}
    assert rec["large_objects"] == {"count": 1, "bytes": 4}
    r = env.cli("backup", "restore", rec["id"], "--dry-run", "--no-uploads", "--json")
    pf = r.json()
    assert r.code == 0, pf["problems"]
    assert pf["table_data_entries"] == len(rec["tables"]) == 7 and pf["tables_without_data"] == []
    assert pf["would_drop"] == [] and pf["would_create"] == []
    assert {"table odd schema.t 1", "table public.TABLE DATA", "materialized view public.mv"} <= set(pf["would_replace"])


def test_atomic_restore_says_which_sessions_it_ended(env, backed_up):
    """Replacing a database ends the other sessions on it: the result, the audit line and the
    table say how many, so an operator knows why the application reconnected."""
    bid, _state, _tree = backed_up
    idle = env.pg.connect(env.db)
    try:
        r = env.cli("backup", "restore", bid, "--yes", "--no-uploads", "--json")
        assert r.code == 0, r.err
        assert r.json()["sessions_ended"] == 1
        (line,) = audit_lines(env, "restore")
        assert line["outcome"] == "ok" and line["sessions_ended"] == 1
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")  # it was ended, not left on the replaced (dropped) database
        table = env.cli("backup", "restore", bid, "--yes", "--no-uploads")
        assert table.code == 0 and "other sessions ended" not in table.out  # none connected this time
    finally:
        idle.close()
