"""Backups against a real PostgreSQL cluster, through the real CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from conftest import all_cmdlines, table_digest
from waiting import wait_for

REQUIRED = {
    "id", "tenant", "database", "engine", "server_version", "status", "created_at", "completed_at",
    "store", "location", "size_bytes", "sha256", "compression", "encryption", "tables", "uploads",
    "last_verification",
}


def _decompress(path: Path) -> bytes:
    with path.open("rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh).read()


def _tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_roundtrip_through_pg_restore(env, pg, tmp_path):
    before = table_digest(pg, env.db)
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    rec = r.json()[0]
    assert REQUIRED <= rec.keys()
    assert rec["engine"] == "postgres" and rec["status"] == "completed" and rec["compression"] == "zstd"
    assert rec["encryption"] is None and rec["last_verification"] is None
    assert rec["server_version"].startswith(str(pg.version[0]))
    assert rec["created_at"].endswith("Z") and rec["completed_at"] >= rec["created_at"]
    assert rec["tables"] == {name: n for name, (n, _) in before.items()}
    assert rec["uploads"] == {"files": 25, "bytes": sum(p.stat().st_size for p in env.uploads.rglob("*") if p.is_file() and not p.is_symlink())}

    # every stored object's size and SHA-256 are in the record
    by_role = {o["role"]: o for o in rec["objects"]}
    for o in rec["objects"]:
        data = (env.store_dir / o["key"]).read_bytes()
        assert len(data) == o["size_bytes"] and hashlib.sha256(data).hexdigest() == o["sha256"]
    assert rec["sha256"] == by_role["database"]["sha256"]
    assert rec["size_bytes"] == sum(o["size_bytes"] for o in rec["objects"])

    # the dump restores with plain pg_restore into a new database, same content
    dump = tmp_path / "plain.dump"
    dump.write_bytes(_decompress(env.store_dir / by_role["database"]["key"]))
    target = env.db + "_copy"
    pg.create_database(target)
    try:
        subprocess.run(
            [str(pg.bin_dir / "pg_restore"), "-h", pg.host, "-p", str(pg.port), "-U", "postgres", "-d", target, "--exit-on-error", str(dump)],
            env=dict(os.environ, PGPASSWORD=pg.password), check=True, capture_output=True,
        )
        assert table_digest(pg, target) == before
    finally:
        pg.drop_database(target)

    # the uploads tree comes back byte for byte
    out = tmp_path / "extracted"
    with tarfile.open(fileobj=io.BytesIO(_decompress(env.store_dir / by_role["uploads"]["key"])), mode="r:") as tar:
        tar.extractall(out, filter="data")
    assert _tree_digest(out) == _tree_digest(env.uploads)


def test_counts_match_the_dump_snapshot_under_concurrent_writes(env, pg):
    """Rows inserted while the backup runs are in neither the counts nor the dump."""
    import threading

    stop = threading.Event()

    def writer():
        with pg.connect(env.db) as c:
            while not stop.is_set():
                c.execute("INSERT INTO orders (customer_id, total) VALUES (1, 1)")

    t = threading.Thread(target=writer)
    t.start()
    try:
        rec = env.service().create("acme")[0]
    finally:
        stop.set()
        t.join()
    st = env.service().store("local")
    dump = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(st.get_bytes(rec.object("database").key))).read()
    # count COPY rows of public.orders in the dump itself
    proc = subprocess.run([str(pg.bin_dir / "pg_restore"), "-f", "-", "-t", "orders", "-a"], input=dump, capture_output=True, check=True)
    lines = proc.stdout.decode().split("COPY public.orders", 1)[1].split("\n\\.\n", 1)[0].strip().splitlines()[1:]
    assert len(lines) == rec.tables["public.orders"]


def test_two_backups_in_one_second_get_distinct_ids(env):
    svc = env.service()
    a = svc.create("acme", uploads=False)[0]
    b = svc.create("acme", uploads=False)[0]
    assert a.id != b.id
    listed = [r.id for r in svc.list("acme")]
    assert listed == sorted([a.id, b.id], key=lambda i: [r for r in (a, b) if r.id == i][0].created_at, reverse=True)


def test_list_get_json_and_filters(env):
    created = env.cli("backup", "create", "acme", "--no-uploads", "--json").json()[0]
    assert created["uploads"] is None
    listed = env.cli("backup", "list", "--json").json()
    assert [r["id"] for r in listed] == [created["id"]]
    assert env.cli("backup", "list", "acme", "--database", "nope", "--json").json() == []
    got = env.cli("backup", "get", created["id"], "--json").json()
    assert got == created
    human = env.cli("backup", "list")
    assert created["id"] in human.out and created["sha256"][:12] in human.out


def test_every_database_when_none_configured(env, pg):
    env.write_config()
    env.config_path.write_text(env.config_path.read_text().replace(f'databases = ["{env.db}"]\n', ""))
    other = env.db + "_b"
    pg.create_database(other)
    try:
        recs = env.cli("backup", "create", "acme", "--no-uploads", "--json").json()
        dbs = {r["database"] for r in recs}
        assert {env.db, other, "postgres"} <= dbs
        assert not any(d.startswith("template") for d in dbs)
    finally:
        pg.drop_database(other)


def _audit(env) -> list[dict]:
    p = env.state_dir / "audit.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def test_database_down_is_one_sentence_audited_nothing_listed(env):
    env.config_path.write_text(env.config_path.read_text().replace(f"port = {env.pg.port}", "port = 1"))
    r = env.cli("backup", "create", "acme")
    assert r.code == 1
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in r.err and "Traceback" not in r.err
    assert env.cli("backup", "list", "--json").json() == []
    last = _audit(env)[-1]
    assert last["outcome"] == "failed" and last["action"] == "create" and "cannot connect" in last["error"]


def test_wrong_password(env, monkeypatch):
    monkeypatch.setenv("ACME_PGPASSWORD", "definitely-wrong-secret")
    r = env.cli("backup", "create", "acme")
    assert r.code == 1
    assert "password authentication failed for user 'postgres'" in r.err
    assert "definitely-wrong-secret" not in r.err + r.out
    assert "definitely-wrong-secret" not in (env.state_dir / "audit.jsonl").read_text()
    assert env.cli("backup", "list", "--json").json() == []


def test_missing_password_env(env, monkeypatch):
    monkeypatch.delenv("ACME_PGPASSWORD")
    r = env.cli("backup", "create", "acme")
    assert r.code == 2 and "environment variable ACME_PGPASSWORD is not set" in r.err


def test_unknown_tenant_and_store(env):
    r = env.cli("backup", "create", "nobody")
    assert r.code == 2 and "unknown tenant 'nobody' (configured tenants: acme)" in r.err
    r = env.cli("backup", "create", "acme", "--store", "nowhere")
    assert r.code == 2 and "unknown store 'nowhere'" in r.err


def test_missing_uploads_dir_is_an_error_not_an_empty_archive(env, tmp_path):
    env.config_path.write_text(env.config_path.read_text().replace(str(env.uploads), str(tmp_path / "gone")))
    r = env.cli("backup", "create", "acme")
    assert r.code == 1 and "uploads directory" in r.err and "does not exist" in r.err
    assert env.cli("backup", "list", "--json").json() == []
    assert not list(env.store_dir.rglob("*.zst")) if env.store_dir.exists() else True


@pytest.mark.parametrize("bad", ["../../etc/passwd", "acme", "acme.app.2026.x"])
def test_traversal_and_malformed_ids(env, bad):
    for cmd in (["backup", "get", bad], ["backup", "delete", bad, "--yes"]):
        r = env.cli(*cmd)
        assert r.code == 2 and "is not a backup ID" in r.err


def test_get_unknown_id(env):
    r = env.cli("backup", "get", "acme.app.20260101T000000Z.abcdefgh")
    assert r.code == 1 and "not found" in r.err


def test_delete_needs_yes_without_tty_then_removes_everything(env):
    rec = env.cli("backup", "create", "acme", "--json").json()[0]
    r = env.cli("backup", "delete", rec["id"])
    assert r.code == 1 and "pass --yes" in r.err
    assert env.cli("backup", "get", rec["id"], "--json").code == 0
    r = env.cli("backup", "delete", rec["id"], "--yes")
    assert r.code == 0
    assert env.cli("backup", "list", "--json").json() == []
    left = [p.relative_to(env.store_dir) for p in env.store_dir.rglob("*") if p.is_file()]
    # only the evidence (its history, issue 15) and the catalog's change notes (catalog/: see dumpsafe.manifest) stay
    assert any(p.parts[0] == "history" for p in left), left
    assert all(p.parts[0] in ("history", "catalog") for p in left), left
    actions = [(a["action"], a["outcome"], a["backup_id"]) for a in _audit(env)]
    assert ("delete", "ok", rec["id"]) in actions and ("create", "ok", rec["id"]) in actions


def test_audit_line_fields(env):
    rec = env.cli("backup", "create", "acme", "--json").json()[0]
    line = _audit(env)[-1]
    assert {"time", "actor", "action", "backup_id", "tenant", "database", "store", "size_bytes", "outcome", "duration_s", "error"} <= line.keys()
    assert line["actor"] == "local" and line["backup_id"] == rec["id"] and line["size_bytes"] == rec["size_bytes"]
    assert env.pg.password not in (env.state_dir / "audit.jsonl").read_text()


class _TableLock:
    """Hold an ACCESS EXCLUSIVE lock so a backup blocks mid-way, deterministically."""

    def __init__(self, pg, db):
        self.conn = pg.connect(db, autocommit=False)
        self.conn.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")

    def release(self):
        self.conn.rollback()
        self.conn.close()


def test_kill_9_mid_backup_leaves_nothing_listed_and_next_run_cleans(env, pg):
    lock = _TableLock(pg, env.db)
    try:
        proc = subprocess.Popen(env.cli_argv("backup", "create", "acme"), env=env.subprocess_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the dump's temp object exists once pg_dump is running (blocked on the lock); wait for that one,
        # not the pending marker's or the uploads object's, which are renamed into place right after
        wait_for("the dump's temp object", lambda: list(env.store_dir.rglob(".database.dump.zst.tmp-*"))
                 if env.store_dir.exists() else None)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        lock.release()
    assert env.cli("backup", "list", "--json").json() == []
    assert list(env.store_dir.rglob("*.tmp-*"))
    # the next run sweeps the dead writer's temp files and succeeds
    rec = env.cli("backup", "create", "acme", "--json").json()[0]
    assert not list(env.store_dir.rglob("*.tmp-*"))
    assert [r["id"] for r in env.cli("backup", "list", "--json").json()] == [rec["id"]]


def test_password_never_on_any_command_line(env, pg):
    """Poll /proc/*/cmdline while a backup runs (held open by a lock) for the password, until
    pg_dump itself is seen running (blocked on the lock: every process of the backup is up)."""
    lock = _TableLock(pg, env.db)
    secret = pg.password.encode()

    def pg_dump_running() -> bool:
        seen = False
        for pid, cmd in all_cmdlines():
            assert secret not in cmd, f"password on the command line of pid {pid}"
            seen = seen or (b"pg_dump" in cmd and b"--snapshot" in cmd)
        return seen

    try:
        proc = subprocess.Popen(env.cli_argv("backup", "create", "acme"), env=env.subprocess_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for("pg_dump --snapshot to run", pg_dump_running, timeout=60, every=0.02)
        assert pg_dump_running()  # and once more with pg_dump waiting on the lock
    finally:
        lock.release()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert secret not in out + err


@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs: a real ENOSPC (needs root, which test machines have)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True)
    assert r.returncode == 0, f"cannot mount a tmpfs (the suite runs as root): {r.stderr.decode().strip()}"
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_fails_cleanly(env, pg, tiny_disk):
    with pg.connect(env.db) as c:  # make the dump clearly larger than the disk
        c.execute("INSERT INTO orders (customer_id, total, note) SELECT 1, 1, md5(random()::text) || md5(random()::text) FROM generate_series(1, 60000)")
    env.config_path.write_text(env.config_path.read_text().replace('path = "backups"', f'path = "{tiny_disk}"'))
    r = env.cli("backup", "create", "acme")
    assert r.code == 1 and "no space left on device" in r.err
    assert env.cli("backup", "list", "--json").json() == []
    leftovers = [p for p in tiny_disk.rglob("*") if p.is_file()]
    assert leftovers == []
    assert _audit(env)[-1]["outcome"] == "failed"


def test_include_globals_stores_roles_without_passwords(env, pg):
    with pg.connect() as c:
        c.execute("DROP ROLE IF EXISTS app_reader")
        c.execute("CREATE ROLE app_reader LOGIN PASSWORD 'reader-secret-xyz'")
    try:
        env.tenant_extra = "include_globals = true"
        env.write_config()
        rec = env.cli("backup", "create", "acme", "--json").json()[0]
        g = [o for o in rec["objects"] if o["role"] == "globals"]
        assert len(g) == 1
        sql = _decompress(env.store_dir / g[0]["key"]).decode()
        assert "CREATE ROLE app_reader" in sql
        assert "reader-secret-xyz" not in sql and "SCRAM-SHA-256" not in sql
    finally:
        with pg.connect() as c:
            c.execute("DROP ROLE IF EXISTS app_reader")


def test_progress_bar_on_a_terminal_only(env):
    """On a TTY the dump shows a Rich bar with bytes and rate; piped output stays clean."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(env.cli_argv("backup", "create", "acme"), env=dict(env.subprocess_env(), COLUMNS="160"),
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, screen
    assert f"dump acme/{env.db}" in screen and "uploads acme" in screen
    plain = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen)
    # bytes done/total, then the rate ("?" until Rich has two samples), then elapsed time
    assert re.search(r"[\d.]+/[\d.]+ KiB\s+(\?|[\d.]+ \w+/s)\s+\d:\d\d:\d\d", plain), plain
    piped = subprocess.run(env.cli_argv("backup", "create", "acme", "--json"), env=env.subprocess_env(), capture_output=True, text=True)
    assert piped.returncode == 0 and "dump acme" not in piped.stdout + piped.stderr
    json.loads(piped.stdout)
