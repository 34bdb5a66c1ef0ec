"""Safe extraction of uploads archives: hostile tar members are refused, nothing lands outside."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dumpsafe.engines import files
from dumpsafe.catalog import object_key
from dumpsafe.pipeline import pack_stream
from restore_helpers import databases, db_state, tree_state


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    return ti, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = linkname
    ti.mode = 0o777 if kind == tarfile.SYMTYPE else 0o644
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        ti.devmajor, ti.devminor = 1, 3
    return ti, None


HOSTILE = {
    "dotdot": [_file("../escape.txt")],
    "dotdot-nested": [_file("a/../../escape.txt")],
    "absolute": [_file("/tmp/dumpsafe-abs-escape.txt")],
    "symlink-out": [_special("link", tarfile.SYMTYPE, "../outside"), _file("link/escape.txt")],
    "symlink-abs": [_special("etc", tarfile.SYMTYPE, "/etc")],
    "symlink-deep": [_special("a/b", tarfile.SYMTYPE, "../../outside")],
    "hardlink-out": [_special("pw", tarfile.LNKTYPE, "../outside/secret")],
    "hardlink-abs": [_special("pw", tarfile.LNKTYPE, "/etc/passwd")],
    "char-device": [_special("null", tarfile.CHRTYPE)],
    "block-device": [_special("disk", tarfile.BLKTYPE)],
    "fifo": [_special("pipe", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused(tmp_path: Path, case: str):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("do not touch")
    dest = tmp_path / "dest"
    dest.mkdir()
    data = _tar(HOSTILE[case])
    with pytest.raises(files.UnsafeMember):
        files.extract_tree(io.BytesIO(data), dest)
    with pytest.raises(files.UnsafeMember):
        files.scan_tree_archive(io.BytesIO(data))
    assert sorted(os.listdir(outside)) == ["secret"] and (outside / "secret").read_text() == "do not touch"
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/dumpsafe-abs-escape.txt").exists()
    assert list(dest.iterdir()) == []


def test_benign_tree_extracts_with_links_and_modes(tmp_path: Path):
    src = [
        _file("docs/readme.txt", b"hello", 0o640),
        _file("bin/tool.sh", b"#!/bin/sh\n", 0o755),
        _special("docs/latest", tarfile.SYMTYPE, "readme.txt"),
        _special("docs/tool", tarfile.SYMTYPE, "../bin/tool.sh"),  # relative, stays inside
        _special("docs/copy", tarfile.LNKTYPE, "docs/readme.txt"),
    ]
    src[-1][0].mode = 0o640  # a hard link shares its target's inode, so it carries the same mode
    dest = tmp_path / "dest"
    dest.mkdir()
    stats = files.extract_tree(io.BytesIO(_tar(src)), dest)
    assert stats.files == 2
    assert (dest / "docs/readme.txt").read_bytes() == b"hello"
    assert os.readlink(dest / "docs/latest") == "readme.txt"
    assert (dest / "docs/copy").read_bytes() == b"hello"
    assert (dest / "docs/tool").read_bytes() == b"#!/bin/sh\n"
    assert (dest / "bin/tool.sh").stat().st_mode & 0o777 == 0o755
    assert (dest / "docs/readme.txt").stat().st_mode & 0o777 == 0o640


def test_swap_in_replaces_tree_atomically(tmp_path: Path):
    live = tmp_path / "live"
    (live / "old").mkdir(parents=True)
    with files.staging(live) as staged:
        (staged / "new.txt").write_text("new")
        files.swap_in(staged, live)
    assert sorted(os.listdir(live)) == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["live"]  # no staging, lock or old tree left


def test_staging_left_by_a_dead_process_is_swept_and_a_moved_tree_put_back(tmp_path: Path):
    import fcntl

    live = tmp_path / "uploads"
    # 1. a dead restore left a half-extracted staging tree (its lock file is free)
    dead = tmp_path / ".uploads.dumpsafe-staging-0badf00d"
    (dead / "half").mkdir(parents=True)
    Path(f"{dead}.lock").touch()
    # 2. a running restore holds its lock: left alone
    running = tmp_path / ".uploads.dumpsafe-staging-feedbeef"
    running.mkdir()
    fd = os.open(f"{running}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    # 3. a dead restore (two-rename fallback) had moved the live tree aside before swapping
    aside = tmp_path / ".uploads.dumpsafe-staging-12345678"
    aside.mkdir()
    Path(f"{aside}-old").mkdir()
    Path(f"{aside}-old/precious.txt").write_text("keep")
    Path(f"{aside}.lock").touch()
    try:
        files.sweep_staging(live)
        assert (live / "precious.txt").read_text() == "keep"
        assert sorted(os.listdir(tmp_path)) == sorted(["uploads", running.name, f"{running.name}.lock"])
    finally:
        os.close(fd)



def test_restore_of_a_hostile_uploads_archive_changes_nothing(env, tmp_path: Path):
    """A backup whose uploads object (with a matching checksum) hides '../' members: refused,
    nothing written outside, live tree and database untouched."""
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    svc = env.service()
    rec = svc.get(r.json()[0]["id"])
    st = svc.store(rec.store)
    payload = _tar([_file("fine.txt", b"ok"), _file("../../escaped-by-restore.txt", b"pwned")])
    key = object_key(rec.id, "uploads.tar.zst")
    with st.open_write(key) as w:
        res = pack_stream(io.BytesIO(payload), w)
    objects = [o.model_copy(update={"size_bytes": res.stored_bytes, "sha256": res.sha256, "raw_bytes": res.raw_bytes})
               if o.role == "uploads" else o for o in rec.objects]
    svc.save_record(rec.model_copy(update={"objects": objects}))

    with env.pg.connect(env.db) as c:
        c.execute("DELETE FROM billing.invoices")
    state, tree, dbs = db_state(env.pg, env.db), tree_state(env.uploads), databases(env.pg)
    r = env.cli("backup", "restore", rec.id, "--yes")
    assert r.code == 1 and "refusing to restore the uploads tree" in r.err and "'..'" in r.err
    assert db_state(env.pg, env.db) == state and databases(env.pg) == dbs
    assert tree_state(env.uploads) == tree
    assert not list(tmp_path.rglob("escaped-by-restore.txt")) and not list(env.uploads.parent.glob(".uploads.dumpsafe-*"))

    r = env.cli("backup", "verify", rec.id)
    assert r.code == 1 and "unsafe" in r.err


def test_swap_in_without_atomic_exchange_uses_two_renames(tmp_path: Path, monkeypatch):
    """Filesystems without RENAME_EXCHANGE: move aside, rename in, remove the old tree."""
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    live = tmp_path / "live"
    (live / "old").mkdir(parents=True)
    with files.staging(live) as staged:
        (staged / "new.txt").write_text("new")
        files.swap_in(staged, live)
    assert sorted(os.listdir(live)) == ["new.txt"] and sorted(os.listdir(tmp_path)) == ["live"]
