"""What a database holds, read through one SQL session: the backup records it (inside the
dump's snapshot) and a drill reads the same from the scratch database to compare.

Keys are identifiers quoted as PostgreSQL quotes them (``quote_ident``), so ``"x.y".z`` and
``x."y.z"`` never collide and ``public.orders`` stays as it is.
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from typing import IO, Any, Callable, Iterable

from psycopg import sql

from dumpsafe.engines.sqlsession import Session
from dumpsafe.errors import DatabaseUnavailable

MoreSessions = Callable[[], AbstractContextManager[Session]]

_USER_RELS = """
SELECT c.relkind::text AS kind, n.nspname::text AS nsp, c.relname::text AS rel,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS key, c.relispopulated AS populated, c.oid::int8 AS oid
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ({kinds})
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 2, 3
"""


# A leaf partition whose rows pg_dump loads through its top-most partitioned root: an ancestor is
# hash-partitioned with the enum opclass (pg_dump's own test, since PostgreSQL 11.20/15.3: an
# enum hashes by its OID, which a restore changes, so a row may land in another partition).
# ``{rel}`` is the leaf's OID expression.
_VIA_ROOT = """(SELECT vr.relispartition FROM pg_class vr WHERE vr.oid = {rel}) AND EXISTS (
    SELECT 1 FROM pg_partition_ancestors({rel}) a JOIN pg_partitioned_table pt ON pt.partrelid = a.relid
    WHERE (SELECT oc.oid FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
           WHERE oc.opcname = 'enum_ops' AND oc.opcnamespace = 'pg_catalog'::regnamespace AND am.amname = 'hash')
          = ANY (pt.partclass))"""


def _rels(s: Session, kinds: str) -> list[tuple[Any, ...]]:
    return s.rows(_USER_RELS.replace("{kinds}", kinds))


def count_rows(s: Session, schema: str, name: str) -> int:
    """Exact rows of one table (its inheritance children's included, as PostgreSQL counts them)."""
    return int(s.rows(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))[0][0])


def count_tables(s: Session, *, quoted: bool = True, more: MoreSessions | None = None, workers: int = 1,
                 known: dict[int, int] | None = None) -> dict[str, int]:
    """Exact row count of every user table (plain keys "schema.table" for records written before quoting).

    ``known``: counts already taken by table OID (``CountAsLoaded``); those tables are not counted again.

    With ``more`` (opens another session on the same database) and ``workers`` > 1 the tables
    are counted by that many sessions at once, largest first; a session that cannot be opened
    (the server's connection limit) leaves its share to the others. Only for a database nobody
    else writes to (a staging or scratch database): the sessions do not share a snapshot."""
    all_rels = _rels(s, "'r'")
    keys = {oid: (key if quoted else f"{nsp}.{rel}") for _k, nsp, rel, key, _p, oid in all_rels}
    known = known or {}
    rels = [r for r in all_rels if r[5] not in known]
    if more is None or workers < 2 or len(rels) < 2:
        out = {oid: count_rows(s, nsp, rel) for _k, nsp, rel, _key, _p, oid in rels}
        return {keys[oid]: known[oid] if oid in known else out[oid] for *_, oid in all_rels}
    sizes = dict(s.rows("SELECT c.oid::int8, pg_relation_size(c.oid) FROM pg_class c WHERE c.relkind = 'r'"))
    todo = queue.SimpleQueue()
    for _k, nsp, rel, _key, _p, oid in sorted(rels, key=lambda r: -sizes.get(r[5], 0)):
        todo.put((oid, nsp, rel))
    out: dict[int, int] = {}

    def drain(session: Session) -> None:
        while True:
            try:
                oid, nsp, rel = todo.get_nowait()
            except queue.Empty:
                return
            out[oid] = count_rows(session, nsp, rel)

    def helper() -> None:
        with ExitStack() as stack:
            try:
                other = stack.enter_context(more())
            except DatabaseUnavailable:  # e.g. max_connections reached: the first session counts the rest
                return
            drain(other)

    with ThreadPoolExecutor(min(workers, len(rels)) - 1, thread_name_prefix="count") as pool:
        helpers = [pool.submit(helper) for _ in range(min(workers, len(rels)) - 1)]
        drain(s)
        for h in helpers:
            h.result()  # a helper's error (e.g. SqlFailed) is the count's error
    return {keys[oid]: known[oid] if oid in known else out[oid] for *_, oid in all_rels}


