"""Database lifecycle for restores and drills: create (with the archive's properties), claim,
swap, drop, sweep orphans, and read what a server or target has.

Database-level DDL runs from a maintenance session: psycopg, or psql through the tenant's
exec channel (engines/sqlsession.py), the same code either way.
"""

from __future__ import annotations

import secrets
import time
from contextlib import contextmanager
from typing import Iterator

from psycopg import sql

from dumpsafe.engines.dbspec import DbSpec
from dumpsafe.engines.postgres import PgTarget
from dumpsafe.engines.sqlsession import Session, open_session
from dumpsafe.errors import ConflictError, RestoreFailed, SqlFailed, UsageError, first_line

IDENT_MAX = 63  # NAMEDATALEN - 1, in bytes
OBJECT_IN_USE = "55006"
DUPLICATE_DATABASE = "42P04"


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


# ---- creating a database as the archive describes it -------------------------------------------
def create_database(s: Session, name: str, spec: DbSpec | None, *, owner: str | None = None, no_owner: bool = False,
                    tablespaces: bool = True, encoding: str | None = None) -> None:
    """CREATE DATABASE ``name`` with the archive's encoding, locale, tablespace and owner
    (``owner`` overrides it, ``no_owner`` leaves the connecting user). Without a spec (an
    archive without database entries): template0 and the archive's encoding."""
    if spec is None:
        q = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
        if encoding:
            q += sql.SQL(" ENCODING {}").format(sql.Literal(encoding))
        stmts = [q]
    else:
        stmts = spec.create_sql(name, owner=None if no_owner else (owner or spec.owner), tablespaces=tablespaces)
    for i, st in enumerate(stmts):
        try:
            s.execute(st)
        except SqlFailed as e:
            if i:  # the database exists but its owner could not be set: do not leave it behind
                _drop(s, name)
            raise RestoreFailed(f"cannot create database {name!r} as the backup describes it: {e.message}") from None


def apply_properties(s: Session, name: str, spec: DbSpec | None) -> None:
    """The archive's connection limit, settings, per-role settings, comment and grants on ``name``."""
    if spec is None:
        return
    for st in spec.property_sql(name):
        try:
            s.execute(st)
        except SqlFailed as e:
            raise RestoreFailed(f"cannot give database {name!r} the backup's properties ({e.message}); "
                                "the target was not touched") from None


