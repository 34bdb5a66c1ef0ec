"""When pg_dump dies mid-table, the error keeps the cause ("Error message from server: ...
server closed the connection"), not only pg_dump's last "error:" line."""

from __future__ import annotations

import os
import signal
import subprocess
import time


def _children(pid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p))
    return out


def _pg_dump_of(pid: int) -> int | None:
    for c in _children(pid):
        try:
            if b"pg_dump" in open(f"/proc/{c}/cmdline", "rb").read().split(b"\0")[0]:
                return c
        except OSError:
            continue
    return None


def test_pg_dump_killed_mid_copy_keeps_the_cause(env, pg):
    with pg.connect(env.db) as c:  # more than the pipe and socket buffers hold
        c.execute("INSERT INTO orders (customer_id, total, note) SELECT 1, 1, repeat(md5(g::text), 4) "
                  "FROM generate_series(1, 150000) g")
    proc = subprocess.Popen(env.cli_argv("backup", "create", "acme", "--no-uploads"), env=env.subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dump = None
    try:
        deadline = time.monotonic() + 60
        backend = None
        while backend is None:
            assert proc.poll() is None and time.monotonic() < deadline
            with pg.connect() as c:
                row = c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND query LIKE 'COPY public.orders %%'",
                                (env.db,)).fetchone()
            backend = row[0] if row else None
            dump = _pg_dump_of(proc.pid)
            if backend is not None and dump is not None:
                os.kill(dump, signal.SIGSTOP)  # pg_dump stops reading: the COPY stays in flight
            else:
                backend = None
                time.sleep(0.01)
        with pg.connect() as c:
            assert c.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()[0]
    finally:
        if dump is not None:
            os.kill(dump, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "pg_dump of database" in err and "Dumping the contents of table" in err, err
    assert "Error message from server:" in err and "Traceback" not in err, err
