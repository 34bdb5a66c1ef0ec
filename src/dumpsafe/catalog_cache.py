"""The local catalog cache: one SQLite file (0600 in the 0700 state dir) for every store.

It only saves reads: the truth is the store (records, manifests, change notes; see
``catalog`` and ``manifest``). Rows are updated one by one as they change, never rewritten
whole, and indexed by store, tenant, database and created_at. The records of the store's
catalog manifest are NOT rows here: its checked local copy (see ``manifest``) is their index,
streamed in listing order; loading it keeps only small facts: its damaged entries and, per
(tenant, database), its newest record and whether sequences grow with time there
(``groups``: what deciding the listing order and a backup's next sequence needs). A record
read since (a change note, or listing ``records/`` without a manifest) is a row with its
normalized JSON (validated once, when it was read) and masks the manifest's line of the
same ID (``masked``: rewritten, removed or damaged since the manifest).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from dumpsafe.fsutil import open_private, private_dir

log = logging.getLogger(__name__)

CACHE_FILE = "catalog.sqlite3"
SCHEMA_VERSION = 6  # 6: a manifest's records are not rows (its copy is their index); groups

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    store TEXT NOT NULL, id TEXT NOT NULL, tenant TEXT NOT NULL, database TEXT NOT NULL,
    created_at TEXT NOT NULL, sequence INTEGER, copy_of TEXT, etag TEXT, json BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS records_id ON records (store, id);
CREATE INDEX IF NOT EXISTS records_tenant ON records (store, tenant, database, created_at, id);
CREATE INDEX IF NOT EXISTS records_time ON records (store, created_at, id);
CREATE TABLE IF NOT EXISTS damaged (
    store TEXT NOT NULL, id TEXT NOT NULL, reason TEXT NOT NULL, etag TEXT, PRIMARY KEY (store, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notes (store TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (store, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS masked (store TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (store, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    store TEXT NOT NULL, tenant TEXT NOT NULL, database TEXT NOT NULL, created_at TEXT NOT NULL, id TEXT NOT NULL,
    sequence INTEGER, ordered INTEGER NOT NULL, PRIMARY KEY (store, tenant, database)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stores (name TEXT PRIMARY KEY, url TEXT NOT NULL, manifest TEXT, digest TEXT, ordered INTEGER);
"""
_TABLES = ("records", "damaged", "notes", "masked", "groups")


class Row(NamedTuple):
    """The columns listing needs (the same names as BackupRecord's, so ordering helpers fit both)."""

    store: str
    id: str
    tenant: str
    database: str
    created_at: str  # RFC 3339 with microseconds, UTC: sorts as text
    sequence: int | None
    copy_of: str | None
    etag: str | None


ROW_COLS = "store, id, tenant, database, created_at, sequence, copy_of, etag"


