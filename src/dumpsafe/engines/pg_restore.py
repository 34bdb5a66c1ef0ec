"""PostgreSQL restore side: read an archive's TOC, run pg_restore, create/swap/drop databases.

pg_restore always gets its password through the environment (PgTarget.env()) and the
database as a quoted conninfo string, so odd names can never be read as options.
Database-level DDL (CREATE/ALTER/DROP DATABASE) runs from a maintenance session: psycopg,
or psql through the tenant's exec channel (engines/sqlsession.py), the same code either way.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator

from psycopg import sql

from dumpsafe.engines.postgres import PgTarget, _StderrTail
from dumpsafe.engines.sqlsession import Session, SqlError, open_session
from dumpsafe.errors import ConflictError, RestoreFailed, UsageError

IDENT_MAX = 63  # NAMEDATALEN - 1, in bytes

# Longest first: "TABLE DATA" must win over "TABLE".
_DESCS = sorted(
    [
        "TABLE DATA", "TABLE ATTACH", "TABLE", "SEQUENCE SET", "SEQUENCE OWNED BY", "SEQUENCE",
        "MATERIALIZED VIEW DATA", "MATERIALIZED VIEW", "VIEW", "FK CONSTRAINT", "CHECK CONSTRAINT",
        "CONSTRAINT", "INDEX ATTACH", "INDEX", "DEFAULT ACL", "DEFAULT", "SCHEMA", "EXTENSION", "COMMENT",
        "ACL", "FUNCTION", "PROCEDURE", "AGGREGATE", "TYPE", "SHELL TYPE", "DOMAIN", "TRIGGER",
        "EVENT TRIGGER", "RULE", "POLICY", "ROW SECURITY", "BLOB", "BLOBS", "BLOB METADATA",
        "LARGE OBJECT", "FOREIGN TABLE", "FOREIGN DATA WRAPPER", "SERVER", "USER MAPPING", "COLLATION",
        "CONVERSION", "OPERATOR", "OPERATOR CLASS", "OPERATOR FAMILY", "CAST", "PUBLICATION",
        "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "SUBSCRIPTION", "STATISTICS",
        "PROCEDURAL LANGUAGE", "ACCESS METHOD", "TRANSFORM", "DATABASE", "DATABASE PROPERTIES",
        "ENCODING", "STDSTRINGS", "SEARCHPATH", "SECURITY LABEL", "TEXT SEARCH CONFIGURATION",
        "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE",
    ],
    key=len,
    reverse=True,
)
_TOC_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_HEADER = re.compile(r"^;\s+([A-Za-z][A-Za-z ]*?):\s*(.*)$")
_RELATION_DESCS = {"TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE"}
_OWNER_TO = re.compile(r"\bOWNER TO (\"(?:[^\"]|\"\")+\"|[^\s;]+);")
_GRANT_TO = re.compile(r"^GRANT .+? TO (.+?)(?: WITH (?:GRANT|ADMIN) OPTION)?;$")
_ENCODING = re.compile(r"^SET client_encoding = '([^']+)';$", re.M)
_VERSION_NUM = re.compile(r"^(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class TocEntry:
    desc: str
    schema: str
    name: str
    owner: str


@dataclass
class Toc:
    """What ``pg_restore --list`` says an archive holds."""

    header: dict[str, str] = field(default_factory=dict)
    entries: list[TocEntry] = field(default_factory=list)
    encoding: str | None = None
    roles: set[str] = field(default_factory=set)  # owners and grantees the objects name

    def table_data(self) -> list[str]:
        """"schema.table" of every TABLE DATA entry (one per table whose rows the archive holds)."""
        return [f"{e.schema}.{e.name}" for e in self.entries if e.desc == "TABLE DATA"]

    def objects(self) -> set[tuple[str, str]]:
        """(kind, name) of relations, schemas and extensions: what a target gains or loses."""
        out: set[tuple[str, str]] = set()
        for e in self.entries:
            if e.desc in _RELATION_DESCS:
                out.add((e.desc, f"{e.schema}.{e.name}"))
            elif e.desc in ("SCHEMA", "EXTENSION") and e.name != "public":
                out.add((e.desc, e.name))
        return out

    def extensions(self) -> list[str]:
        return sorted(e.name for e in self.entries if e.desc == "EXTENSION")

    @property
    def dumped_by(self) -> str | None:
        return _short_version(self.header.get("Dumped by pg_dump version"))

    @property
    def dumped_from(self) -> str | None:
        return _short_version(self.header.get("Dumped from database version"))


def _short_version(v: str | None) -> str | None:
    return v.split()[0] if v else None


def major_of(version: str | None) -> int | None:
    m = _VERSION_NUM.match(version or "")
    return int(m.group(1)) if m else None


def parse_toc(listing: str, known_tables: set[str] = frozenset()) -> Toc:
    """Parse ``pg_restore --list`` output.

    Names are printed unquoted and space-separated, so "odd schema" / "t 1" are ambiguous by
    themselves; they are resolved against the tables the record knows and the schemas the
    archive created (SCHEMA entries come first), longest first, before falling back to tokens.
    """
    toc = Toc()
    tables = sorted(((k.partition(".")[0], k.partition(".")[2]) for k in known_tables), key=lambda st: -len(st[0]) - len(st[1]))
    schemas = {s for s, _ in tables}
    for line in listing.splitlines():
        if line.startswith(";"):
            m = _HEADER.match(line)
            if m:
                toc.header.setdefault(m.group(1).strip(), m.group(2).strip())
            continue
        m = _TOC_LINE.match(line)
        if not m:
            continue
        rest = m.group(4)
        desc = next((d for d in _DESCS if rest.startswith(d + " ")), rest.split(" ", 1)[0])
        schema, name, owner = _split_entry(rest[len(desc) + 1 :], tables if desc in ("TABLE", "TABLE DATA") else [], schemas)
        if desc == "SCHEMA":
            schemas.add(name)
        toc.entries.append(TocEntry(desc, schema, name, owner))
        if owner:
            toc.roles.add(owner)
    return toc


def _split_entry(rest: str, tables: list[tuple[str, str]], schemas: set[str]) -> tuple[str, str, str]:
    """"schema name owner" -> its parts (owner may be empty, e.g. for extensions). ``tables`` is
    only given for entries whose name is a table's (TABLE, TABLE DATA); a constraint's tag is
    "table constraint" and falls through to the schema split."""
    for s, t in tables:
        head = f"{s} {t}"
        if rest == head or rest.startswith(head + " "):
            return s, t, rest[len(head) + 1 :]
    schema = max((s for s in schemas if rest.startswith(s + " ")), key=len, default=None) or rest.partition(" ")[0]
    tail = rest[len(schema) + 1 :]
    if tail.endswith(" ") or " " not in tail:  # empty owner, or no owner at all
        return schema, tail.rstrip(" "), ""
    name, _, owner = tail.rpartition(" ")
    return schema, name, owner


def roles_in_sql(schema_sql: str) -> set[str]:
    """Roles an archive's schema script names in OWNER TO and GRANT ... TO."""
    roles: set[str] = set()
    for m in _OWNER_TO.finditer(schema_sql):
        roles.add(_unquote(m.group(1)))
    for line in schema_sql.splitlines():
        m = _GRANT_TO.match(line)
        if m:
            for r in m.group(1).split(","):
                r = r.strip()
                if r and r.upper() != "PUBLIC":
                    roles.add(_unquote(r))
    return roles


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') and ident.endswith('"') else ident


