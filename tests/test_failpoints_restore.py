"""kill -9 at every failpoint of a restore (atomic, clean, new; local store, one S3 case), then
the next command (`recover`, `backup create` or another restore): the target accepts
connections and holds either its state before or the backup, the uploads tree is from the
same side, and no journal, orphan database, spool directory or staging tree remains."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import Env, table_digest
from dumpsafe.failpoints import ENV, points
from restore_helpers import databases, tree_state
from stores import fake_aws_env, s3_server, store_section  # noqa: F401  (fixtures)
from waiting import wait_for, wait_stopped
from test_failpoints_backup import assert_all_verify, assert_clean, run_killed, setup

P = "restore."
CASES = [
    ("atomic", P + "after_load"), ("atomic", P + "after_staged"), ("atomic", P + "after_refuse"), ("atomic", P + "after_rename"),
    ("atomic", P + "after_uploads_swap"), ("atomic", P + "after_drop_old"),
    ("new", P + "after_load"), ("new", P + "after_staged"), ("new", P + "after_rename"), ("new", P + "after_uploads_swap"),
    ("clean", P + "after_staged"), ("clean", P + "after_clean_restore"), ("clean", P + "after_properties"),
    ("clean", P + "after_uploads_swap"),
]
# once the database was swapped (or clean's pg_restore committed) the restore is rolled forward
FORWARD = {P + "after_rename", P + "after_uploads_swap", P + "after_drop_old", P + "after_clean_restore",
           P + "after_properties"}
ORPHAN = re.compile(r"_ds(stage|old)_[0-9a-f]{8}$")


def test_every_restore_failpoint_has_a_case():
    assert {p for _, p in CASES} == set(points("restore"))


def _change(env: Env) -> None:
    """The state after the backup: a row more, a file more, a file changed."""
    with env.pg.connect(env.db) as c:
        c.execute("INSERT INTO customers (name, email) VALUES ('after', 'after@example.org')")
    (env.uploads / "added-after.txt").write_text("after the backup")
    first = sorted(p for p in env.uploads.rglob("*") if p.is_file() and not p.is_symlink())[0]
    first.write_bytes(b"changed after the backup")


def _allows(env: Env, name: str) -> bool | None:
    with env.pg.connect() as c:
        row = c.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return None if row is None else row[0]


def _leftovers(env: Env) -> list[str]:
    out = [d for d in databases(env.pg) if d.startswith(env.db) and ORPHAN.search(d)]
    spool = env.state_dir / "spool"
    out += [str(p) for p in spool.iterdir()] if spool.is_dir() else []
    out += [str(p) for p in env.uploads.parent.iterdir() if ".dumpsafe-staging-" in p.name]
    journal = env.state_dir / "journal"
    out += [str(p) for p in journal.iterdir()] if journal.is_dir() else []
    return out


def _kill_restore(env: Env, mode: str, point: str, bid: str, target: str) -> None:
    run_killed(env, point, "backup", "restore", bid, "--mode", mode, "--database", target, "--yes")


def _check(env: Env, target: str, forward: bool, backup_side: tuple, before_side: tuple) -> None:
    want_db, want_tree = backup_side if forward else before_side
    if want_db is None:  # mode new, undone: the database was never created
        assert _allows(env, target) is None
    else:
        assert _allows(env, target) is True, "the target refuses connections"
        assert table_digest(env.pg, target) == want_db
    assert tree_state(env.uploads) == want_tree
    assert _leftovers(env) == []


@pytest.mark.parametrize("mode,point", CASES)
def test_kill_during_restore(mode, point, env):
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    backup_side = (table_digest(env.pg, env.db), tree_state(env.uploads))
    _change(env)
    target = env.db if mode != "new" else env.db + "_n"
    before_side = (table_digest(env.pg, env.db) if mode != "new" else None, tree_state(env.uploads))

    _kill_restore(env, mode, point, bid, target)
    assert (env.state_dir / "journal").is_dir() and list((env.state_dir / "journal").iterdir())
    if point == P + "after_refuse":
        assert _allows(env, target) is False  # the window finding 1 was about

    # the next command that touches the tenant: each kind in turn (after_refuse: create, finding 1)
    nxt = [("backup", "create", "acme", "--json"), ("recover",), ("backup", "verify", bid, "--drill")][
        0 if point == P + "after_refuse" else CASES.index((mode, point)) % 3]
    if nxt == ("recover",):  # as a process of its own, as an operator runs it: what it prints, logging included
        p = subprocess.run(env.cli_argv(*nxt), env=env.subprocess_env(), capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        said = "rolled forward to the backup" if point in FORWARD else "undone"
        assert p.stderr.count(said) == 1, p.stderr  # once: recover prints its lines, they are not logged again
    else:
        r = env.cli(*nxt)
        assert r.code == 0, r.err
    _check(env, target, point in FORWARD, backup_side, before_side)
    ids = assert_clean(env, "local")  # nothing partial listed; every listed backup verifies
    assert bid in ids
    assert_all_verify(env, ids)
    if mode == "new" and point in FORWARD:
        with env.pg.connect() as c:
            c.execute(f'DROP DATABASE "{target}"')


def test_the_next_restore_after_a_kill_with_connections_refused(env):
    """Finding 1: killed after refusing connections; `backup create` works and the next
    restore exits 0 with the target accepting connections."""
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    backup_side = (table_digest(env.pg, env.db), tree_state(env.uploads))
    _change(env)
    _kill_restore(env, "atomic", P + "after_refuse", bid, env.db)
    assert _allows(env, env.db) is False
    r = env.cli("backup", "restore", bid, "--mode", "atomic", "--yes", "--json")
    assert r.code == 0, r.err
    _check(env, env.db, True, backup_side, backup_side)
    restores = [json.loads(x) for x in (env.state_dir / "audit.jsonl").read_text().splitlines()
                if json.loads(x)["action"] == "restore"]
    assert "undone" in restores[-1]["recovered"][0]


def test_an_error_after_the_swap_rolls_forward_in_process(env, monkeypatch):
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    backup_side = (table_digest(env.pg, env.db), tree_state(env.uploads))
    _change(env)
    monkeypatch.setenv(ENV, P + "after_rename=error")
    r = env.cli("backup", "restore", bid, "--mode", "atomic", "--yes")
    assert r.code == 1 and "failpoint restore.after_rename" in r.err, r.err
    _check(env, env.db, True, backup_side, backup_side)


def test_an_error_before_the_swap_is_undone_in_process(env, monkeypatch):
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    _change(env)
    before = (table_digest(env.pg, env.db), tree_state(env.uploads))
    monkeypatch.setenv(ENV, P + "after_refuse=error")
    r = env.cli("backup", "restore", bid, "--mode", "atomic", "--yes")
    assert r.code == 1 and "failpoint restore.after_refuse" in r.err, r.err
    _check(env, env.db, False, before, before)


def test_kill_during_restore_from_s3_then_recover(env, tmp_path, request):
    setup(env, tmp_path, request, "s3")
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    backup_side = (table_digest(env.pg, env.db), tree_state(env.uploads))
    _change(env)
    _kill_restore(env, "atomic", P + "after_rename", bid, env.db)
    r = env.cli("recover", "--json")
    assert r.code == 0, r.err
    assert any("rolled forward" in n for n in r.json()["notes"]), r.out
    _check(env, env.db, True, backup_side, backup_side)
    assert assert_clean(env) == [bid]
    assert_all_verify(env, [bid])


def test_a_live_restore_is_left_alone_by_recover(env):
    """A restore frozen after refusing connections while `recover` runs: its journal, staging
    database, staged tree and spool are not touched; resumed, it finishes."""
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    backup_side = (table_digest(env.pg, env.db), tree_state(env.uploads))
    _change(env)
    proc = subprocess.Popen(env.cli_argv("backup", "restore", bid, "--mode", "atomic", "--yes"),
                            env={**env.subprocess_env(), ENV: P + "after_refuse=stop"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_stopped(proc)
        left = sorted(_leftovers(env))
        r = env.cli("recover", "--json")
        assert r.code == 0, r.err
        assert sorted(_leftovers(env)) == left and len(left) >= 4  # journal, staging db, staged tree, spool
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    _check(env, env.db, True, backup_side, backup_side)


def test_recover_sweeps_leftovers_without_a_journal(env):
    """What an older version's killed restore left: an unclaimed _dsold_ database, a spool
    directory without a lock, a dead staging tree beside the uploads. A kept database stays."""
    with env.pg.connect() as c:
        c.execute(f'CREATE DATABASE "{env.db}_dsold_0123abcd"')
        c.execute(f'CREATE DATABASE "{env.db}_dskept_0123abcd"')
    spool = env.state_dir / "spool" / "restore-0123456789ab"
    spool.mkdir(parents=True)
    (spool / "database.dump").write_bytes(b"x" * 1000)
    staged = env.uploads.parent / f".{env.uploads.name}.dumpsafe-staging-0123abcd"
    staged.mkdir()
    (staged / "f").write_text("staged")
    (env.uploads.parent / f"{staged.name}.lock").write_text("")
    try:
        r = env.cli("recover", "--json")
        assert r.code == 0, r.err
        assert _leftovers(env) == []
        assert f"{env.db}_dskept_0123abcd" in databases(env.pg)
        assert any("spool" in n for n in r.json()["notes"]), r.out
    finally:
        with env.pg.connect() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{env.db}_dskept_0123abcd"')
            c.execute(f'DROP DATABASE IF EXISTS "{env.db}_dsold_0123abcd"')


def test_kill_while_pg_restore_clean_runs_then_recover(env):
    """dumpsafe killed while its pg_restore --clean (still running, orphaned) waits on a lock:
    `recover` ends that session, so the transaction rolls back and the restore is undone."""
    from restore_helpers import pids_with

    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    _change(env)
    before = (table_digest(env.pg, env.db), tree_state(env.uploads))
    holder = env.pg.connect(env.db, autocommit=False)
    holder.execute("SELECT 1 FROM billing.invoices LIMIT 1")  # AccessShareLock: pg_restore --clean waits
    proc = subprocess.Popen(env.cli_argv("backup", "restore", bid, "--mode", "clean", "--yes"), env=env.subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            with env.pg.connect() as c:
                waiting = c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name "
                                    "LIKE 'pg_restore dumpsafe-%%' AND wait_event_type = 'Lock'", (env.db,)).fetchone()[0]
            if waiting:
                break
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.kill()
        proc.communicate(timeout=30)
        assert pids_with(b"pg_restore", env.db.encode())  # the orphaned pg_restore still runs
        r = env.cli("recover", "--json")
        assert r.code == 0, r.err
        assert any("undone" in n for n in r.json()["notes"]), r.out
    finally:
        holder.rollback()
        holder.close()
    deadline = time.monotonic() + 60
    while pids_with(b"pg_restore", env.db.encode()):  # had it survived, it would commit now
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _check(env, env.db, False, before, before)
