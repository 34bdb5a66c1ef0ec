"""PostgreSQL: connect, stream pg_dump, find matching client tools.

Passwords reach pg_dump/pg_restore only through the child's environment (PGPASSWORD),
never argv; psycopg gets it as a keyword, never in a logged DSN.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator

import psycopg

from dumpsafe.errors import BackupFailed, ConfigError, DatabaseUnavailable, DumpsafeError, first_line

if TYPE_CHECKING:
    from dumpsafe.engines.pgsnapshot import DumpSnapshot

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
        """The child's environment. Direct: PGPASSWORD here. Exec: the password goes on stdin
        (see PW_WRAPPER), so neither the exec tool's argv nor its environment carries it."""
        env = dict(os.environ)
        for k in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGOPTIONS"):
            env.pop(k, None)
        env.update({"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGCONNECT_TIMEOUT": "10"})
        if self.password is not None and not self.exec_prefix:
            env["PGPASSWORD"] = self.password
        return env

    def conn_args(self) -> list[str]:
        """Host, port and user as arguments (not secrets): env vars do not cross an exec channel."""
        return [f"--host={self.host}", f"--port={self.port}", f"--username={self.user}"]

    def command(self, argv: list[str]) -> list[str]:
        """Full argv: direct, or through the exec prefix and the password-on-stdin wrapper."""
        if not self.exec_prefix:
            return list(argv)
        return through(self.exec_prefix, ["sh", "-c", PW_WRAPPER, "dumpsafe-pg", *argv])

    def password_line(self) -> bytes:
        """What an exec'd child reads first on stdin (an empty line when there is no password)."""
        return ((self.password or "") + "\n").encode()


REMOTE_SHELLS = frozenset({"ssh", "autossh"})


def through(prefix: tuple[str, ...], argv: list[str]) -> list[str]:
    """argv run through an exec prefix. ``docker exec``/``incus exec`` pass their arguments on
    as they are; a remote shell (ssh) joins them into ONE command line that the remote shell
    parses again, so there they travel as one shell-quoted string."""
    if os.path.basename(prefix[0]) in REMOTE_SHELLS:
        return [*prefix, shlex.join(argv)]
    return [*prefix, *argv]


# Reads one line (the password) from stdin, exports it, then becomes the real tool, which
# sees the rest of stdin (pg_restore data). `read` takes bytes one by one from a pipe, so
# nothing beyond the newline is consumed.
PW_WRAPPER = 'IFS= read -r PGPASSWORD; export PGPASSWORD; [ -n "$PGPASSWORD" ] || unset PGPASSWORD; exec "$@"'


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


def find_exec_tool(target: PgTarget, name: str, min_major: int | None, *,
                   error: type[DumpsafeError] = BackupFailed) -> tuple[str, str]:
    """A tool inside the tenant's exec target: pg_bin_dir/name if configured, else on its PATH.
    ``error`` is what a tool that will not run raises (a restore or drill: RestoreFailed)."""
    path = str(target.bin_dirs[0] / name) if target.bin_dirs else name
    try:
        out = subprocess.run(through(target.exec_prefix, [path, "--version"]), capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL, env=target.env())
    except (OSError, subprocess.SubprocessError) as e:
        raise error(f"tenant {target.tenant!r}: cannot run {path} through {target.exec_prefix[0]} ({e})") from None
    m = _VERSION_RE.search(out.stdout)
    if not m:
        raise error(
            f"tenant {target.tenant!r}: {path} --version failed through {target.exec_prefix[0]} "
            f"({(out.stderr or out.stdout).strip()[:200] or 'no output'}); install the PostgreSQL client there or set pg_bin_dir"
        )
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    if min_major is not None and major < min_major:
        raise ConfigError(
            f"the server is PostgreSQL {min_major} but {name} inside the exec target is {major}.{minor} "
            f"(install postgresql-client-{min_major} or newer there, or point pg_bin_dir at it)"
        )
    return path, f"{major}.{minor}"


# ---- connections -------------------------------------------------------------------------
def explain_connect_error(target: PgTarget, dbname: str, e: Exception) -> str:
    text = first_line(e)
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
        raise DatabaseUnavailable(explain_connect_error(target, dbname, e)) from None


class _StderrTail(threading.Thread):
    """Drain a child's stderr so it never blocks, keeping the last few KiB for error text."""

    def __init__(self, stream: IO[bytes], secret: str | None):
        super().__init__(daemon=True)
        self._stream = stream
        self._secret = secret
        self.tail = b""

    def run(self) -> None:
        try:
            for line in iter(self._stream.readline, b""):
                self.tail = (self.tail + line)[-STDERR_KEEP:]
        finally:
            self._stream.close()

    def text(self) -> str:
        t = self.tail.decode("utf-8", "replace").strip()
        if self._secret:
            t = t.replace(self._secret, "***")
        lines = [ln.removeprefix("pg_dump: ").removeprefix("pg_restore: ") for ln in t.splitlines() if ln.strip()]
        # the failing step and its cause: "error: ... PQgetResult() failed." is followed by
        # "detail: ... server closed the connection unexpectedly" (PG 15+) or by a second
        # "error:" line (older); the statement ("Command was: COPY ...") says nothing new
        errors = [ln for ln in lines if ln.lower().startswith(("error", "detail"))
                  and not any(w in ln.lower() for w in ("command was", "query was"))] or lines[-1:]
        return "; ".join(errors[-2:])


@contextmanager
def tool_stream(target: PgTarget, argv: list[str], what: str, *,
                error: type[DumpsafeError] = BackupFailed) -> Iterator[IO[bytes]]:
    """Run a client tool and yield its stdout; a non-zero exit raises ``error`` (a backup's
    BackupFailed unless told) on leaving the block (so an enclosing store writer aborts). An
    exception inside kills the tool."""
    full = target.command(argv)
    stdin = subprocess.PIPE if target.exec_prefix else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin, env=target.env())
    except OSError as e:
        raise error(f"tenant {target.tenant!r}: cannot start {full[0]} ({e.strerror})") from None
    if target.exec_prefix:
        try:
            proc.stdin.write(target.password_line())
            proc.stdin.close()
        except BrokenPipeError:
            pass
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
        raise error(f"tenant {target.tenant!r}: {what} failed: {detail}")


def pg_dump_stream(target: PgTarget, dbname: str, snap: DumpSnapshot, pg_dump: str):
    """pg_dump in custom format, uncompressed (we compress), in the exported snapshot."""
    argv = [pg_dump, *target.conn_args(), "--format=custom", "--compress=0", f"--snapshot={snap.snapshot_id}",
            "--no-password", f"--dbname={dbname}"]
    return tool_stream(target, argv, f"pg_dump of database {dbname!r}")


def pg_dump_schema_stream(target: PgTarget, dbname: str, pg_dump: str, snap: DumpSnapshot | None = None, *,
                          error: type[DumpsafeError] = BackupFailed):
    """pg_dump --schema-only as plain SQL (the schema fingerprint), in the dump's snapshot if given."""
    argv = [pg_dump, *target.conn_args(), "--schema-only", "--no-password", f"--dbname={dbname}"]
    if snap is not None:
        argv.insert(-1, f"--snapshot={snap.snapshot_id}")
    return tool_stream(target, argv, f"pg_dump --schema-only of database {dbname!r}", error=error)


def pg_dumpall_globals_stream(target: PgTarget, pg_dumpall: str):
    """Roles, tablespaces and their grants, without role passwords."""
    argv = [pg_dumpall, *target.conn_args(), "--globals-only", "--no-role-passwords", "--no-password"]
    return tool_stream(target, argv, "pg_dumpall --globals-only")