def reset_properties_sql(s: Session, name: str, owner: str | None) -> list[sql.Composable]:
    """Statements that bring an existing database's own properties back to a fresh database's
    (owner ``owner`` if given, no settings, comment, connection limit or template flag, default
    grants), so the archive's statements then give it exactly the backup's (clean mode)."""
    db, lit = sql.Identifier(name), sql.Literal(name)
    current = s.rows(sql.SQL("SELECT pg_get_userbyid(datdba)::text AS o, datacl IS NOT NULL AS explicit "
                             "FROM pg_database WHERE datname = {}").format(lit))[0]
    out: list[sql.Composable] = [sql.SQL("ALTER DATABASE {} RESET ALL").format(db),
                                 sql.SQL("ALTER DATABASE {} CONNECTION LIMIT = -1").format(db),
                                 sql.SQL("ALTER DATABASE {} IS_TEMPLATE = false").format(db),
                                 sql.SQL("COMMENT ON DATABASE {} IS NULL").format(db)]
    for (role,) in s.rows(sql.SQL(
            "SELECT pg_get_userbyid(r.setrole)::text AS role FROM pg_db_role_setting r JOIN pg_database d "
            "ON d.oid = r.setdatabase WHERE d.datname = {} AND r.setrole <> 0").format(lit)):
        out.append(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(sql.Identifier(role), db))
    if current[1]:  # every grant derives from the owner's: revoking those (CASCADE) removes all
        for (grantee,) in s.rows(sql.SQL(
                """SELECT DISTINCT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END AS grantee
                   FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = {}""").format(lit)):
            who = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
            out.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM {} CASCADE").format(db, who))
    new_owner = owner or current[0]
    if owner is not None and owner != current[0]:
        out.append(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(owner)))
    if current[1]:  # what a fresh database has: the owner's privileges and CONNECT, TEMPORARY for PUBLIC
        out += [sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(db, sql.Identifier(new_owner)),
                sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO PUBLIC").format(db)]
    return out


class _Probe(Exception):
    pass


def replace_properties(s: Session, name: str, spec: DbSpec | None, *, owner: str | None, probe: bool = False) -> None:
    """In one transaction: reset ``name``'s own properties, then the archive's (clean mode).
    ``probe``: roll back at the end, to learn before touching anything that it will work."""
    if spec is None:
        return
    try:
        with s.transaction():
            for st in reset_properties_sql(s, name, owner) + spec.property_sql(name) + spec.final_sql(name):
                s.execute(st)
            if probe:
                raise _Probe
    except _Probe:
        return
    except SqlFailed as e:
        raise RestoreFailed(f"cannot give database {name!r} the backup's properties ({e.message})") from None


def finish(s: Session, name: str, spec: DbSpec | None) -> None:
    """Last step, once ``name`` is in place: the template flag."""
    for st in spec.final_sql(name) if spec else []:
        s.execute(st)


# Staging, replaced and scratch databases are claimed with a session advisory lock BEFORE they
# are created or renamed and for as long as we work on them; one nobody holds is an orphan of
# a dumpsafe that died (killed, host rebooted) and is dropped by the next restore or drill.
LOCK_SPACE = 0x64756D70  # "dump"
ORPHAN_RE = r"(_dsstage_[0-9a-f]{8}|_dsold_[0-9a-f]{8}|^dumpsafe_drill_[0-9a-f]{12})$"


def _lock_key(name: str) -> sql.Composable:
    return sql.SQL("{}, hashtext({})").format(sql.Literal(LOCK_SPACE), sql.Literal(name))


@contextmanager
def claimed(target: PgTarget, name: str) -> Iterator[None]:
    with admin(target, name) as s:  # closing the session releases the lock
        s.rows(sql.SQL("SELECT pg_advisory_lock({}) AS locked").format(_lock_key(name)))
        yield


def drop_now(s: Session, name: str) -> None:
    """DROP DATABASE ``name`` if it exists (ending its sessions), from an open maintenance session."""
    _drop(s, name)


def _drop(s: Session, name: str) -> None:
    """DROP DATABASE, clearing the template flag first (a template cannot be dropped)."""
    ident = sql.Identifier(name)
    if s.rows(sql.SQL("SELECT 1 FROM pg_database WHERE datname = {} AND datistemplate").format(sql.Literal(name))):
        s.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE = false").format(ident))
    s.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def sweep_orphans(target: PgTarget) -> list[str]:
    """Drop staging/replaced/scratch databases no live dumpsafe holds; return their names."""
    dropped: list[str] = []
    try:
        with admin(target) as s:
            names = [r[0] for r in s.rows(sql.SQL("SELECT datname::text FROM pg_database WHERE datname ~ {}").format(
                sql.Literal(ORPHAN_RE)))]
            for name in names:
                if not s.rows(sql.SQL("SELECT pg_try_advisory_lock({}) AS got").format(_lock_key(name)))[0][0]:
                    continue  # a restore or drill is working on it right now
                try:
                    _drop(s, name)
                    dropped.append(name)
                except SqlFailed:
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
            _drop(s, name)
        return None
    except Exception as e:  # cleanup must not mask the real failure
        return first_line(e)


def refuse_connections(s: Session, name: str) -> None:
    s.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))


def allow_connections(s: Session, name: str) -> None:
    s.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name)))


def rename_pair(s: Session, target: str, staging: str, old: str, *, timeout_s: float = 30.0) -> int:
    """End the sessions on ``target``, then rename ``target`` to ``old`` and ``staging`` to
    ``target`` in one transaction: every client sees the old database or the new one.
    The caller has refused new connections to ``target`` (``refuse_connections``).
    Returns how many sessions were ended (the restore reports and audits it)."""
    t, st, o = sql.Identifier(target), sql.Identifier(staging), sql.Identifier(old)
    deadline = time.monotonic() + timeout_s
    ended = 0
    while True:
        ended += sum(1 for row in s.rows(sql.SQL(
            "SELECT pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity "
            "WHERE datname = {} AND pid <> pg_backend_pid()").format(sql.Literal(target))) if row[0])
        try:
            with s.transaction():
                s.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(t, o))
                s.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(st, t))
            return ended
        except SqlFailed as e:
            if e.sqlstate != OBJECT_IN_USE:
                raise RestoreFailed(f"swapping the restored database into {target!r} failed: {e.message}") from None
            if time.monotonic() > deadline:
                raise RestoreFailed(
                    f"sessions on database {target!r} could not be ended within {timeout_s:.0f}s; nothing was swapped"
                ) from None
            time.sleep(0.1)


