"""An archive's table of contents: what ``pg_restore --create --list`` and ``--schema-only`` say it holds.

Both are read in one pass over the archive stream (the caller may go on hashing it). The
schema script is scanned line by line, never kept whole: it gives the exact owner of every
entry (the ``--list`` line is space-separated and cannot tell "Odd Role ✓" from a name),
the roles the objects name, and the database-level statements pg_dump wrote (DATABASE,
DATABASE PROPERTIES, its COMMENT and ACL), which ``engines/dbspec.py`` turns into the
database a restore creates.
"""

from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import dataclass, field
from typing import IO, Callable

from dumpsafe.engines.postgres import _StderrTail
from dumpsafe.engines.sqlsplit import split_statements
from dumpsafe.errors import RestoreFailed

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
_IDENT = r'(?:"(?:[^"]|"")+"|[^\s;,"]+)'
_OWNER_TO = re.compile(r"\bOWNER TO (" + _IDENT + r");")
_GRANT_TO = re.compile(r"^GRANT .+? TO (.+?)(?: WITH (?:GRANT|ADMIN) OPTION)?;$")
_SESSION_AUTH = re.compile(r"^SET SESSION AUTHORIZATION (" + _IDENT + r");$")
_ROLE_IN_DB = re.compile(r"^ALTER ROLE (" + _IDENT + r") IN DATABASE ")
_ENCODING = re.compile(r"^SET client_encoding = '([^']+)';$")
# "-- Name: x; Type: TABLE; Schema: public; Owner: Odd Role ✓": the owner runs to the end of the line
_ENTRY = re.compile(r"^-- (?:Data for )?Name: (.*); Type: ([A-Z][A-Z ]*); Schema: (.*); Owner: ?(.*)$")
_VERSION_NUM = re.compile(r"^(\d+)(?:\.(\d+))?")
DB_ENTRY_TYPES = ("DATABASE", "DATABASE PROPERTIES")


@dataclass(frozen=True)
class TocEntry:
    desc: str
    schema: str
    name: str
    owner: str


@dataclass
class Toc:
    """What an archive holds: its entries, header, encoding, roles, and the database's own statements."""

    header: dict[str, str] = field(default_factory=dict)
    entries: list[TocEntry] = field(default_factory=list)
    encoding: str | None = None
    roles: set[str] = field(default_factory=set)  # owners, grantees, grantors and per-role settings the archive names
    owners: set[str] = field(default_factory=set)  # the subset that only owns (not needed with --no-owner)
    database_sql: list[str] = field(default_factory=list)  # pg_dump's DATABASE/PROPERTIES/COMMENT/ACL statements

    def table_data(self) -> list[tuple[str, str]]:
        """(schema, table) of every TABLE DATA entry (one per table whose rows the archive holds)."""
        return [(e.schema, e.name) for e in self.entries if e.desc == "TABLE DATA"]

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


def unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if len(ident) > 1 and ident.startswith('"') and ident.endswith('"') else ident


def split_key(key: str, quoted: bool) -> tuple[str, str]:
    """A record's table key -> (schema, table) (see models.split_table_key)."""
    from dumpsafe.models import split_table_key

    return split_table_key(key, quoted)


class SqlScan:
    """Reads the ``--schema-only`` script line by line; keeps only what restores and dry runs need."""

    def __init__(self) -> None:
        self.owners: set[str] = set()
        self.roles: set[str] = set()
        self.encoding: str | None = None
        self.database_sql: list[str] = []
        self._in_db_entry = False
        self._buf: list[str] = []

    def feed(self, line: str) -> None:
        m = _ENTRY.match(line)
        if m:
            self._flush()
            name, typ, _schema, owner = m.groups()
            if owner and owner != "-":  # pg_dump prints "-" for an entry without owner
                self.owners.add(owner)
            self._in_db_entry = typ in DB_ENTRY_TYPES or (typ in ("COMMENT", "ACL") and name.startswith("DATABASE "))
            return
        if line.startswith("\\"):  # \connect and friends end an entry's statements
            self._flush()
            self._in_db_entry = False
            return
        if line.startswith("--") and not self._buf:
            return
        if self.encoding is None:
            e = _ENCODING.match(line)
            if e:
                self.encoding = e.group(1)
        for o in _OWNER_TO.finditer(line):
            self.owners.add(unquote(o.group(1)))
        g = _GRANT_TO.match(line)
        if g:
            for r in _split_idents(g.group(1)):
                if r.upper() != "PUBLIC":
                    self.roles.add(unquote(r))
        for rx in (_SESSION_AUTH, _ROLE_IN_DB):
            a = rx.match(line)
            if a:
                self.roles.add(unquote(a.group(1)))
        if self._in_db_entry and (self._buf or line.strip()):
            self._buf.append(line)

    def _flush(self) -> None:
        if self._buf:
            self.database_sql.extend(split_statements("\n".join(self._buf), drop_meta=True))
        self._buf = []

    def close(self) -> None:
        self._flush()


