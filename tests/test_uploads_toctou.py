"""Issue 12, finding 5: the uploads archiver cannot be led outside the tree. While a loop
swaps the tree's files for symlinks to a root-only file, 30 real backups are made; no
archive holds a byte of that file."""

from __future__ import annotations

import os
import secrets
import shutil
import threading

import zstandard

from dumpsafe.models import UploadsInfo

MARKER = b"FOREIGN-BYTES-" + secrets.token_hex(8).encode()
FILES = 120


def _swapper(root, originals, secret, outside, stop: threading.Event) -> None:
    """Swap each file for a symlink to ``secret`` and back, each step one atomic rename (no
    temporary name ever appears in the tree, nothing vanishes: only the swap is under test)."""
    names = sorted(os.listdir(originals))
    while not stop.is_set():
        for name in names:
            f = root / "docs" / name
            link, copy = outside / f"{name}.lnk", outside / f"{name}.cp"
            os.symlink(secret, link)
            os.replace(link, f)  # the name is now a symlink out of the tree ...
            shutil.copyfile(originals / name, copy)
            os.replace(copy, f)  # ... and a regular file again


def test_symlink_swaps_never_put_foreign_bytes_in_an_archive(env, tmp_path):
    root = env.uploads
    originals = tmp_path / "originals"
    originals.mkdir()
    (root / "docs").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(FILES):
        data = f"upload {i}\n".encode() * 40
        (root / "docs" / f"f{i:03d}.txt").write_bytes(data)
        (originals / f"f{i:03d}.txt").write_bytes(data)
    secret_dir = tmp_path / "root-only"
    secret_dir.mkdir(mode=0o700)
    secret = secret_dir / "secret.bin"
    secret.write_bytes(MARKER * 512)
    os.chmod(secret, 0o600)

    svc = env.service()
    stop = threading.Event()
    swapper = threading.Thread(target=_swapper, args=(root, originals, secret, outside, stop), daemon=True)
    swapper.start()
    records = []
    try:
        for _ in range(30):
            records += svc.create("acme")
    finally:
        stop.set()
        swapper.join(30)

    leaks = []
    for rec in records:
        ref = rec.object("uploads")
        with svc.store(rec.store).open_read(ref.key) as fh:
            data = zstandard.ZstdDecompressor().stream_reader(fh).read()
        assert len(data) > FILES * 400
        if MARKER in data:
            leaks.append(rec.id)
    assert len(records) == 30 and not leaks, f"{len(leaks)} of 30 archives hold bytes from outside the tree"
    # swaps were caught in the act (skipped and named in the record), not only missed by luck
    assert all(isinstance(rec.uploads, UploadsInfo) for rec in records)
    assert sum(len(rec.uploads.skipped) for rec in records) > 0


def test_a_directory_swapped_for_a_symlink_is_never_followed(env, tmp_path):
    """A directory of the tree replaced by a symlink to a foreign directory while backups run:
    no foreign bytes, and no backup fails (the entry is skipped or archived as it was)."""
    root = env.uploads
    deep = root / "deep"
    deep.mkdir()
    for i in range(20):
        (deep / f"d{i:02d}.txt").write_bytes(b"deep\n" * 50)
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    for i in range(20):
        (foreign / f"d{i:02d}.txt").write_bytes(MARKER * 64)
    away = tmp_path / "away"
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.rename(deep, away)
            os.symlink(foreign, deep)
            os.unlink(deep)
            os.rename(away, deep)

    svc = env.service()
    t = threading.Thread(target=swap, daemon=True)
    t.start()
    try:
        records = [svc.create("acme")[0] for _ in range(8)]
    finally:
        stop.set()
        t.join(30)
    for rec in records:
        with svc.store(rec.store).open_read(rec.object("uploads").key) as fh:
            assert MARKER not in zstandard.ZstdDecompressor().stream_reader(fh).read(), rec.id
