"""A disk that fills within the dump's last page: one clean error sentence, exit 1, no
traceback, nothing listed, nothing left on the disk (the close/flush of the last bytes
used to raise again in a ``finally`` and replace the clean error with a traceback)."""

from __future__ import annotations

import json
import subprocess

import pytest

PAGE = 4096


@pytest.fixture
def sized_tmpfs(tmp_path):
    mounted: list = []

    def mount(size: int):
        mnt = tmp_path / f"disk{len(mounted)}"
        mnt.mkdir()
        # mode=0700: the store root is dumpsafe's own directory (an open one is tightened with a log line)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)], check=True, capture_output=True)
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_in_the_last_page_of_the_dump(env, pg, sized_tmpfs):
    with pg.connect(env.db) as c:
        c.execute("INSERT INTO orders (customer_id, total, note) SELECT 1, 1, md5(random()::text) FROM generate_series(1, 20000)")
    for _ in range(20):  # random rows: a dump ending within 64 bytes of a page boundary (~1.6 %) gets more rows
        ref = env.cli("backup", "create", "acme", "--no-uploads", "--json")
        assert ref.code == 0, ref.err
        size = ref.json()[0]["objects"][0]["size_bytes"]
        if size % PAGE > 64:
            break
        with pg.connect(env.db) as c:
            c.execute("INSERT INTO orders (customer_id, total, note) SELECT 1, 1, md5(random()::text) FROM generate_series(1, 100)")
    assert size % PAGE > 64, "the dump ends too close to a page boundary for this test"
    # one page for the pending marker, every page of the dump but its last
    disk = sized_tmpfs(PAGE + (size // PAGE) * PAGE)
    env.config_path.write_text(env.config_path.read_text().replace('path = "backups"', f'path = "{disk}"'))

    r = subprocess.run(env.cli_argv("backup", "create", "acme", "--no-uploads"), env=env.subprocess_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: store 'local': no space left on device while writing objects/"), r.stderr
    assert env.cli("backup", "list", "--json").json() == []
    assert [p for p in disk.rglob("*") if p.is_file()] == []
    last = json.loads((env.state_dir / "audit.jsonl").read_text().splitlines()[-1])
    assert last["outcome"] == "failed" and last["error"].startswith("store 'local': no space left on device")