def _split_idents(text: str) -> list[str]:
    return [p.strip() for p in re.findall(r'"(?:[^"]|"")*"|[^,]+', text) if p.strip()]


def parse_toc(listing: str, known_tables: set[tuple[str, str]] = frozenset(), owners: set[str] = frozenset()) -> Toc:
    """Parse ``pg_restore --list`` output.

    Names are printed unquoted and space-separated, so "odd schema" / "t 1" / "Odd Role ✓" are
    ambiguous by themselves: the owner is matched against the exact owners the schema script
    names (longest first), tables against the ones the record knows, schemas against the ones
    the archive created (SCHEMA entries come first), before falling back to tokens.
    """
    toc = Toc()
    tables = sorted(known_tables, key=lambda st: -len(st[0]) - len(st[1]))
    schemas = {s for s, _ in tables}
    by_len = sorted(owners, key=len, reverse=True)
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
        schema, name, owner = _split_entry(rest[len(desc) + 1 :], tables if desc in ("TABLE", "TABLE DATA") else [],
                                           schemas, by_len)
        if desc == "SCHEMA":
            schemas.add(name)
        toc.entries.append(TocEntry(desc, schema, name, owner))
        if owner:
            toc.roles.add(owner)
    return toc


def _split_entry(rest: str, tables: list[tuple[str, str]], schemas: set[str], owners: list[str]) -> tuple[str, str, str]:
    """"schema name owner" -> its parts (owner may be empty, e.g. for extensions)."""
    owner = next((o for o in owners if rest.endswith(" " + o)), None)
    if owner is not None:
        head = rest[: -len(owner) - 1]
    elif rest.endswith(" "):
        head, owner = rest[:-1], ""
    elif owners:  # the script names every owner: this entry has none
        head, owner = rest, ""
    else:
        head, _, owner = rest.rpartition(" ")
    for s, t in tables:
        if head == f"{s} {t}":
            return s, t, owner
    schema = max((s for s in schemas if head.startswith(s + " ")), key=len, default=None) or head.partition(" ")[0]
    return schema, head[len(schema) + 1 :], owner


def read_toc(tool: str, source: IO[bytes] | Callable[[int], bytes], *, with_sql: bool = True,
             known_tables: set[tuple[str, str]] = frozenset()) -> Toc:
    """Feed an archive stream to a local ``pg_restore --create --list`` (and ``--schema-only``).

    No server is involved, so this always runs here, never through an exec channel.
    pg_restore stops reading once it has the TOC; we stop feeding when every reader is done,
    so the caller may go on reading (and hashing) the rest of the stream.
    """
    read = source if callable(source) else source.read
    jobs = [("list", [tool, "--create", "--list"])]
    scan = SqlScan()
    if with_sql:
        jobs.append(("sql", [tool, "--create", "--schema-only", "--file=-"]))
    procs: dict[str, tuple[subprocess.Popen, _StderrTail, list[bytes], threading.Thread]] = {}
    for name, argv in jobs:
        try:
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            raise RestoreFailed(f"cannot start {tool} ({e.strerror})") from None
        tail = _StderrTail(p.stderr, None)
        tail.start()
        out: list[bytes] = []
        if name == "sql":
            target = lambda s=p.stdout: [scan.feed(ln.decode("utf-8", "replace").rstrip("\n")) for ln in s]  # noqa: E731
        else:
            target = lambda s=p.stdout, o=out: o.extend(iter(lambda: s.read(1 << 16), b""))  # noqa: E731
        reader = threading.Thread(target=target, daemon=True)
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
        for p, _tail, _out, _reader in procs.values():
            try:
                p.stdin.close()
            except OSError:
                pass
    results: dict[str, str] = {}
    for name, (p, tail, out, reader) in procs.items():
        rc = p.wait()
        reader.join(timeout=30)
        p.stdout.close()
        tail.join(timeout=5)
        if rc != 0:
            raise RestoreFailed(f"the archive's table of contents is not readable by {tool}: {tail.text() or f'exit status {rc}'}")
        results[name] = b"".join(out).decode("utf-8", "replace")
    scan.close()
    toc = parse_toc(results["list"], known_tables, scan.owners)
    toc.roles |= scan.roles | scan.owners
    toc.owners = scan.owners - scan.roles
    toc.encoding = scan.encoding
    toc.database_sql = scan.database_sql
    toc.roles.discard("")
    return toc


_SETVAL = re.compile(r"^SELECT pg_catalog\.setval\('((?:[^']|'')*)', (-?\d+), (true|false)\);$")


Read = Callable[[int], bytes]
# a streamed archive: runs a function over a fresh read of the archive's head (fetch.head)
HeadReader = Callable[[Callable[[Read], "subprocess.CompletedProcess"]], "subprocess.CompletedProcess"]


