"""PostgreSQL restore side: run pg_restore. The archive's TOC is read by ``engines/toc.py``,
its database-level statements by ``engines/dbspec.py``, databases are created, swapped and
dropped by ``engines/databases.py``.

pg_restore always gets its password through the environment (PgTarget.env()) and the
database as a quoted conninfo string, so odd names can never be read as options.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from dumpsafe.engines.postgres import STDERR_KEEP, PgTarget, _StderrTail
from dumpsafe.errors import RestoreFailed


# ---- running pg_restore ---------------------------------------------------------------------
def conninfo_dbname(name: str) -> str:
    """A libpq conninfo naming only the database (host/port/user come from the environment)."""
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


# pg_restore --verbose, before each table's COPY: 'pg_restore: processing data for table "public.events"',
# and as it starts any other item: 'pg_restore: creating INDEX "public.events_pkey"', 'executing SEQUENCE SET ...'
_TABLE_LINE = re.compile(rb'^pg_restore: processing data for table "(.*)"$')
_ITEM_LINE = re.compile(rb"^pg_restore: (?:creating|executing|processing|setting owner|dropping) ")
Read = Callable[[int], bytes]


class _VerboseTail(_StderrTail):
    """The stderr tail, also reporting each item pg_restore starts (its --verbose lines): the
    table's name when it starts loading a table's data, None for any other item."""

    def __init__(self, stream, secret: str | None, on_table: Callable[[str | None], None]):
        super().__init__(stream, secret)
        self._on_table = on_table

    def run(self) -> None:
        try:
            for line in iter(self._stream.readline, b""):
                m = _TABLE_LINE.match(line.rstrip(b"\r\n"))
                if m or _ITEM_LINE.match(line):
                    try:
                        self._on_table(m.group(1).decode("utf-8", "replace") if m else None)
                    except Exception:  # progress and early counts must never stop the restore
                        pass
                    continue  # verbose chatter stays out of the error tail
                if line.startswith(b"pg_restore: ") and not line[12:].lower().startswith((b"error", b"detail", b"warning")) \
                        and b"Command was" not in line:
                    continue
                self.tail = (self.tail + line)[-STDERR_KEEP:]
        finally:
            self._stream.close()


def run_pg_restore(target: PgTarget, tool: str, dbname: str, archive: Path | Read, *, args: tuple[str, ...] = (),
                   jobs: int = 1, appname: str | None = None, on_table: Callable[[str | None], None] | None = None,
                   fed: Callable[[int], None] | None = None) -> None:
    """pg_restore an archive into ``dbname``; any error stops it (--exit-on-error).

    ``archive`` is a file (local tools read it, in parallel with ``jobs`` > 1) or a read
    function whose bytes go to pg_restore's stdin (single job; exec'd tools always get stdin,
    so nothing needs to exist inside the container). ``fed`` is told every chunk written to
    stdin, ``on_table`` each table whose data pg_restore starts loading, and None for each other
    item it starts (its --verbose output).
    ``appname`` names its sessions (application_name), so a journal replay can find them after
    the restoring process died.
    """
    argv = [tool, *target.conn_args(), "--no-password", "--exit-on-error", f"--dbname={conninfo_dbname(dbname)}", *args]
    if on_table is not None:
        argv.append("--verbose")
    piped = bool(target.exec_prefix) or callable(archive)
    if not piped:
        if jobs > 1 and "--single-transaction" not in args:
            argv.append(f"--jobs={jobs}")
        argv.append(str(archive))
    env = target.env()
    if appname:
        env["PGAPPNAME"] = appname
    try:
        proc = subprocess.Popen(target.command(argv), stdin=subprocess.PIPE if piped else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    except OSError as e:
        raise RestoreFailed(f"tenant {target.tenant!r}: cannot start {tool} ({e.strerror})") from None
    tail = _VerboseTail(proc.stderr, target.password, on_table) if on_table else _StderrTail(proc.stderr, target.password)
    tail.start()
    try:
        if piped:  # exec'd: password line first (PW_WRAPPER), then the archive
            try:
                if target.exec_prefix:
                    proc.stdin.write(target.password_line())
                if callable(archive):
                    while chunk := archive(1 << 20):
                        proc.stdin.write(chunk)
                        if fed:
                            fed(len(chunk))
                else:
                    with open(archive, "rb") as fh:
                        shutil.copyfileobj(fh, proc.stdin, 1 << 20)
            except BrokenPipeError:
                pass  # pg_restore stopped early; its exit status and stderr say why
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        tail.join(timeout=5)
    if rc != 0:
        raise RestoreFailed(f"pg_restore into database {dbname!r} failed: {tail.text() or f'exit status {rc}'}")
