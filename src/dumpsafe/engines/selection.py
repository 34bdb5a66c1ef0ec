"""Which archive entries a selective restore needs: a ``pg_restore --use-list`` file for some tables.

``pg_restore --list --verbose`` prints every entry with the dump ids it depends on. From the
tables asked for we take:
- the TABLE entries themselves (matched against the record's exact (schema, table) names, so
  dots, quotes, spaces and unicode in names never mislead);
- the sequences they own (SEQUENCE OWNED BY naming a selected table, and that SEQUENCE);
- every entry hanging off what is selected (TABLE DATA, indexes, constraints, defaults,
  SEQUENCE SET, triggers, policies, comments, grants) whose relation-level dependencies are all
  selected: a foreign key to a table outside the selection is left out and reported;
- what the selected entries need that is not a relation (schemas, types, functions,
  extensions, collations), so the tables can be created in an empty database.
Views, materialized views and unrelated tables are never taken.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dumpsafe.engines.toc import parse_toc
from dumpsafe.errors import RestoreFailed, UsageError
from dumpsafe.models import BackupRecord, split_table_key

_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_DEPS = re.compile(r"^;\s+depends on:((?: \d+)+)\s*$")
# dependencies that tie an entry to another relation: all of these must be selected too
_RELATIONAL = {
    "TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE", "INDEX", "CONSTRAINT", "FK CONSTRAINT",
    "CHECK CONSTRAINT", "TRIGGER", "RULE", "POLICY", "DEFAULT", "TABLE DATA", "MATERIALIZED VIEW DATA", "TABLE ATTACH",
    "INDEX ATTACH", "STATISTICS", "PUBLICATION TABLE", "SEQUENCE OWNED BY", "SEQUENCE SET", "BLOB", "BLOB METADATA",
    "BLOBS", "LARGE OBJECT",
}
# entries that hang off a selected relation and come along with it
_ATTACHED = {
    "TABLE DATA", "INDEX", "CONSTRAINT", "FK CONSTRAINT", "CHECK CONSTRAINT", "DEFAULT", "SEQUENCE SET",
    "SEQUENCE OWNED BY", "TRIGGER", "POLICY", "ROW SECURITY", "COMMENT", "ACL", "SECURITY LABEL", "STATISTICS",
    "SEQUENCE",  # an identity column's sequence depends on its table
}
_SETTINGS = {"ENCODING", "STDSTRINGS", "SEARCHPATH"}
_NEVER = {"DATABASE", "DATABASE PROPERTIES", "VIEW", "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA", "PUBLICATION",
          "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "SUBSCRIPTION", "DEFAULT ACL", "EVENT TRIGGER",
          "BLOB", "BLOBS", "BLOB METADATA", "LARGE OBJECT", "USER MAPPING", "SERVER", "FOREIGN DATA WRAPPER"}


@dataclass
class Entry:
    id: int
    line: str
    desc: str
    schema: str
    name: str
    deps: list[int] = field(default_factory=list)

    def describe(self) -> str:
        where = f"{self.schema}.{self.name}" if self.schema and self.schema != "-" else self.name
        return f"{self.desc} {where}"


@dataclass
class Selection:
    """What a selective restore takes from an archive."""

    tables: list[tuple[str, str]]  # (schema, table), as asked, resolved against the record
    keys: list[str]  # the record's keys of those tables
    entries: list[Entry]  # in archive order
    left_out: list[str]  # foreign keys (and the like) to relations outside the selection

    def creates(self) -> list[str]:
        return [e.describe() for e in self.entries if e.desc not in _SETTINGS]

    def write_list(self, path: Path) -> None:
        path.write_text("".join(e.line + "\n" for e in self.entries), encoding="utf-8")


def resolve_tables(record: BackupRecord, tables: list[str], schemas: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """The (schema, table) pairs and record keys a selection names; UsageError naming the first unknown one.

    A table is given as the record's key (``"odd.schema"."t 1"``, as ``backup get`` shows) or as
    SCHEMA.TABLE; a dotted name matches when exactly one split of it names a table of the backup."""
    by_name = {split_table_key(k, record.table_keys == "quoted"): k for k in record.tables}
    chosen: dict[tuple[str, str], str] = {}
    for t in tables:
        if t in record.tables:
            chosen[split_table_key(t, record.table_keys == "quoted")] = t
            continue
        hits = {st for st in (split_table_key(t, True), *[(t[:i], t[i + 1:]) for i, c in enumerate(t) if c == "."])
                if st in by_name}
        if len(hits) != 1:
            why = "is not a table of" if not hits else "names more than one table of"
            raise UsageError(f"table {t!r} {why} backup {record.id} (see 'dumpsafe backup get {record.id}' for its tables, "
                             "and give them as SCHEMA.TABLE or as shown there); nothing was changed")
        st = hits.pop()
        chosen[st] = by_name[st]
    for s in schemas:
        found = {st: k for st, k in by_name.items() if st[0] == s}
        if not found:
            raise UsageError(f"schema {s!r} holds no table of backup {record.id} (see 'dumpsafe backup get {record.id}'); "
                             "nothing was changed")
        chosen.update(found)
    if not chosen:
        raise UsageError("name at least one --table SCHEMA.TABLE or --schema SCHEMA to restore selectively")
    pairs = sorted(chosen)
    return pairs, [chosen[p] for p in pairs]


def read_entries(tool: str, archive: Path, record: BackupRecord, roles: set[str]) -> list[Entry]:
    """The archive's entries with their dependencies (``pg_restore --list --verbose``; local, no server)."""
    try:
        proc = subprocess.run([tool, "--list", "--verbose", str(archive)], capture_output=True, timeout=600)
    except OSError as e:
        raise RestoreFailed(f"cannot start {tool} ({e.strerror})") from None
    if proc.returncode != 0:
        raise RestoreFailed(f"the archive's table of contents is not readable by {tool}: "
                            f"{proc.stderr.decode('utf-8', 'replace').strip()[:400]}")
    listing = proc.stdout.decode("utf-8", "replace")
    known = {split_table_key(k, record.table_keys == "quoted") for k in record.tables}
    parsed = parse_toc(listing, known, roles)  # exact names, one per entry line, in order
    entries: list[Entry] = []
    for line in listing.splitlines():
        m = _LINE.match(line)
        if m:
            te = parsed.entries[len(entries)]
            entries.append(Entry(int(m.group(1)), line, te.desc, te.schema, te.name))
            continue
        d = _DEPS.match(line)
        if d and entries:
            entries[-1].deps.extend(int(x) for x in d.group(1).split())
    return entries


