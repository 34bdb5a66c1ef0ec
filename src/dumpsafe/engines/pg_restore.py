"""PostgreSQL restore side: run pg_restore. The archive's TOC is read by ``engines/toc.py``,
its database-level statements by ``engines/dbspec.py``, databases are created, swapped and
dropped by ``engines/databases.py`` (re-exported here, so ``pgr.X`` keeps working).

pg_restore always gets its password through the environment (PgTarget.env()) and the
database as a quoted conninfo string, so odd names can never be read as options.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dumpsafe.engines.databases import (  # noqa: F401  (re-exported)
    IDENT_MAX, LOCK_SPACE, ORPHAN_RE, admin, apply_properties, available_extensions, check_db_name, claimed, clean_blockers,
    create_database, data_directory, database_exists, drop_database, existing_roles, maintenance_db,
    rename_into_place, replace_properties, server_version, side_name, swap_databases, sweep_orphans, target_objects,
    unsupported_properties,
)
from dumpsafe.engines.dbspec import DbSpec, parse_spec  # noqa: F401
from dumpsafe.engines.postgres import PgTarget, _StderrTail
from dumpsafe.engines.toc import Toc, TocEntry, archive_sequences, clean_list, major_of, parse_toc, read_toc, split_key  # noqa: F401
from dumpsafe.errors import RestoreFailed


# ---- running pg_restore ---------------------------------------------------------------------
def conninfo_dbname(name: str) -> str:
    """A libpq conninfo naming only the database (host/port/user come from the environment)."""
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_pg_restore(target: PgTarget, tool: str, dbname: str, archive: Path, *, args: tuple[str, ...] = (), jobs: int = 1) -> None:
    """pg_restore an archive file into ``dbname``; any error stops it (--exit-on-error).

    Local tools read the file (parallel with ``jobs`` > 1); exec'd tools get it on stdin,
    so nothing needs to exist inside the container.
    """
    argv = [tool, *target.conn_args(), "--no-password", "--exit-on-error", f"--dbname={conninfo_dbname(dbname)}", *args]
    if not target.exec_prefix:
        if jobs > 1 and "--single-transaction" not in args:
            argv.append(f"--jobs={jobs}")
        argv.append(str(archive))
    try:
        proc = subprocess.Popen(target.command(argv), stdin=subprocess.PIPE if target.exec_prefix else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=target.env())
    except OSError as e:
        raise RestoreFailed(f"tenant {target.tenant!r}: cannot start {tool} ({e.strerror})") from None
    tail = _StderrTail(proc.stderr, target.password)
    tail.start()
    try:
        if target.exec_prefix:  # password line first (PW_WRAPPER), then the archive
            try:
                proc.stdin.write(target.password_line())
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