def _fed(argv: list[str], read: Read) -> subprocess.CompletedProcess:
    """Run ``argv`` with the archive on stdin, fed until it stops reading or the archive ends."""
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[bytes] = []
    err: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.append(p.stdout.read()), daemon=True),
               threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)]
    for t in threads:
        t.start()
    try:
        while chunk := read(1 << 16):
            p.stdin.write(chunk)
    except (BrokenPipeError, OSError):
        pass  # it has what it needs
    finally:
        try:
            p.stdin.close()
        except OSError:
            pass
    rc = p.wait()
    for t in threads:
        t.join(timeout=30)
    return subprocess.CompletedProcess(argv, rc, b"".join(out).decode("utf-8", "replace"),
                                       b"".join(err).decode("utf-8", "replace"))


def archive_sequences(tool: str, archive: str | HeadReader) -> dict[str, list]:
    """[value, is_called] of every SEQUENCE SET entry of an archive, keyed like the record
    (pg_dump writes the sequence quoted as quote_ident does). Reads only those entries: from
    a file path, or from a streamed archive's head (SEQUENCE SET entries live in the table of
    contents, so pg_restore never reads the data blocks)."""
    import tempfile

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        if callable(archive):
            return archive(lambda read: _fed(argv, read))
        return subprocess.run([*argv, archive], capture_output=True, text=True)

    listing = run([tool, "--list"])
    if listing.returncode != 0:
        raise RestoreFailed(f"the archive's table of contents is not readable by {tool}: {listing.stderr.strip()[-300:]}")
    wanted = [ln for ln in listing.stdout.splitlines() if _TOC_LINE.match(ln) and " SEQUENCE SET " in ln]
    if not wanted:
        return {}
    with tempfile.NamedTemporaryFile("w", suffix=".list") as lf:
        lf.write("\n".join(wanted) + "\n")
        lf.flush()
        out = run([tool, "--data-only", f"--use-list={lf.name}", "--file=-"])
    if out.returncode != 0:
        raise RestoreFailed(f"cannot read the archive's sequence values with {tool}: {out.stderr.strip()[-300:]}")
    seqs: dict[str, list] = {}
    for ln in out.stdout.splitlines():
        m = _SETVAL.match(ln)
        if m:
            seqs[m.group(1).replace("''", "'")] = [int(m.group(2)), m.group(3) == "true"]
    return seqs


_EXT_LINE = re.compile(r"^\d+; \d+ \d+ (?:EXTENSION|COMMENT) - (?:EXTENSION )?(.+?) ?$")


def _attached_constraints(lines: list[str]) -> set[int]:
    """Indexes of CONSTRAINT lines whose index an INDEX ATTACH entry attaches to a partitioned
    parent's ("schema name owner" of the ATTACH is "schema table name owner" of the CONSTRAINT)."""
    attach = [m.group(4)[len("INDEX ATTACH "):] for m in map(_TOC_LINE.match, lines) if m and m.group(4).startswith("INDEX ATTACH ")]
    out = set()
    for i, ln in enumerate(lines):
        m = _TOC_LINE.match(ln)
        if not m or not m.group(4).startswith("CONSTRAINT "):
            continue
        c = m.group(4)[len("CONSTRAINT "):]
        for r in attach:
            if any(c.startswith(r[:j] + " ") and c.endswith(" " + r[j + 1:]) for j in range(len(r)) if r[j] == " "):
                out.add(i)
                break
    return out


def clean_list(tool: str, archive: str, keep_extensions: set[str], out_path: str) -> bool:
    """Write a ``--use-list`` file that makes ``pg_restore --clean`` work where it would not;
    False when the archive's own order needs no change.

    - Extensions in ``keep_extensions`` (the target has them) are left in place: dropping and
      re-creating one in a database whose default privileges revoke EXECUTE from PUBLIC would
      take EXECUTE away from its functions (the archive holds no grant for privileges equal to
      an extension's initial ones).
    - Partitions' key constraints are listed before their parent's: the drop phase (reverse
      order) then drops the parent's constraint first, which drops the partitions' with it,
      instead of failing on "cannot drop inherited constraint"; the create phase builds the
      partitions' first and attaches them to the parent's as before."""
    listing = subprocess.run([tool, "--list", archive], capture_output=True, text=True)
    if listing.returncode != 0:
        raise RestoreFailed(f"the archive's table of contents is not readable by {tool}: {listing.stderr.strip()[-300:]}")
    lines = [ln for ln in listing.stdout.splitlines() if _TOC_LINE.match(ln)]
    kept = [ln for ln in lines if not ((m := _EXT_LINE.match(ln)) and m.group(1) in keep_extensions)]
    moved = _attached_constraints(kept)
    if len(kept) == len(lines) and not moved:
        return False
    first = min((i for i, ln in enumerate(kept) if _TOC_LINE.match(ln).group(4).startswith("CONSTRAINT ")), default=0)
    order = [ln for i, ln in enumerate(kept[:first]) if i not in moved] + [kept[i] for i in sorted(moved)] + \
        [ln for i, ln in enumerate(kept) if i >= first and i not in moved]
    with open(out_path, "w") as fh:
        fh.write("\n".join(order) + "\n")
    return True