# ---- running pg_restore ---------------------------------------------------------------------
def conninfo_dbname(name: str) -> str:
    """A libpq conninfo naming only the database (host/port/user come from the environment)."""
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def read_toc(tool: str, source: IO[bytes] | Callable[[int], bytes], *, with_sql: bool = False,
             known_tables: set[str] = frozenset()) -> Toc:
    """Feed an archive stream to a local ``pg_restore --list`` (and ``--schema-only`` for roles).

    No server is involved, so this always runs here, never through an exec channel.
    pg_restore stops reading once it has the TOC; we stop feeding when every reader is done,
    so the caller may go on reading (and hashing) the rest of the stream.
    """
    read = source if callable(source) else source.read
    jobs = [("list", [tool, "--list"])]
    if with_sql:
        jobs.append(("sql", [tool, "--schema-only", "--file=-"]))
    procs: dict[str, tuple[subprocess.Popen, _StderrTail, list[bytes], threading.Thread]] = {}
    for name, argv in jobs:
        try:
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            raise RestoreFailed(f"cannot start {tool} ({e.strerror})") from None
        tail = _StderrTail(p.stderr, None)
        tail.start()
        out: list[bytes] = []
        reader = threading.Thread(target=lambda s=p.stdout, o=out: o.extend(iter(lambda: s.read(1 << 16), b"")), daemon=True)
        reader.start()
        procs[name] = (p, tail, out, reader)
    live = [p for p, *_ in procs.values()]
    try:
        while live:
            chunk = read(1 << 16)
            if not chunk:
                break
            for p in list(live):
                try:
                    p.stdin.write(chunk)
                except (BrokenPipeError, OSError):
                    live.remove(p)
    finally:
        for p, tail, _out, reader in procs.values():
            try:
                p.stdin.close()
            except OSError:
                pass
    results: dict[str, str] = {}
    for name, (p, tail, out, reader) in procs.items():
        rc = p.wait()
        reader.join(timeout=10)
        p.stdout.close()
        tail.join(timeout=5)
        if rc != 0:
            raise RestoreFailed(f"the archive's table of contents is not readable by {tool}: {tail.text() or f'exit status {rc}'}")
        results[name] = b"".join(out).decode("utf-8", "replace")
    toc = parse_toc(results["list"], known_tables)
    if "sql" in results:
        toc.roles |= roles_in_sql(results["sql"])
        m = _ENCODING.search(results["sql"])
        toc.encoding = m.group(1) if m else None
    toc.roles.discard("")
    return toc


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