class CatalogCache:
    """One connection to the cache file; every method is a short transaction."""

    def __init__(self, cache_dir: Path | None):
        self.path: Path | None = None
        if cache_dir is not None:
            self.path = private_dir(Path(cache_dir)) / CACHE_FILE
            if not self.path.exists():
                for old in Path(cache_dir).glob("index-*.json"):  # the JSON cache of older versions
                    old.unlink(missing_ok=True)
        try:
            self._open()
        except sqlite3.DatabaseError as e:  # a damaged file (a host crash mid-write): it only saves reads
            log.warning("catalog cache %s is damaged (%s); starting an empty one", self.path, e)
            if getattr(self, "db", None) is not None:
                self.db.close()
            if self.path is not None:
                self.path.unlink(missing_ok=True)
            self._open()

    def _open(self) -> None:
        if self.path is None:
            self.db = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            try:
                open_private(self.path).close()  # 0600 before SQLite writes a byte (issue 12)
            except FileExistsError:
                pass
            self.db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        # a rebuildable cache: no fsync per commit (loading a 100,000-record manifest wrote ~170 MB
        # and waited for the disk); a file a host crash damaged is detected here and started afresh
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: a 100,000-record load stays in memory
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:  # a cache is disposable: rebuild it rather than migrate
            with self.db:
                for t in (*_TABLES, "stores"):
                    self.db.execute(f"DROP TABLE IF EXISTS {t}")
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # ---- per store --------------------------------------------------------------------------
    def bind(self, store: str, url: str) -> str | None:
        """The manifest last loaded for ``store``; a store whose location changed starts empty."""
        row = self.db.execute("SELECT url, manifest FROM stores WHERE name=?", (store,)).fetchone()
        if row is not None and row[0] == url:
            return row[1]
        with self.db:
            self.clear(store)
            self.db.execute("INSERT OR REPLACE INTO stores (name, url, manifest) VALUES (?, ?, NULL)", (store, url))
        return None

    def clear(self, store: str) -> None:
        for t in _TABLES:
            self.db.execute(f"DELETE FROM {t} WHERE store=?", (store,))
        self._changed(store)

    def set_manifest(self, store: str, manifest: str | None, digest: str | None = None) -> None:
        """The manifest whose records this host lists from its checked local copy (the copy's SHA-256)."""
        self.db.execute("UPDATE stores SET manifest=?, digest=? WHERE name=?", (manifest, digest, store))
        if manifest is None:
            for t in ("masked", "groups"):
                self.db.execute(f"DELETE FROM {t} WHERE store=?", (store,))
        self._changed(store)

    def manifest(self, store: str) -> tuple[str | None, str | None]:
        row = self.db.execute("SELECT manifest, digest FROM stores WHERE name=?", (store,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def add_groups(self, store: str, groups: Iterable[tuple[list, bool]]) -> None:
        """A manifest's facts per (tenant, database): its newest record's meta
        [id, tenant, database, created_at, sequence, ...] and whether sequences grow with time there."""
        self.db.executemany("INSERT OR REPLACE INTO groups (store, tenant, database, created_at, id, sequence, ordered) "
                            "VALUES (?,?,?,?,?,?,?)", ((store, m[1], m[2], m[3], m[0], m[4], int(o)) for m, o in groups))

    def groups(self, store: str) -> dict[tuple[str, str], tuple[str, str, int, bool]]:
        """(tenant, database) -> (created_at, id, sequence or 0, ordered) of the manifest's newest record there."""
        q = "SELECT tenant, database, created_at, id, COALESCE(sequence, 0), ordered FROM groups WHERE store=?"
        return {(t, d): (c, i, s, bool(o)) for t, d, c, i, s, o in self.db.execute(q, (store,))}

    def _changed(self, store: str) -> None:
        """The store's rows changed: whether time order holds is to be checked again."""
        self.db.execute("UPDATE stores SET ordered=NULL WHERE name=?", (store,))

    def ordered(self, store: str) -> bool | None:
        """Whether time order is the listing order in the whole store, when known since its last change."""
        row = self.db.execute("SELECT ordered FROM stores WHERE name=?", (store,)).fetchone()
        return None if row is None or row[0] is None else bool(row[0])

    def set_ordered(self, store: str, holds: bool) -> None:
        self.db.execute("UPDATE stores SET ordered=? WHERE name=?", (int(holds), store))

    def _mask(self, store: str, backup_id: str) -> None:
        """The manifest's line of this ID is no longer the truth (when a manifest is loaded);
        every single-row change passes here, so it also marks the store's order unchecked."""
        self._changed(store)
        self.db.execute("INSERT OR IGNORE INTO masked (store, id) SELECT ?, ? WHERE EXISTS "
                        "(SELECT 1 FROM stores WHERE name=? AND manifest IS NOT NULL)", (store, backup_id, store))

    def masked(self, store: str) -> set[str]:
        return {k for (k,) in self.db.execute("SELECT id FROM masked WHERE store=?", (store,))}

    # ---- records read since the manifest (or all of them, without one) -----------------------
    def put(self, row: Row, data: bytes) -> None:
        self.db.execute(f"INSERT OR REPLACE INTO records ({ROW_COLS}, json) VALUES (?,?,?,?,?,?,?,?,?)", (*row, data))
        self.db.execute("DELETE FROM damaged WHERE store=? AND id=?", (row.store, row.id))
        self._mask(row.store, row.id)

    def put_many(self, rows: Iterable[tuple[Row, bytes]]) -> None:
        """Insert many (Row, json) pairs (no masks: for filling a cache without a manifest)."""
        self.db.executemany(f"INSERT OR REPLACE INTO records ({ROW_COLS}, json) VALUES (?,?,?,?,?,?,?,?,?)",
                            ((*r, d) for r, d in rows))
        self.db.execute("UPDATE stores SET ordered=NULL")  # rows of any store may have come

    def drop(self, store: str, backup_id: str) -> None:
        self.db.execute("DELETE FROM records WHERE store=? AND id=?", (store, backup_id))
        self.db.execute("DELETE FROM damaged WHERE store=? AND id=?", (store, backup_id))
        self._mask(store, backup_id)

    def mark_damaged(self, store: str, backup_id: str, reason: str, etag: str | None) -> None:
        self.db.execute("DELETE FROM records WHERE store=? AND id=?", (store, backup_id))
        self.db.execute("INSERT OR REPLACE INTO damaged (store, id, reason, etag) VALUES (?,?,?,?)",
                        (store, backup_id, reason, etag))
        self._mask(store, backup_id)

    def add_damaged(self, store: str, entries: Iterable[tuple[str, str]]) -> None:
        """A manifest's damaged entries (id, reason): not masks, they ARE the manifest's word."""
        self.db.executemany("INSERT OR REPLACE INTO damaged (store, id, reason, etag) VALUES (?,?,?,NULL)",
                            ((store, b, r) for b, r in entries))

    def etags(self, store: str, id_prefix: str = "") -> dict[str, str | None]:
        """id -> etag of every cached record and damaged entry under ``id_prefix``."""
        out: dict[str, str | None] = {}
        for table in ("records", "damaged"):
            q = f"SELECT id, etag FROM {table} WHERE store=? AND id >= ? AND id < ?"
            out.update(self.db.execute(q, (store, id_prefix, id_prefix + "\uffff")))
        return out

    def _where(self, store: str, tenant: str | None, database: str | None, id_prefix: str = "") -> tuple[str, tuple]:
        where, args = "store=?", [store]
        if tenant is not None:
            where, args = where + " AND tenant=?", args + [tenant]
        if database is not None:
            where, args = where + " AND database=?", args + [database]
        if id_prefix:
            where, args = where + " AND id >= ? AND id < ?", args + [id_prefix, id_prefix + "\uffff"]
        return where, tuple(args)

    def group_keys(self, store: str) -> list[tuple[str, str, str, str, int]]:
        """(tenant, database, created_at, id, sequence or 0) of every row, by group, oldest first."""
        q = ("SELECT tenant, database, created_at, id, COALESCE(sequence, 0) FROM records WHERE store=? "
             "ORDER BY tenant, database, created_at, id")
        return self.db.execute(q, (store,)).fetchall()

    def newest_first(self, store: str, tenant: str | None = None, database: str | None = None,
                     id_prefix: str = "") -> Iterator[tuple[list, bytes]]:
        """([id, tenant, database, created_at, sequence, copy_of, etag], json) of each row
        (a record read since the manifest), newest first by time, streamed from the index."""
        where, args = self._where(store, tenant, database, id_prefix)
        q = f"SELECT {ROW_COLS}, json FROM records WHERE {where} ORDER BY created_at DESC, id DESC"
        for r in self.db.execute(q, args):
            yield list(r[1:8]), r[8]

    def top(self, store: str, tenant: str, database: str) -> tuple[int, str, str] | None:
        """(sequence or 0, created_at, id) of the row of the group that is newest by sequence."""
        q = ("SELECT COALESCE(sequence, 0) AS s, created_at, id FROM records WHERE store=? AND tenant=? AND database=? "
             "ORDER BY s DESC, created_at DESC, id DESC LIMIT 1")
        return self.db.execute(q, (store, tenant, database)).fetchone()

    def damaged(self, store: str, id_prefix: str = "") -> list[tuple[str, str]]:
        q = "SELECT id, reason FROM damaged WHERE store=? AND id >= ? AND id < ? ORDER BY id"
        return list(self.db.execute(q, (store, id_prefix, id_prefix + "\uffff")))

    # ---- change notes already applied --------------------------------------------------------
    def seen_notes(self, store: str) -> set[str]:
        return {k for (k,) in self.db.execute("SELECT key FROM notes WHERE store=?", (store,))}

    def add_notes(self, store: str, keys: Iterable[str]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO notes (store, key) VALUES (?, ?)", ((store, k) for k in keys))

    def forget_notes_except(self, store: str, keep: set[str]) -> None:
        """Drop applied notes the store no longer has (compacted away), so the table stays small."""
        gone = self.seen_notes(store) - keep
        self.db.executemany("DELETE FROM notes WHERE store=? AND key=?", ((store, k) for k in gone))