class CountAsLoaded:
    """Count each table of a staging or scratch database while a single-job pg_restore goes on
    loading the others, in one background session, so the count after the load has only the
    last table (and parents, views, large objects) left.

    pg_restore --verbose names a table before its COPY and names every later item as it starts
    it; in a single job, without --single-transaction, the next item's line means the COPY
    before it ended and was committed, and nothing in a restore adds or removes a table's rows
    after its COPY. So ``saw(table)`` (a table's data starts) and ``saw(None)`` (any other item)
    hand the previous table, if any, to the counting session. Tables are found by the name
    pg_restore prints ("schema.table", unquoted). Left to the count after the load, because a
    later COPY may still add to its count: a table with inheritance children (its count takes in
    theirs) and a partition whose rows go through its root (``loaded_via_root``); and a name two
    relations could match, a failed count, or a session the server refuses.
    Not for a database anyone else writes to, nor for --jobs or --single-transaction restores.
    """

    _STOP = object()

    def __init__(self, open_more: MoreSessions):
        self._open = open_more
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: str | None = None
        self._thread: threading.Thread | None = None
        self.counted: dict[int, int] = {}  # table OID -> rows

    def saw(self, table: str | None) -> None:
        if self._pending is not None:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="count-as-loaded")
                self._thread.start()
            self._todo.put(self._pending)
        self._pending = table

    def finish(self) -> dict[int, int]:
        """Count what was handed over (the counting session keeps up with a load: a count is far
        cheaper than the COPY before it) and return the counts; the table still pending is left
        to the count after the load."""
        if self._thread is not None:
            self._todo.put(self._STOP)
            self._thread.join()
        return dict(self.counted)

    def _run(self) -> None:
        with ExitStack() as stack:
            try:
                s = stack.enter_context(self._open())
                s.execute("SET max_parallel_workers_per_gather = 0")  # the load keeps the cores
            except Exception:  # e.g. max_connections reached: everything is counted after the load
                s = None
            while (name := self._todo.get()) is not self._STOP:
                if s is None:
                    continue
                try:
                    found = s.rows(sql.SQL(  # every table the name could mean, and whether it may be counted now
                        "SELECT c.oid::int8, n.nspname::text, c.relname::text, "
                        "NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid) "
                        f"AND NOT ({_VIA_ROOT.format(rel='c.oid')}) AS now "
                        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relkind = 'r' AND n.nspname || '.' || c.relname = {}").format(sql.Literal(name)))
                    if len(found) == 1 and found[0][3]:
                        oid, nsp, rel, _ = found[0]
                        self.counted[int(oid)] = count_rows(s, nsp, rel)
                except Exception:  # counted again after the load
                    continue


def loaded_via_root(s: Session, quoted: bool = True) -> dict[str, str]:
    """Leaf partitions whose rows pg_dump loads through their top-most root (see _VIA_ROOT),
    each with that root: their rows are restored, but not necessarily into the partition
    they came from, so only the sum over the root's partitions can be compared."""
    key = ("quote_ident({n}.nspname) || '.' || quote_ident({c}.relname)" if quoted
           else "{n}.nspname || '.' || {c}.relname")
    rows = s.rows(
        f"SELECT {key.format(n='ln', c='l')} AS leaf, {key.format(n='rn', c='r')} AS root "
        "FROM pg_class l JOIN pg_namespace ln ON ln.oid = l.relnamespace "
        "JOIN pg_class r ON r.oid = pg_partition_root(l.oid) JOIN pg_namespace rn ON rn.oid = r.relnamespace "
        f"WHERE l.relkind = 'r' AND {_VIA_ROOT.format(rel='l.oid')}")
    return {leaf: root for leaf, root in rows}


def count_relations(s: Session, tables: dict[str, int] | None = None) -> dict[str, dict[str, int | None]]:
    """Rows of partitioned parents (through the parent) and materialized views (None: not populated).

    With ``tables`` (quoted keys, counted in the same snapshot) a parent's rows are the sum of its
    leaf partitions found through pg_partition_tree (so a detached partition still shows), and
    no partition is counted twice."""
    out: dict[str, dict[str, int | None]] = {"partitioned": {}, "matviews": {}}
    for kind, nsp, rel, key, populated, oid in _rels(s, "'p','m'"):
        if kind == "p":
            leaves = [r[0] for r in s.rows(sql.SQL(
                """SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS key
                   FROM pg_partition_tree({}::oid::regclass) t JOIN pg_class c ON c.oid = t.relid
                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.isleaf""").format(sql.Literal(oid)))]
            if tables is not None and all(k in tables for k in leaves):
                out["partitioned"][key] = sum(tables[k] for k in leaves)
            else:
                out["partitioned"][key] = count_rows(s, nsp, rel)
        else:
            out["matviews"][key] = count_rows(s, nsp, rel) if populated else None
    return out


def large_objects(s: Session) -> dict[str, int]:
    """Count and total bytes of the database's large objects (pg_largeobject if readable, else lo_get)."""
    if s.rows("SELECT has_table_privilege('pg_catalog.pg_largeobject', 'SELECT') AS ok")[0][0]:
        q = ("SELECT (SELECT count(*) FROM pg_largeobject_metadata) AS n, "
             "coalesce((SELECT sum(octet_length(data)) FROM pg_largeobject), 0)::int8 AS b")
    else:
        q = "SELECT count(*) AS n, coalesce(sum(octet_length(lo_get(oid))), 0)::int8 AS b FROM pg_largeobject_metadata"
    n, b = s.rows(q)[0]
    return {"count": int(n), "bytes": int(b)}


def sequences(s: Session) -> dict[str, list[Any]]:
    """[last_value, is_called] of every user sequence (what pg_dump's SEQUENCE SET restores)."""
    out: dict[str, list[Any]] = {}
    for _k, nsp, rel, key, _p, _o in _rels(s, "'S'"):
        v, called = s.rows(sql.SQL("SELECT last_value, is_called FROM {}.{}").format(sql.Identifier(nsp), sql.Identifier(rel)))[0]
        out[key] = [int(v), bool(called)]
    return out


def database_properties(s: Session, name: str | None = None) -> dict[str, Any]:
    """The database's own properties, normalized for comparison (``name`` None: the session's database)."""
    where = sql.SQL("d.datname = current_database()") if name is None else sql.SQL("d.datname = {}").format(sql.Literal(name))
    row = s.rows(sql.SQL(
        """SELECT pg_get_userbyid(d.datdba)::text AS owner, pg_encoding_to_char(d.encoding)::text AS enc,
                  CASE d.datlocprovider WHEN 'i' THEN 'icu' ELSE 'libc' END AS provider,
                  d.datcollate::text AS coll, d.datctype::text AS ctype, d.daticulocale::text AS icu,
                  t.spcname::text AS ts, d.datconnlimit AS connlimit, d.datistemplate AS tmpl, d.datallowconn AS allowconn,
                  shobj_description(d.oid, 'pg_database') AS comment, d.oid::int8 AS oid
           FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE """) + where)[0]
    settings = sorted((
        [role, cfg]
        for role, cfgs in s.rows(sql.SQL(
            """SELECT CASE WHEN r.setrole = 0 THEN NULL ELSE pg_get_userbyid(r.setrole)::text END AS role, r.setconfig AS cfg
               FROM pg_db_role_setting r WHERE r.setdatabase = {}""").format(sql.Literal(row[11])))
        for cfg in cfgs or []
    ), key=lambda rc: (rc[0] is not None, rc[0] or "", rc[1]))
    acl = sorted(list(a) for a in s.rows(sql.SQL(
        """SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END AS grantee,
                  a.privilege_type::text AS priv, pg_get_userbyid(a.grantor)::text AS grantor, a.is_grantable AS grantable
           FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
           WHERE d.oid = {}""").format(sql.Literal(row[11]))))
    return {
        "owner": row[0], "encoding": row[1], "locale_provider": row[2], "collate": row[3], "ctype": row[4],
        "icu_locale": row[5], "tablespace": row[6], "connection_limit": int(row[7]), "is_template": bool(row[8]),
        "allow_connections": bool(row[9]), "comment": row[10],
        "settings": [{"role": r, "setting": c} for r, c in settings],
        "grants": [{"grantee": g, "privilege": p, "grantor": gr, "grantable": bool(ga)} for g, p, gr, ga in acl],
    }


def snapshot_inventory(s: Session, tables: dict[str, int] | None = None) -> dict[str, Any]:
    """Everything a backup records about its database besides table rows, read in the dump's snapshot."""
    rels = count_relations(s, tables)
    return {"partitioned": rels["partitioned"], "matviews": rels["matviews"], "large_objects": large_objects(s),
            "database_properties": database_properties(s)}


def property_diffs(expected: dict[str, Any], actual: dict[str, Any], *, skip: Iterable[str] = ()) -> list[str]:
    """'<property> (before → after)' for each property that differs."""
    out = []
    for k in expected:
        if k in skip or expected.get(k) == actual.get(k):
            continue
        out.append(f"{k} ({_show(actual.get(k))} → {_show(expected.get(k))})")
    return out


def _show(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, dict):
        if "setting" in v:
            return f"{v['role'] + ': ' if v['role'] else ''}{v['setting']}"
        if "privilege" in v:
            return f"{v['privilege']} to {v['grantee']} by {v['grantor']}{' with grant option' if v['grantable'] else ''}"
    return repr(v)


# ---- schema fingerprint ------------------------------------------------------------------------
# pg_dump's comments and its \\restrict keys (random per run) say nothing about the schema
_NOISE = re.compile(r"^(--|\\(un)?restrict )")


def schema_fingerprint(stream: IO[bytes]) -> str:
    """SHA-256 of a ``pg_dump --schema-only`` script with comments, blank lines and \\restrict lines removed."""
    h = hashlib.sha256()
    for line in stream:
        text = line.rstrip(b"\r\n")
        if not text.strip() or _NOISE.match(text.decode("utf-8", "replace")):
            continue
        h.update(text + b"\n")
    return h.hexdigest()
