"""The backed-up database's own properties, as pg_dump wrote them into the archive.

``pg_restore --create`` would run these statements with the original name; we run the
same statements with the target's name substituted at the one place each names the
database, and keep the rest verbatim (so list-valued settings such as
``SET search_path TO 'app', 'public'`` are applied exactly as pg_dump wrote them):

- create: ``CREATE DATABASE <name> WITH TEMPLATE = template0 ENCODING ... LOCALE_PROVIDER ...
  LOCALE/LC_COLLATE/LC_CTYPE ... ICU_LOCALE ... TABLESPACE ...`` and ``ALTER DATABASE OWNER TO``
- properties (after the data is in): connection limit, settings, per-role settings, comment,
  grants (with ``SET SESSION AUTHORIZATION`` for grantors other than the owner)
- final (after the swap): ``IS_TEMPLATE = true``
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from psycopg import sql

from dumpsafe.engines.toc import unquote
from dumpsafe.errors import RestoreFailed

_ID = r'"(?:[^"]|"")+"|[^\s;"]+'
_CREATE = re.compile(r"^CREATE DATABASE (" + _ID + r") WITH (.*)$", re.S)
_OPTION = re.compile(r"([A-Z_]+) = ('(?:[^']|'')*'|" + _ID + r")")
_ALTER_DB = re.compile(r"^ALTER DATABASE (" + _ID + r") (OWNER TO|CONNECTION LIMIT =|IS_TEMPLATE =|SET|RESET) (.*)$", re.S)
_ROLE_SET = re.compile(r"^ALTER ROLE (" + _ID + r") IN DATABASE (" + _ID + r") (SET|RESET) (.*)$", re.S)
_COMMENT = re.compile(r"^COMMENT ON DATABASE (" + _ID + r") IS (.*)$", re.S)
_ACL = re.compile(r"^(GRANT|REVOKE) (.+?) ON DATABASE (" + _ID + r") (TO|FROM) (.*)$", re.S)
_SESSION = re.compile(r"^(SET|RESET) SESSION AUTHORIZATION(?: (" + _ID + r"))?$")


def _lit(raw: str) -> str:
    return raw[1:-1].replace("''", "'") if raw.startswith("'") else unquote(raw)


@dataclass
class DbSpec:
    """pg_dump's database-level statements, parsed; ``render`` gives them for a target name."""

    options: list[tuple[str, str]]  # CREATE DATABASE ... WITH options, raw SQL values
    owner: str | None = None
    connlimit: str | None = None
    is_template: bool = False
    settings: list[tuple[str | None, str]] = field(default_factory=list)  # (role or None, "SET ..." tail verbatim)
    comment: str | None = None  # the literal, verbatim
    acl: list[tuple[str, str | None]] = field(default_factory=list)  # ("GRANT"/"REVOKE"/"SESSION", verbatim parts)

    def option(self, key: str) -> str | None:
        return next((_lit(v) for k, v in self.options if k == key), None)

    @property
    def encoding(self) -> str | None:
        return self.option("ENCODING")

    @property
    def tablespace(self) -> str | None:
        return self.option("TABLESPACE")

    @property
    def locale_provider(self) -> str:
        return self.option("LOCALE_PROVIDER") or "libc"

    @property
    def collate(self) -> str | None:
        return self.option("LOCALE") or self.option("LC_COLLATE")

    @property
    def ctype(self) -> str | None:
        return self.option("LOCALE") or self.option("LC_CTYPE")

    @property
    def icu_locale(self) -> str | None:
        return self.option("ICU_LOCALE")

    def roles(self) -> set[str]:
        """Roles the statements name besides the owner (grantees, grantors, per-role settings)."""
        out = {unquote(r) for r, _ in self.settings if r}
        for kind, rest in self.acl:
            if kind == "SESSION" and rest:
                out.add(unquote(rest))
            elif kind in ("GRANT", "REVOKE") and rest:
                who = _ACL.match(rest)
                if who:
                    for r in re.findall(r'"(?:[^"]|"")*"|[^,\s]+', who.group(5).removesuffix(" WITH GRANT OPTION")):
                        if r.upper() != "PUBLIC":
                            out.add(unquote(r))
        return out

    def create_sql(self, name: str, *, owner: str | None, tablespaces: bool = True) -> list[sql.Composable]:
        """CREATE DATABASE with the archive's encoding/locale/tablespace, then its owner (None: the connecting user)."""
        opts = [f"{k} = {v}" for k, v in self.options if tablespaces or k != "TABLESPACE"]
        out: list[sql.Composable] = [sql.SQL("CREATE DATABASE {} WITH ").format(sql.Identifier(name)) + sql.SQL(" ".join(opts))]
        if owner is not None:
            out.append(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner)))
        return out

    def property_sql(self, name: str) -> list[sql.Composable]:
        """Connection limit, settings, per-role settings, comment and grants, for database ``name``."""
        db = sql.Identifier(name)
        out: list[sql.Composable] = []
        if self.connlimit is not None:
            out.append(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT = ").format(db) + sql.SQL(self.connlimit))
        for role, tail in self.settings:
            if role is None:
                out.append(sql.SQL("ALTER DATABASE {} ").format(db) + sql.SQL(tail))
            else:
                out.append(sql.SQL("ALTER ROLE ") + sql.SQL(role) + sql.SQL(" IN DATABASE {} ").format(db) + sql.SQL(tail))
        if self.comment is not None:
            out.append(sql.SQL("COMMENT ON DATABASE {} IS ").format(db) + sql.SQL(self.comment))
        for kind, rest in self.acl:
            if kind == "SESSION":
                out.append(sql.SQL("SET SESSION AUTHORIZATION " + rest) if rest else sql.SQL("RESET SESSION AUTHORIZATION"))
            else:
                m = _ACL.match(rest or "")
                assert m is not None
                out.append(sql.SQL(f"{m.group(1)} {m.group(2)} ON DATABASE ") + db + sql.SQL(f" {m.group(4)} {m.group(5)}"))
        return out

    def final_sql(self, name: str) -> list[sql.Composable]:
        if self.is_template:
            return [sql.SQL("ALTER DATABASE {} IS_TEMPLATE = true").format(sql.Identifier(name))]
        return []

    def describe(self) -> dict[str, object]:
        """The properties in plain words (dry run, errors)."""
        return {"encoding": self.encoding, "locale_provider": self.locale_provider, "collate": self.collate,
                "ctype": self.ctype, "icu_locale": self.icu_locale, "tablespace": self.tablespace or "pg_default",
                "owner": self.owner, "connection_limit": int(self.connlimit) if self.connlimit else -1,
                "is_template": self.is_template}


def parse_spec(statements: list[str]) -> DbSpec | None:
    """pg_dump's database-level statements -> DbSpec (None when the archive has none, e.g. very old pg_dump)."""
    spec: DbSpec | None = None
    qname: str | None = None
    for st in statements:
        st = st.strip().rstrip(";").strip()
        m = _CREATE.match(st)
        if m:
            qname = m.group(1)
            spec = DbSpec(options=[(k, v) for k, v in _OPTION.findall(m.group(2))])
            continue
        if spec is None:
            raise RestoreFailed(f"the archive's database statements do not start with CREATE DATABASE: {st[:80]!r}")
        m = _ALTER_DB.match(st)
        if m and m.group(1) == qname:
            kind, rest = m.group(2), m.group(3)
            if kind == "OWNER TO":
                spec.owner = unquote(rest)
            elif kind == "CONNECTION LIMIT =":
                spec.connlimit = rest.strip()
            elif kind == "IS_TEMPLATE =":
                spec.is_template = rest.strip().lower() == "true"
            else:
                spec.settings.append((None, f"{kind} {rest}"))
            continue
        m = _ROLE_SET.match(st)
        if m and m.group(2) == qname:
            spec.settings.append((m.group(1), f"{m.group(3)} {m.group(4)}"))
            continue
        m = _COMMENT.match(st)
        if m and m.group(1) == qname:
            spec.comment = m.group(2)
            continue
        m = _ACL.match(st)
        if m and m.group(3) == qname:
            spec.acl.append((m.group(1), st))
            continue
        m = _SESSION.match(st)
        if m:
            spec.acl.append(("SESSION", m.group(2) if m.group(1) == "SET" else None))
            continue
        raise RestoreFailed(f"the archive holds a database-level statement dumpsafe cannot carry over: {st[:80]!r}")
    return spec
