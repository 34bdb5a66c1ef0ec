"""Roles from a backup's ``globals`` object (``pg_dumpall --globals-only --no-role-passwords``).

``restore --with-globals`` creates the roles the target server lacks, with their attributes,
settings, comments and the memberships between roles that then exist. Existing roles are
never altered, tablespaces are skipped (their directories belong to the server), and roles
come back without passwords because the dump holds none.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from psycopg import sql

from dumpsafe.engines.sqlsession import Session
from dumpsafe.engines.sqlsplit import split_statements
from dumpsafe.errors import RestoreFailed, SqlFailed

_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_CREATE_ROLE = re.compile(rf"^CREATE ROLE ({_IDENT})$")
_ALTER_WITH = re.compile(rf"^ALTER ROLE ({_IDENT}) WITH((?: (?:NO)?(?:SUPERUSER|INHERIT|CREATEROLE|CREATEDB|LOGIN|REPLICATION|BYPASSRLS)"
                         r"| CONNECTION LIMIT -?\d+| VALID UNTIL '[^']*')+)$")
_ALTER_SET = re.compile(rf"^ALTER ROLE ({_IDENT}) (?:SET|RESET) ")
_COMMENT = re.compile(rf"^COMMENT ON ROLE ({_IDENT}) IS ")
_GRANT = re.compile(rf"^GRANT ({_IDENT}) TO ({_IDENT})((?: WITH [A-Z ,]+?)?)(?: GRANTED BY {_IDENT})?$")
_PER_DATABASE = re.compile(rf"^ALTER ROLE {_IDENT} IN DATABASE ")
_TABLESPACE = re.compile(rf"^CREATE TABLESPACE ({_IDENT})")

PASSWORD_NOTE = ("roles were created without passwords (backups never hold them): "
                 "set one with ALTER ROLE name PASSWORD ... for each role that logs in")


@dataclass
class RoleDef:
    name: str
    attributes: str = ""  # " NOSUPERUSER INHERIT ... LOGIN" as dumped, checked against a fixed grammar
    extra: list[str] = field(default_factory=list)  # ALTER ROLE ... SET, COMMENT ON ROLE (verbatim)


@dataclass
class Globals:
    roles: dict[str, RoleDef] = field(default_factory=dict)
    memberships: list[tuple[str, str, str]] = field(default_factory=list)  # (group, member, " WITH ..." options)
    tablespaces: list[str] = field(default_factory=list)


@dataclass
class GlobalsResult:
    """What ``--with-globals`` did; reported with the restore."""

    roles_created: list[str]
    memberships_granted: list[str]
    tablespaces_skipped: list[str]
    passwords: str = PASSWORD_NOTE

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")


def _plain(stmt: str) -> bool:
    """Outside its quoted literals and identifiers a statement we replay verbatim holds only words,
    numbers and punctuation pg_dumpall writes: no backslash (a psql meta-command) or ``:`` variable."""
    return re.fullmatch(r"[A-Za-z0-9_$ \t\n,.=+-]*", _QUOTED.sub(" ", stmt)) is not None


def unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def parse_globals(text: str) -> Globals:
    g = Globals()
    for stmt in split_statements(text):
        if m := _CREATE_ROLE.match(stmt):
            name = unquote(m.group(1))
            g.roles.setdefault(name, RoleDef(name))
        elif m := _ALTER_WITH.match(stmt):
            g.roles.setdefault(unquote(m.group(1)), RoleDef(unquote(m.group(1)))).attributes = m.group(2)
        elif _PER_DATABASE.match(stmt):
            continue  # per-database role settings: the database may not exist yet
        elif ((m := _ALTER_SET.match(stmt)) or (m := _COMMENT.match(stmt))) and _plain(stmt):
            g.roles.setdefault(unquote(m.group(1)), RoleDef(unquote(m.group(1)))).extra.append(stmt)
        elif m := _GRANT.match(stmt):
            g.memberships.append((unquote(m.group(1)), unquote(m.group(2)), m.group(3)))
        elif m := _TABLESPACE.match(stmt):
            g.tablespaces.append(unquote(m.group(1)))
    return g


def missing_roles(g: Globals, existing: set[str]) -> list[str]:
    return sorted(set(g.roles) - existing)


def create_missing_roles(s: Session, g: Globals, existing: set[str], backup_id: str) -> GlobalsResult:
    """Create the roles the server lacks, in one transaction (a failure creates none)."""
    new = missing_roles(g, existing)
    granted: list[str] = []
    try:
        with s.transaction():
            for name in new:
                r = g.roles[name]
                s.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))
                if r.attributes:
                    s.execute(sql.SQL("ALTER ROLE {} WITH").format(sql.Identifier(name)) + sql.SQL(r.attributes))
                for stmt in r.extra:
                    s.execute(stmt)
            have = existing | set(new)
            for group, member, options in g.memberships:
                if group in have and member in have and (group in new or member in new):
                    s.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(member)) + sql.SQL(options))
                    granted.append(f"{group} -> {member}")
    except SqlFailed as e:
        raise RestoreFailed(f"cannot create the roles from the globals of backup {backup_id}: {e.message}; "
                            "no role was created and nothing was changed") from None
    return GlobalsResult(roles_created=new, memberships_granted=granted, tablespaces_skipped=sorted(g.tablespaces))


def drop_roles(s: Session, names: list[str]) -> None:
    """Undo create_missing_roles after a failed restore (the roles own nothing by then)."""
    with s.transaction():
        for name in reversed(names):
            s.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