# ---- databases --------------------------------------------------------------------------------
def check_db_name(name: str) -> str:
    if not name or "\x00" in name or len(name.encode()) > IDENT_MAX:
        raise UsageError(f"{name!r} is not a valid database name (1-{IDENT_MAX} bytes)")
    return name


def side_name(target: str, tag: str) -> str:
    """A fresh name for a staging/old/scratch database: <target prefix>_<tag>_<random>, <= 63 bytes."""
    suffix = f"_{tag}_{secrets.token_hex(4)}"
    prefix = target.encode()[: IDENT_MAX - len(suffix)].decode("utf-8", "ignore")
    return prefix + suffix


def maintenance_db(*avoid: str) -> str:
    return "template1" if "postgres" in avoid else "postgres"


def admin(target: PgTarget, *avoid: str):
    """A session on the maintenance database (psycopg, or psql through the exec channel)."""
    return open_session(target, maintenance_db(*avoid))


def database_exists(s: Session, name: str) -> bool:
    return bool(s.rows(sql.SQL("SELECT 1 FROM pg_database WHERE datname = {}").format(sql.Literal(name))))


def server_version(s: Session) -> tuple[str, int]:
    """("16.4", 16): the server's version text and major."""
    text, num = s.rows("SELECT current_setting('server_version') AS v, current_setting('server_version_num')::int AS n")[0]
    return text.split()[0], int(num) // 10000


@dataclass
class DbProps:
    """Database-level properties pg_dump (without --create) does not carry; copied on a swap."""

    owner: str
    encoding: str
    collate: str
    ctype: str
    locale_provider: str
    icu_locale: str | None
    connlimit: int
    allow_conn: bool
    acl: list[tuple[str | None, str, bool]]  # (grantee or None for PUBLIC, privilege, grantable)
    acl_is_default: bool
    settings: list[tuple[str | None, str]]  # (role or None, "name=value")
    comment: str | None