def swap_databases(target_: PgTarget, s: Session, target: str, staging: str, *, keep_old: bool,
                   spec: DbSpec | None = None, timeout_s: float = 30.0, old: str | None = None) -> str | None:
    """Put ``staging`` in place of ``target``; returns the old database's name if kept (one call,
    no journal: restore.py runs the same steps one by one with its journal between them).

    New sessions to the target are refused (ALLOW_CONNECTIONS false) and existing ones ended,
    then both renames commit together. The replaced database is claimed under its ``_dsold_``
    name until it is dropped, so a crash in between leaves an orphan the next sweep removes;
    a kept one is named ``_dskept_``.
    """
    old = old or side_name(target, "dskept" if keep_old else "dsold")
    if not database_exists(s, target):
        raise ConflictError(f"database {target!r} disappeared during the restore; nothing was swapped")
    with claimed(target_, old):
        refuse_connections(s, target)
        swapped = False
        try:
            rename_pair(s, target, staging, old, timeout_s=timeout_s)
            swapped = True
        finally:
            if not swapped:
                allow_connections(s, target)
        finish(s, target, spec)  # the new database: template flag from the archive, connections allowed
        if keep_old:
            allow_connections(s, old)
            return old
        _drop(s, old)
    return None


def rename_into_place(s: Session, staging: str, target: str, spec: DbSpec | None = None) -> None:
    try:
        s.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(staging), sql.Identifier(target)))
    except SqlFailed as e:
        if e.sqlstate == DUPLICATE_DATABASE:
            raise ConflictError(f"database {target!r} was created by someone else during the restore; nothing was replaced") from None
        raise
    finish(s, target, spec)


# ---- what a server or target has ---------------------------------------------------------------
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
    except SqlFailed:
        return None


def partitioned_with_keys(s: Session) -> list[str]:
    """Partitioned tables with a primary key or unique constraint: pg_restore --clean cannot drop
    the partitions' inherited constraints ("cannot drop inherited constraint")."""
    return [r[0] for r in s.rows(
        """SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind = 'p' AND EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype IN ('p', 'u', 'x'))
           ORDER BY 1""")]


def clean_blockers(s: Session) -> list[str]:
    names = partitioned_with_keys(s)
    if not names:
        return []
    return [f"clean mode cannot replace partitioned table{'s' if len(names) > 1 else ''} with keys "
            f"({', '.join(names)}): pg_restore --clean cannot drop their partitions' inherited constraints "
            "through an exec channel (restore with --mode atomic)"]


def unsupported_properties(s: Session, spec: DbSpec | None, *, owner: str | None, no_owner: bool,
                           tablespaces: bool, will_exist: set[str] = frozenset()) -> list[str]:
    """What this server cannot give a database the archive describes, each with the way out."""
    if spec is None:
        return []
    out: list[str] = []
    ts = spec.tablespace
    if tablespaces and ts and not s.rows(sql.SQL("SELECT 1 FROM pg_tablespace WHERE spcname = {}").format(sql.Literal(ts))):
        out.append(f"tablespace {ts!r} does not exist on the server (create it, or restore with --no-tablespaces)")
    who = owner or (None if no_owner else spec.owner)
    if who and who not in will_exist and not s.rows(sql.SQL("SELECT 1 FROM pg_roles WHERE rolname = {}").format(sql.Literal(who))):
        how = "create it or pick another with --owner ROLE" if owner else \
            "create it (--with-globals does, from the backup's globals), or restore with --no-owner or --owner ROLE"
        out.append(f"owner role {who!r} does not exist on the server ({how})")
    if spec.locale_provider == "icu" and not s.rows("SELECT 1 FROM pg_collation WHERE collprovider = 'i' LIMIT 1"):
        out.append(f"ICU locale {spec.icu_locale!r} needs a server built with ICU, which this one is not "
                   "(restore onto a server with ICU support)")
    for what, loc in (("collation", spec.collate), ("ctype", spec.ctype)):
        if loc and not _libc_locale_known(s, loc):
            out.append(f"libc locale {loc!r} ({what}) is not installed on the server (install it there, e.g. locale-gen, "
                       "then restart PostgreSQL)")
    return out


class _Probed(Exception):
    pass


def _libc_locale_known(s: Session, loc: str) -> bool:
    """Whether the server's C library has ``loc``: a temporary collation created and rolled back
    (exact, and nothing stays). Without the right to create it, assume yes: CREATE DATABASE of
    the staging database, before the target is touched, will say."""
    if loc in ("C", "POSIX"):
        return True
    try:
        with s.transaction():
            s.execute(sql.SQL("CREATE COLLATION pg_temp.dumpsafe_probe (provider = libc, locale = {})").format(sql.Literal(loc)))
            raise _Probed
    except _Probed:
        return True
    except SqlFailed as e:
        return e.sqlstate == "42501"
