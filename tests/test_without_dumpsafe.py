"""Backups are readable without dumpsafe (issue 19): from a local store's objects and the record
alone, only zstd, age, pg_restore and tar bring the database and the uploads tree back (in a
clean environment where dumpsafe is neither on PATH nor importable); and `backup export`
writes the verified plain archive, refusing tampered bytes."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import table_digest
from restore_helpers import tree_state


TOOLS = ("zstd", "age", "tar", "sh", "cat")


def _stock_bin(tmp: Path, pg_bin: Path) -> Path:
    """A PATH holding only the stock tools (and no python, no dumpsafe)."""
    bindir = tmp / "stock-bin"
    bindir.mkdir()
    for t in TOOLS:
        path = shutil.which(t)
        assert path, f"{t} is not installed (scripts/ensure-stock-tools.sh installs it)"
        (bindir / t).symlink_to(path)
    (bindir / "pg_restore").symlink_to(pg_bin / "pg_restore")  # the cluster's own major
    return bindir


def _by_hand(env, bid: str, tmp: Path, key: Path | None) -> tuple[str, Path]:
    """Restore from the store's files following only the record's JSON; return (new db, uploads dir)."""
    record = json.loads(next(env.store_dir.rglob(f"{bid}.json")).read_text())
    assert record["format"] == "pg_dump-custom" and record["compression"] == "zstd"
    assert record["encryption"] == ("age" if key else None)
    assert "pg_dump" in record["tools"] and "zstd" in record["tools"] and ("age" in record["tools"]) == bool(key)
    assert "pg_restore" in record["layout"] and "tar" in record["layout"]
    objs = {o["role"]: env.store_dir / o["key"] for o in record["objects"]}
    target = "byhand_" + secrets.token_hex(4)
    env.pg.create_database(target)
    out = tmp / ("uploads-" + target)
    out.mkdir()
    decrypt = f'age -d -i "{key}" "$1" | ' if key else 'cat "$1" | '
    script = (
        "set -eu\n"
        f'unpack() {{ {decrypt}zstd -d -q -c; }}\n'
        f'unpack "{objs["database"]}" > db.dump\n'
        f'pg_restore --no-password --exit-on-error -h 127.0.0.1 -p {env.pg.port} -U postgres -d {target} db.dump\n'
        f'unpack "{objs["uploads"]}" | tar -x -p -C "{out}"\n'
        # and prove the environment: no dumpsafe to run, no python to import it with
        "if command -v dumpsafe >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1; then exit 99; fi\n"
    )
    work = tmp / ("work-" + target)
    work.mkdir()
    clean = {"PATH": str(_stock_bin(tmp, env.pg.bin_dir) if not (tmp / "stock-bin").exists() else tmp / "stock-bin"),
             "PGPASSWORD": env.pg.password, "HOME": str(work), "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(["/bin/sh", "-c", script, "restore-by-hand"], cwd=work, env=clean, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return target, out


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_restore_with_stock_tools_only(env, tmp_path, encrypted):
    key = None
    if encrypted:
        key = tmp_path / "acme.key"
        recipient = env.cli("keygen", "--output", str(key)).out.strip()
        env.write_config(tenant_extra=f'encrypt_to = ["{recipient}"]')
    want_db, want_tree = table_digest(env.pg, env.db), tree_state(env.uploads)
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    target, out = _by_hand(env, r.json()[0]["id"], tmp_path, key)
    try:
        assert table_digest(env.pg, target) == want_db
        assert tree_state(out) == want_tree
    finally:
        env.pg.drop_database(target)


def _pg_restore_file(env, path: Path) -> dict:
    target = "exported_" + secrets.token_hex(4)
    env.pg.create_database(target)
    try:
        subprocess.run([str(env.pg.bin_dir / "pg_restore"), "--no-password", "--exit-on-error", "-h", "127.0.0.1",
                        "-p", str(env.pg.port), "-U", "postgres", "-d", target, str(path)],
                       env={**os.environ, "PGPASSWORD": env.pg.password}, check=True, capture_output=True, timeout=300)
        return table_digest(env.pg, target)
    finally:
        env.pg.drop_database(target)


def test_export_writes_the_verified_archive_and_refuses_tampered_bytes(env, tmp_path):
    key = tmp_path / "acme.key"
    recipient = env.cli("keygen", "--output", str(key)).out.strip()
    env.write_config(tenant_extra=f'encrypt_to = ["{recipient}"]')
    want = table_digest(env.pg, env.db)
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    bid = r.json()[0]["id"]

    out = tmp_path / "app.dump"
    r = env.cli("backup", "export", bid, "--output", str(out), "--identity", str(key))
    assert r.code == 0, r.err
    assert _pg_restore_file(env, out) == want
    tar_out = tmp_path / "uploads.tar"
    assert env.cli("backup", "export", bid, "--uploads", "--output", str(tar_out), "--identity", str(key)).code == 0
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-x", "-p", "-f", str(tar_out), "-C", str(unpacked)], check=True)
    assert tree_state(unpacked) == tree_state(env.uploads)

    # to stdout, as a real process
    proc = subprocess.run(env.cli_argv("backup", "export", bid, "--identity", str(key)), env=env.subprocess_env(),
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == out.read_bytes()

    # tampered stored bytes: non-zero, no file left behind; on stdout the error is on stderr
    stored = env.store_dir / env.service().get(bid).object("database").key
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    bad = tmp_path / "bad.dump"
    r = env.cli("backup", "export", bid, "--output", str(bad), "--identity", str(key))
    assert r.code == 1 and "integrity check failed" in r.err and "Traceback" not in r.err
    assert not bad.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]
    proc = subprocess.run(env.cli_argv("backup", "export", bid, "--identity", str(key)), env=env.subprocess_env(),
                          capture_output=True, timeout=300)
    assert proc.returncode == 1 and b"integrity check failed" in proc.stderr


def test_export_without_identity_is_one_error(env, tmp_path):
    key = tmp_path / "acme.key"
    recipient = env.cli("keygen", "--output", str(key)).out.strip()
    env.write_config(tenant_extra=f'encrypt_to = ["{recipient}"]')
    r = env.cli("backup", "create", "acme", "--json")
    bid = r.json()[0]["id"]
    out = tmp_path / "x.dump"
    r = env.cli("backup", "export", bid, "--output", str(out))
    assert r.code == 2 and "is encrypted: pass --identity FILE" in r.err and not out.exists()