def database_props(s: Session, name: str) -> DbProps:
    rows = s.rows(sql.SQL(
        """SELECT pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS enc, d.datcollate::text AS collate,
                  d.datctype::text AS ctype, d.datlocprovider::text AS provider, d.daticulocale AS icu, d.datconnlimit AS connlimit,
                  d.datallowconn AS allowconn, d.datacl IS NULL AS acl_default,
                  shobj_description(d.oid, 'pg_database') AS comment, d.oid::int8 AS oid
           FROM pg_database d WHERE d.datname = {}""").format(sql.Literal(name)))
    if not rows:
        raise ConflictError(f"database {name!r} does not exist")
    row = rows[0]
    acl = [
        (g, p, bool(gr))
        for g, p, gr in s.rows(sql.SQL(
            """SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS grantee,
                      a.privilege_type AS priv, a.is_grantable AS grantable
               FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = {}""").format(sql.Literal(name)))
    ]
    settings = [
        (role, cfg)
        for role, cfgs in s.rows(sql.SQL(
            """SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END AS role, s.setconfig AS cfg
               FROM pg_db_role_setting s WHERE s.setdatabase = {}""").format(sql.Literal(row[10])))
        for cfg in cfgs or []
    ]
    return DbProps(row[0], row[1], row[2], row[3], row[4], row[5], int(row[6]), bool(row[7]), acl, bool(row[8]),
                   settings, row[9])


def create_database(s: Session, name: str, props: DbProps | None = None, encoding: str | None = None) -> None:
    q = [sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))]
    if props is not None:
        q.append(sql.SQL("OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Identifier(props.owner), sql.Literal(props.encoding), sql.Literal(props.collate), sql.Literal(props.ctype)))
        if props.locale_provider == "i" and props.icu_locale:
            q.append(sql.SQL("LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(props.icu_locale)))
    elif encoding:
        q.append(sql.SQL("ENCODING {}").format(sql.Literal(encoding)))
    try:
        s.execute(sql.SQL(" ").join(q))
    except SqlError as e:
        raise RestoreFailed(f"cannot create database {name!r}: {e.message}") from None


def apply_props(s: Session, name: str, props: DbProps) -> None:
    """Give the database ``name`` the connection limit, grants, settings and comment of ``props``."""
    db = sql.Identifier(name)
    stmts = []
    if props.connlimit != -1:
        stmts.append(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(db, sql.Literal(props.connlimit)))
    if not props.acl_is_default:
        stmts.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        stmts.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, sql.Identifier(props.owner)))
        for grantee, priv, grantable in props.acl:
            who = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
            stmts.append(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(priv), db, who, sql.SQL(" WITH GRANT OPTION" if grantable else "")))
    for role, cfg in props.settings:
        key, _, value = cfg.partition("=")
        if role is None:
            stmts.append(sql.SQL("ALTER DATABASE {} SET {} = {}").format(db, sql.Identifier(key), sql.Literal(value)))
        else:
            stmts.append(sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                sql.Identifier(role), db, sql.Identifier(key), sql.Literal(value)))
    if props.comment is not None:
        stmts.append(sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(props.comment)))
    try:
        for st in stmts:
            s.execute(st)
    except SqlError as e:
        raise RestoreFailed(f"cannot copy the settings of the target onto database {name!r}: {e.message}") from None


# Staging and scratch databases are claimed with a session advisory lock BEFORE they are
# created and for as long as we work on them; one nobody holds is an orphan of a dumpsafe
# that died (killed, host rebooted) and is dropped by the next restore or drill on the server.
LOCK_SPACE = 0x64756D70  # "dump"
ORPHAN_RE = r"(_dsstage_[0-9a-f]{8}|^dumpsafe_drill_[0-9a-f]{12})$"


def _lock_key(name: str) -> sql.Composable:
    return sql.SQL("{}, hashtext({})").format(sql.Literal(LOCK_SPACE), sql.Literal(name))


@contextmanager
def claimed(target: PgTarget, name: str) -> Iterator[None]:
    with admin(target, name) as s:  # closing the session releases the lock
        s.rows(sql.SQL("SELECT pg_advisory_lock({}) AS locked").format(_lock_key(name)))
        yield


def sweep_orphans(target: PgTarget) -> list[str]:
    """Drop staging/scratch databases no live dumpsafe holds; return their names."""
    dropped: list[str] = []
    try:
        with admin(target) as s:
            names = [r[0] for r in s.rows(sql.SQL("SELECT datname::text FROM pg_database WHERE datname ~ {}").format(
                sql.Literal(ORPHAN_RE)))]
            for name in names:
                if not s.rows(sql.SQL("SELECT pg_try_advisory_lock({}) AS got").format(_lock_key(name)))[0][0]:
                    continue  # a restore or drill is working on it right now
                try:
                    s.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                    dropped.append(name)
                except SqlError:
                    pass
                finally:
                    s.rows(sql.SQL("SELECT pg_advisory_unlock({}) AS unlocked").format(_lock_key(name)))
    except Exception:  # housekeeping never fails the work it precedes
        return dropped
    return dropped