def select(entries: list[Entry], tables: list[tuple[str, str]], keys: list[str]) -> Selection:
    by_id = {e.id: e for e in entries}
    want = set(tables)
    chosen = {e.id for e in entries if e.desc == "TABLE" and (e.schema, e.name) in want}
    missing = want - {(by_id[i].schema, by_id[i].name) for i in chosen}
    if missing:
        s, t = sorted(missing)[0]
        raise UsageError(f"table {s}.{t} is counted in the record but has no definition in the archive; nothing was changed")
    for e in entries:  # the sequences the selected tables own, or draw their defaults from
        if (e.desc in ("SEQUENCE OWNED BY", "DEFAULT") and any(d in chosen for d in e.deps)) or (
                e.desc == "TABLE" and e.id in chosen):
            chosen.update(d for d in e.deps if by_id.get(d) and by_id[d].desc == "SEQUENCE")
    left_out: list[str] = []
    changed = True
    while changed:
        changed = False
        for e in entries:
            if e.id in chosen or e.desc not in _ATTACHED or not any(d in chosen for d in e.deps):
                continue
            outside = [by_id[d] for d in e.deps if d not in chosen and d in by_id and by_id[d].desc in _RELATIONAL]
            if outside:
                continue
            chosen.add(e.id)
            changed = True
    for e in entries:  # what hangs off the selection but needs a relation outside it
        if e.desc in _ATTACHED and e.id not in chosen and any(d in chosen for d in e.deps):
            outside = sorted({by_id[d].describe() for d in e.deps if d not in chosen and d in by_id
                              and by_id[d].desc in _RELATIONAL})
            what = f"foreign key {e.name} on {e.schema}" if e.desc == "FK CONSTRAINT" else e.describe()
            left_out.append(f"{what} (needs {', '.join(outside)}, outside the selection)")
    # what the chosen entries need that is no relation: schemas, types, functions, extensions
    stack = list(chosen)
    while stack:
        for d in by_id[stack.pop()].deps:
            dep = by_id.get(d)
            if dep is None or d in chosen or dep.desc in _RELATIONAL or dep.desc in _NEVER:
                continue
            chosen.add(d)
            stack.append(d)
    picked = [e for e in entries if e.id in chosen or e.desc in _SETTINGS]
    return Selection(tables=tables, keys=keys, entries=picked, left_out=left_out)
