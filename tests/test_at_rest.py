"""Issue 12, finding 2: nothing dumpsafe writes is readable by another local user, whatever
the umask: files 0600, directories 0700 after backup, restore, drill and token create, and
`runuser -u nobody` can read none of it. Older trees are tightened on start (one log line)."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import PASSWORD_ENV, Env
from dumpsafe.devcluster import make_uploads


@pytest.fixture
def open_root(pg, db, monkeypatch):
    """An env whose root any user may traverse (pytest's tmp_path is 0700 and would hide everything)."""
    root = Path(tempfile.mkdtemp(prefix="dumpsafe-at-rest-", dir="/tmp"))
    os.chmod(root, 0o755)
    monkeypatch.setenv(PASSWORD_ENV, pg.password)
    monkeypatch.delenv("DUMPSAFE_CONFIG", raising=False)
    make_uploads(root / "uploads", files=4)
    env = Env(root=root, pg=pg, db=db, uploads=root / "uploads")
    env.write_config()
    old = os.umask(0)  # the most permissive umask: modes must not depend on it
    try:
        yield env
    finally:
        os.umask(old)
        shutil.rmtree(root, ignore_errors=True)


def _as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True, timeout=30)


def _tree(root: Path) -> tuple[list[Path], list[Path]]:
    files, dirs = [], [root]
    for dirpath, dirnames, filenames in os.walk(root):
        dirs += [Path(dirpath) / d for d in dirnames]
        files += [Path(dirpath) / f for f in filenames]
    return files, dirs


def test_everything_written_is_owner_only(open_root):
    env = open_root
    made = env.cli("token", "create", "--tenant", "acme", "--scope", "backups:read")
    assert made.code == 0, made.err
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    bid = r.json()[0]["id"]
    target = "rest_" + secrets.token_hex(4)
    try:
        r = env.cli("backup", "restore", bid, "--database", target, "--mode", "new", "--no-uploads", "--yes")
        assert r.code == 0, r.err
    finally:
        env.pg.drop_database(target)
    r = env.cli("backup", "verify", bid, "--drill")
    assert r.code == 0, r.err
    assert env.cli("backup", "list").code == 0

    files, dirs = [], []
    for root in (env.state_dir, env.store_dir):
        f, d = _tree(root)
        files, dirs = files + f, dirs + d
    names = {p.name for p in files}
    assert {"tokens.json", "audit.jsonl", "database.dump.zst", "uploads.tar.zst", f"{bid}.json"} <= names, names
    assert any(p.name == "catalog.sqlite3" for p in files)  # the catalog cache (SQLite)
    wrong = [f"{p} {oct(stat.S_IMODE(p.lstat().st_mode))}" for p in files if stat.S_IMODE(p.lstat().st_mode) != 0o600]
    wrong += [f"{p} {oct(stat.S_IMODE(p.lstat().st_mode))}" for p in dirs if stat.S_IMODE(p.lstat().st_mode) != 0o700]
    assert not wrong, wrong

    # and another local user can read none of it (the root of the env is world-traversable)
    assert _as_nobody("ls", str(env.root)).returncode == 0
    for p in files:
        assert _as_nobody("cat", str(p)).returncode != 0, p
    for d in (env.state_dir, env.store_dir):
        assert _as_nobody("ls", str(d)).returncode != 0, d


def test_older_trees_are_tightened_on_start_with_one_log_line(open_root, caplog):
    env = open_root
    os.umask(0o022)
    (env.state_dir / "cache").mkdir(parents=True)
    (env.state_dir / "cache" / "index-local.json").write_text("{}")
    (env.store_dir / "records").mkdir(parents=True)
    (env.store_dir / "records" / "old.json").write_text("{}")
    os.chmod(env.state_dir, 0o755)
    os.chmod(env.store_dir, 0o755)
    with caplog.at_level(logging.WARNING, logger="dumpsafe"):
        env.service()
        env.service()  # a second start finds nothing to do
    lines = [r.getMessage() for r in caplog.records if "tightened" in r.getMessage()]
    assert len(lines) == 1 and str(env.state_dir) in lines[0] and str(env.store_dir) in lines[0]
    files, dirs = _tree(env.state_dir)
    f2, d2 = _tree(env.store_dir)
    assert {stat.S_IMODE(p.stat().st_mode) for p in files + f2} == {0o600}
    assert {stat.S_IMODE(p.stat().st_mode) for p in dirs + d2} == {0o700}
    assert _as_nobody("cat", str(env.store_dir / "records" / "old.json")).returncode != 0


def test_an_uploads_tree_is_staged_owner_only_and_swapped_in_with_the_live_mode(tmp_path):
    from dumpsafe.engines import files

    live = tmp_path / "uploads"
    live.mkdir()
    os.chmod(live, 0o755)
    (live / "old.txt").write_text("old")
    with files.staging(live) as staged:
        assert stat.S_IMODE(staged.stat().st_mode) == 0o700  # nobody else can look in while it fills
        (staged / "new.txt").write_text("new")
        files.swap_in(staged, live)
    assert stat.S_IMODE(live.stat().st_mode) == 0o755 and (live / "new.txt").read_text() == "new"


def test_tightening_never_touches_an_uploads_tree_inside_a_store(open_root):
    env = open_root
    os.umask(0o022)
    inside = env.store_dir / "app-uploads"
    inside.mkdir(parents=True)
    (inside / "logo.png").write_bytes(b"png")
    os.chmod(env.store_dir, 0o755)
    env.write_config(tenant_extra=f'\n[tenants.other]\ndatabases = ["x"]\nuploads = "{inside}"\n')
    env.service()
    assert stat.S_IMODE(env.store_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(inside.stat().st_mode) == 0o755 and stat.S_IMODE((inside / "logo.png").stat().st_mode) == 0o644