def drop_database(target: PgTarget, name: str) -> str | None:
    """Drop a database we created, ending its sessions. Returns an error text instead of raising."""
    try:
        with admin(target, name) as s:
            s.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        return None
    except Exception as e:  # cleanup must not mask the real failure
        return _first_line(e)


def swap_databases(s: Session, target: str, staging: str, old: str, *, keep_old: bool,
                   timeout_s: float = 30.0) -> str | None:
    """Put ``staging`` in place of ``target`` in one transaction; returns the old database's name if kept.

    New sessions to the target are refused (ALLOW_CONNECTIONS false) and existing ones ended,
    then both renames commit together: every client sees the old database or the new one.
    """
    t, st, o = sql.Identifier(target), sql.Identifier(staging), sql.Identifier(old)
    allow_before = s.rows(sql.SQL("SELECT datallowconn FROM pg_database WHERE datname = {}").format(sql.Literal(target)))
    if not allow_before:
        raise ConflictError(f"database {target!r} disappeared during the restore; nothing was swapped")
    s.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(t))
    swapped = False
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            s.rows(sql.SQL(
                "SELECT pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity "
                "WHERE datname = {} AND pid <> pg_backend_pid()").format(sql.Literal(target)))
            try:
                with s.transaction():
                    s.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(t, o))
                    s.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(st, t))
                swapped = True
                break
            except SqlError as e:
                if e.sqlstate != OBJECT_IN_USE:
                    raise RestoreFailed(f"swapping the restored database into {target!r} failed: {e.message}") from None
                if time.monotonic() > deadline:
                    raise RestoreFailed(
                        f"sessions on database {target!r} could not be ended within {timeout_s:.0f}s; nothing was swapped"
                    ) from None
                time.sleep(0.1)
    finally:
        if not swapped:
            s.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(t))
    if not allow_before[0][0]:
        s.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(t))
    if keep_old:
        s.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(o))
        return old
    s.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(o))
    return None


OBJECT_IN_USE = "55006"
DUPLICATE_DATABASE = "42P04"


def rename_into_place(s: Session, staging: str, target: str) -> None:
    try:
        s.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(staging), sql.Identifier(target)))
    except SqlError as e:
        if e.sqlstate == DUPLICATE_DATABASE:
            raise ConflictError(f"database {target!r} was created by someone else during the restore; nothing was replaced") from None
        raise


# ---- what a target has ------------------------------------------------------------------------
def target_objects(s: Session) -> set[tuple[str, str]]:
    kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE", "f": "FOREIGN TABLE"}
    out: set[tuple[str, str]] = set()
    rows = s.rows(
        """SELECT c.relkind::text AS kind, n.nspname::text AS nsp, c.relname::text AS rel
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r','p','v','m','S','f') AND n.nspname NOT IN ('pg_catalog','information_schema')
             AND n.nspname NOT LIKE 'pg\\_%'
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')"""
    )
    for kind, schema, name in rows:
        out.add((kinds[kind], f"{schema}.{name}"))
    for (name,) in s.rows(
        "SELECT nspname::text AS nsp FROM pg_namespace WHERE nspname NOT IN ('pg_catalog','information_schema','public') "
        "AND nspname NOT LIKE 'pg\\_%'"
    ):
        out.add(("SCHEMA", name))
    for (name,) in s.rows("SELECT extname::text AS ext FROM pg_extension WHERE extname <> 'plpgsql'"):
        out.add(("EXTENSION", name))
    return out


def existing_roles(s: Session) -> set[str]:
    return {r[0] for r in s.rows("SELECT rolname::text AS rolname FROM pg_roles")}


def available_extensions(s: Session) -> set[str]:
    return {r[0] for r in s.rows("SELECT name::text AS name FROM pg_available_extensions")}


def data_directory(s: Session) -> str | None:
    try:
        return s.rows("SELECT current_setting('data_directory') AS d")[0][0]
    except SqlError:
        return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
