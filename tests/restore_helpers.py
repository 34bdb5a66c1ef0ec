"""Helpers for the restore/verify tests: full database state, uploads tree state, processes."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from conftest import table_digest

EXTRA_SQL = """
SELECT lo_from_bytea(424242, 'a large object, restored byte for byte'::bytea);
CREATE MATERIALIZED VIEW order_stats AS SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id;
SELECT setval('ticket_seq', 5000);
COMMENT ON TABLE orders IS 'every order';
CREATE FUNCTION order_total(bigint) RETURNS numeric LANGUAGE sql AS 'SELECT total FROM orders WHERE id = $1';
"""


def enrich(pg, db: str) -> None:
    """Large object, materialized view, advanced sequence, comment, function on top of the sample."""
    with pg.connect(db) as c:
        c.execute(EXTRA_SQL)


def db_state(pg, db: str) -> dict:
    """Everything a restore must bring back: table contents, sequences, indexes, constraints,
    views, materialized views, large objects, comments, functions."""
    q = {
        "sequences": "SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences ORDER BY 1",
        "indexes": "SELECT schemaname, indexname, indexdef FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog') ORDER BY 1, 2",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE connamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
        "views": "SELECT schemaname, viewname, definition FROM pg_views "
                 "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
        "matviews": "SELECT matviewname, definition, ispopulated FROM pg_matviews ORDER BY 1",
        "large_objects": "SELECT oid::bigint, lo_get(oid) FROM pg_largeobject_metadata ORDER BY 1",
        "comments": "SELECT objoid::regclass::text, description FROM pg_description WHERE classoid = 'pg_class'::regclass ORDER BY 1",
        "functions": "SELECT proname, pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
                     "AND prokind = 'f' AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = pg_proc.oid AND d.deptype = 'e') ORDER BY 1",
    }
    out: dict = {"tables": table_digest(pg, db)}
    with pg.connect(db) as c:
        for k, sql in q.items():
            out[k] = c.execute(sql).fetchall()
        if any(m[0] == "order_stats" for m in out["matviews"]):
            out["order_stats"] = c.execute("SELECT count(*), sum(n) FROM order_stats").fetchone()
    return out


def databases(pg) -> set[str]:
    with pg.connect() as c:
        return {r[0] for r in c.execute("SELECT datname FROM pg_database").fetchall()}


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under root: type, content hash or link target, permission bits."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", hashlib.sha256(Path(p).read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode))
    return out


def pids_with(*needles: bytes) -> list[int]:
    """PIDs whose command line contains every needle (to kill a real pg_restore mid-way)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        if all(n in cmd for n in needles):
            pids.append(int(d))
    return pids


def audit_lines(env, action: str) -> list[dict]:
    import json

    path = env.state_dir / "audit.jsonl"
    if not path.exists():
        return []
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["action"] == action]
