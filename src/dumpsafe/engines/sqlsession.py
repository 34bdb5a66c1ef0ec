"""One SQL session interface (backup snapshots and counts, restore admin work), two ways to reach the server.

``open_session`` gives a psycopg connection for a directly reachable server, or psql driven
over the tenant's exec channel (container, ssh). Both take composed ``psycopg.sql`` queries
(identifiers and literals quoted client-side, so psql sees exactly what psycopg would send),
return rows with real Python types (bool, int, list, None) and raise ``SqlFailed`` with the
SQLSTATE, so restore code has one path whatever the channel.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager
from typing import Any, Iterator, Protocol

import psycopg
from psycopg import sql

from dumpsafe.engines.postgres import PgTarget, _StderrTail, connect, explain_connect_error
from dumpsafe.errors import BackupFailed, DatabaseUnavailable, RestoreFailed, SqlFailed, first_line

Query = str | sql.Composable


class Session(Protocol):
    """What restore, dry run and drill need from a server connection (autocommit unless in ``transaction``)."""

    def rows(self, query: Query) -> list[tuple[Any, ...]]: ...

    def execute(self, query: Query) -> None: ...

    def transaction(self) -> Any: ...

    def close(self) -> None: ...


def render(query: Query) -> str:
    """A composed query as SQL text, quoted client-side (no connection needed)."""
    return query if isinstance(query, str) else query.as_string(None)


class PsycopgSession:
    """A direct connection (autocommit)."""

    def __init__(self, target: PgTarget, dbname: str):
        self.conn = connect(target, dbname, autocommit=True)

    def rows(self, query: Query) -> list[tuple[Any, ...]]:
        try:
            return [tuple(r) for r in self.conn.execute(query).fetchall()]
        except psycopg.Error as e:
            raise SqlFailed(first_line(e), e.sqlstate) from None

    def execute(self, query: Query) -> None:
        try:
            self.conn.execute(query)
        except psycopg.Error as e:
            raise SqlFailed(first_line(e), e.sqlstate) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self.conn.transaction():
                yield
        except psycopg.Error as e:
            raise SqlFailed(first_line(e), e.sqlstate) from None

    def close(self) -> None:
        self.conn.close()


class PsqlAdminSession:
    """psql over the exec channel (password first on stdin, see PW_WRAPPER), one statement at a time.

    Without ON_ERROR_STOP a failed statement leaves the session (and its advisory locks) alive;
    after each statement psql echoes a marker with :SQLSTATE and :LAST_ERROR_MESSAGE. Result
    rows come back as ``row_to_json`` text, one line each, and are decoded in column order
    (duplicate column names are fine), so booleans, numbers, arrays and NULLs keep their types.
    """

    MARK = "__dumpsafe_sql_status__"
    END = "__dumpsafe_sql_end__"

    def __init__(self, target: PgTarget, dbname: str):
        self.target, self.dbname = target, dbname
        psql = str(target.bin_dirs[0] / "psql") if target.bin_dirs else "psql"
        argv = target.command([psql, "-X", "-q", "-A", "-t", "--no-password", "-v", "VERBOSITY=terse",
                               *target.conn_args(), f"--dbname={dbname}"])
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=target.env(), text=True, encoding="utf-8", errors="replace", bufsize=1)
        except OSError as e:
            raise DatabaseUnavailable(f"tenant {target.tenant!r}: cannot start {argv[0]} ({e.strerror})") from None
        self.tail = _StderrTail(self.proc.stderr.buffer, target.password)  # type: ignore[union-attr]
        self.tail.start()
        self._send(target.password_line().decode())
        # connection errors surface here, as for psycopg.connect; names travel as UTF-8 whatever the database's encoding
        self._run("SET client_encoding TO 'UTF8'")

    def _send(self, text: str) -> None:
        try:
            self.proc.stdin.write(text)  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            pass

    def _run(self, text: str) -> list[str]:
        self._send(text.strip().rstrip(";") + ";\n"
                   + f"\\echo {self.MARK} :SQLSTATE\n\\echo :LAST_ERROR_MESSAGE\n\\echo {self.END}\n")
        out: list[str] = []
        status: str | None = None
        message: list[str] = []
        for line in self.proc.stdout:  # type: ignore[union-attr]
            line = line.rstrip("\n")
            if status is None and line.startswith(self.MARK + " "):
                status = line.split(" ", 1)[1].strip()
            elif status is None:
                out.append(line)
            elif line == self.END:
                if status == ":SQLSTATE":  # psql < 12 does not report it: errors would pass unseen
                    raise RestoreFailed(f"tenant {self.target.tenant!r}: psql in the exec target is older than 12 "
                                        "(install a newer PostgreSQL client there, or point pg_bin_dir at one)")
                if status != "00000":
                    raise SqlFailed(" ".join(message).strip().removeprefix("ERROR:  ") or f"SQLSTATE {status}", status)
                return out
            else:
                message.append(line)
        self.proc.wait()
        self.tail.join(timeout=5)
        raise DatabaseUnavailable(explain_connect_error(self.target, self.dbname, Exception(self.tail.text() or "psql exited")))

    def rows(self, query: Query) -> list[tuple[Any, ...]]:
        text = render(query).strip().rstrip(";")
        lines = self._run(f"SELECT row_to_json(dumpsafe_r)::text FROM ({text}) dumpsafe_r")
        return [tuple(json.loads(ln, object_pairs_hook=lambda pairs: [v for _k, v in pairs])) for ln in lines if ln]

    def execute(self, query: Query) -> None:
        self._run(render(query))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._run("BEGIN")
        try:
            yield
        except BaseException:
            self._run("ROLLBACK")
            raise
        self._run("COMMIT")  # a failed COMMIT raises SqlFailed (psql has rolled back)

    def close(self) -> None:
        try:
            self._send("\\q\n")
            self.proc.stdin.close()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.tail.join(timeout=5)


@contextmanager
def open_session(target: PgTarget, dbname: str) -> Iterator[Session]:
    """A session on ``dbname``: psql through the exec channel if the tenant has one, else psycopg."""
    s: Session = PsqlAdminSession(target, dbname) if target.exec_prefix else PsycopgSession(target, dbname)
    try:
        yield s
    finally:
        s.close()


def list_databases(target: PgTarget) -> list[str]:
    """Every database that can be backed up (not a template, connections allowed)."""
    q = "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname"
    try:
        with open_session(target, "postgres") as s:
            return [r[0] for r in s.rows(q)]
    except DatabaseUnavailable as e:  # listing is the first step of a backup: backup_failed, as it always said
        raise BackupFailed(e.message) from None
    except SqlFailed as e:
        raise BackupFailed(f"tenant {target.tenant!r}: cannot list databases at {target.where()}: {e.message}") from None
