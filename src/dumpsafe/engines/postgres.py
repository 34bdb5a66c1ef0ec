"""PostgreSQL: connect, snapshot, count rows, stream pg_dump, find matching client tools.

Passwords reach pg_dump/pg_restore only through the child's environment (PGPASSWORD),
never argv; psycopg gets it as a keyword, never in a logged DSN.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Iterator

import psycopg
from psycopg import sql

from dumpsafe.errors import BackupFailed, ConfigError

STDERR_KEEP = 16 * 1024


@dataclass(frozen=True)
class PgTarget:
    """Where a tenant's PostgreSQL is and how to reach it."""

    tenant: str
    host: str
    port: int
    user: str
    password: str | None = field(default=None, repr=False)
    exec_prefix: tuple[str, ...] = ()
    bin_dirs: tuple[Path, ...] = ()

    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGOPTIONS"):
            env.pop(k, None)
        env.update({"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGCONNECT_TIMEOUT": "10"})
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env


# ---- client tools ------------------------------------------------------------------------
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@lru_cache(maxsize=64)
def tool_version(path: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION_RE.search(out)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def candidate_bin_dirs(extra: tuple[Path, ...] = ()) -> list[Path]:
    dirs: list[Path] = [Path(p) for p in extra]
    dirs += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    versioned = glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/pgsql-*/bin")

    def major(p: str) -> int:
        m = re.search(r"(\d+)", p.split("postgresql/")[-1].split("pgsql-")[-1])
        return int(m.group(1)) if m else 0

    dirs += [Path(p) for p in sorted(versioned, key=major, reverse=True)]
    return dirs


def find_tool(name: str, min_major: int | None = None, extra: tuple[Path, ...] = ()) -> tuple[str, tuple[int, int]]:
    """Pick ``name`` (pg_dump, pg_restore, ...) of at least ``min_major``; prefer the configured dir."""
    found: list[tuple[str, tuple[int, int]]] = []
    seen: set[str] = set()
    for d in candidate_bin_dirs(extra):
        p = d / name
        rp = str(p.resolve()) if p.exists() else None
        if not rp or rp in seen or not os.access(rp, os.X_OK):
            continue
        seen.add(rp)
        v = tool_version(str(p))
        if v is None:
            continue
        found.append((str(p), v))
        if min_major is None or v[0] >= min_major:
            return str(p), v
    if not found:
        raise ConfigError(
            f"{name} not found (install the PostgreSQL client, e.g. apt-get install postgresql-client, or set pg_bin_dir)"
        )
    newest = max(found, key=lambda f: f[1])
    raise ConfigError(
        f"the server is PostgreSQL {min_major} but the newest {name} found is {newest[1][0]}.{newest[1][1]} "
        f"(install postgresql-client-{min_major} or newer, or point pg_bin_dir at it)"
    )


# ---- connections -------------------------------------------------------------------------
def explain_connect_error(target: PgTarget, dbname: str, e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    low = str(e).lower()
    who = f"tenant {target.tenant!r}"
    if "password authentication failed" in low or "no password supplied" in low:
        return f"{who}: password authentication failed for user {target.user!r} at {target.where()} (check password_env/password_file)"
    if "does not exist" in low and "database" in low:
        return f"{who}: database {dbname!r} does not exist at {target.where()} (check tenants.{target.tenant}.databases)"
    if "connection refused" in low or "could not connect" in low or "timeout" in low or "no route" in low:
        return f"{who}: cannot connect to PostgreSQL at {target.where()} (is the server running and reachable?)"
    if target.password:
        text = text.replace(target.password, "***")
    return f"{who}: cannot connect to PostgreSQL at {target.where()}: {text}"


def connect(target: PgTarget, dbname: str, *, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            dbname=dbname,
            connect_timeout=10,
            application_name="dumpsafe",
            autocommit=autocommit,
        )
    except psycopg.Error as e:
        raise BackupFailed(explain_connect_error(target, dbname, e)) from None


def list_databases(target: PgTarget) -> list[str]:
    with connect(target, "postgres", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname"
        ).fetchall()
    return [r[0] for r in rows]


TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def count_tables(conn: psycopg.Connection) -> dict[str, int]:
    """Exact row count of every user table, in the connection's current snapshot."""
    counts: dict[str, int] = {}
    for schema, table in conn.execute(TABLES_SQL).fetchall():
        q = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        counts[f"{schema}.{table}"] = conn.execute(q).fetchone()[0]
    return counts


class _StderrTail(threading.Thread):
    """Drain a child's stderr so it never blocks, keeping the last few KiB for error text."""

    def __init__(self, stream: IO[bytes], secret: str | None):
        super().__init__(daemon=True)
        self._stream = stream
        self._secret = secret
        self.tail = b""

    def run(self) -> None:
        for line in iter(self._stream.readline, b""):
            self.tail = (self.tail + line)[-STDERR_KEEP:]

    def text(self) -> str:
        t = self.tail.decode("utf-8", "replace").strip()
        if self._secret:
            t = t.replace(self._secret, "***")
        lines = [ln.removeprefix("pg_dump: ").removeprefix("pg_restore: ") for ln in t.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.lower().startswith("error")] or lines
        return errors[-1] if errors else ""


@dataclass
class DumpSnapshot:
    """An open REPEATABLE READ transaction whose snapshot pg_dump imports."""

    conn: psycopg.Connection
    snapshot_id: str
    server_version: str
    server_major: int


@contextmanager
def snapshot(target: PgTarget, dbname: str) -> Iterator[DumpSnapshot]:
    conn = connect(target, dbname)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snap = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        version = conn.execute("SHOW server_version").fetchone()[0]
        yield DumpSnapshot(conn, snap, version.split()[0], conn.info.server_version // 10000)
    finally:
        try:
            conn.rollback()
        except psycopg.Error:
            pass
        conn.close()


@contextmanager
def pg_dump_stream(target: PgTarget, dbname: str, snap: DumpSnapshot, pg_dump: str) -> Iterator[IO[bytes]]:
    """Run pg_dump (custom format, uncompressed: we compress) and yield its stdout.

    On leaving the block the process is waited for; a non-zero exit raises BackupFailed.
    On an exception inside the block the process is killed.
    """
    argv = [
        *target.exec_prefix,
        pg_dump,
        "--format=custom",
        "--compress=0",
        f"--snapshot={snap.snapshot_id}",
        "--no-password",
        f"--dbname={dbname}",
    ]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=target.env())
    except OSError as e:
        raise BackupFailed(f"tenant {target.tenant!r}: cannot start {pg_dump} ({e.strerror})") from None
    tail = _StderrTail(proc.stderr, target.password)
    tail.start()
    ok = False
    try:
        yield proc.stdout
        ok = True
    finally:
        if not ok:
            proc.kill()
        proc.stdout.close()
        rc = proc.wait()
        tail.join(timeout=5)
    if rc != 0:
        detail = tail.text() or f"exit status {rc}"
        raise BackupFailed(f"tenant {target.tenant!r}: pg_dump of database {dbname!r} failed: {detail}")
