"""Listing order of one store's catalog: newest first by (created_at, id), the order a manifest
holds its records in, unless a clock set back makes sequence disagree with time in some
(tenant, database) (then listing orders by sequence: ``newest_first``).

Whether time order holds is decided from the manifest's small facts (per group: its newest
record and whether its sequences grow with time, kept when the manifest was checked) and
the few rows read since; the manifest copy is only scanned for a group where such a row
falls inside the manifest's time span (a rewrite of an older record). ``merged`` streams the
record JSON of the manifest copy's regions merged with those rows, decoding metas only in a
region a row falls into or a filter applies to.
"""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from dumpsafe.manifest import line_meta, line_metas, line_records

if TYPE_CHECKING:
    from dumpsafe.catalog_cache import CatalogCache
    from dumpsafe.models import BackupRecord

Group = tuple[str, str]  # (tenant, database)


def order_key(r: BackupRecord) -> tuple:
    return (r.sequence or 0, r.created_at, r.id)


def newest_first(records: list) -> list:
    """Newest first: by ``created_at`` across tenant/databases, but within each one by
    ``sequence`` (which only grows), so a clock set back never reorders its backups."""
    by_time = sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)
    groups: dict[tuple, list[BackupRecord]] = {}
    for r in records:
        groups.setdefault((r.store, r.tenant, r.database), []).append(r)
    for g in groups.values():
        g.sort(key=order_key)  # oldest first: pop() gives the newest
    return [groups[(r.store, r.tenant, r.database)].pop() for r in by_time]


def filter_records(
    records: Iterable[BackupRecord], tenant: str | None = None, database: str | None = None
) -> list[BackupRecord]:
    return [r for r in records if (tenant is None or r.tenant == tenant) and (database is None or r.database == database)]


def time_key(entry: tuple[list, bytes]) -> tuple[str, str]:
    """(created_at, id) of a (meta, JSON) pair."""
    return entry[0][3], entry[0][0]


def time_order_holds(cache: CatalogCache, store: str, lines: Callable[[], Iterator[list[bytes]] | None],
                     tenant: str | None = None, database: str | None = None) -> bool:
    """Whether, in every tenant/database (matching the filters), sequence grows with (created_at,
    id): then newest first by time IS the listing order. The whole store's answer is kept until
    its rows change (it holds for every subset too). ``lines``: the manifest copy's record lines."""
    whole = cache.ordered(store)
    if whole is not None and (whole or (tenant is None and database is None)):
        return whole
    bad = disordered(cache, store, lines)
    if whole is None:
        with cache.db:
            cache.set_ordered(store, not bad)
    return not any((tenant is None or t == tenant) and (database is None or d == database) for t, d in bad)


def disordered(cache: CatalogCache, store: str, lines: Callable[[], Iterator[list[bytes]] | None]) -> set[Group]:
    """The groups where sequence does not grow with time (conservative: a group it cannot clear
    without reading is read, never guessed)."""
    facts = cache.groups(store)
    bad = {g for g, f in facts.items() if not f[3]}
    scan: dict[Group, list[tuple[str, str, int]]] = {}
    for g, grp in itertools.groupby(cache.group_keys(store), key=lambda r: (r[0], r[1])):
        rows = [(c, i, s) for _, _, c, i, s in grp]  # oldest first
        if any(a[2] > b[2] for a, b in zip(rows, rows[1:])):
            bad.add(g)
            continue
        f = facts.get(g)
        if f is None or g in bad:
            continue
        if rows[0][:2] >= f[:2]:  # every row at or after the manifest's newest there (or a rewrite of it)
            if f[2] > rows[0][2]:  # the manifest's older lines have sequences <= f's
                bad.add(g)
        else:
            scan[g] = rows
    if scan:  # a row inside the manifest's span: merge with that group's lines (minus those masked)
        for region in lines() or ():
            for m in line_metas(region):
                if (rows := scan.get((m[1], m[2]))) is not None:
                    rows.append((m[3], m[0], m[4] or 0))
        for g, rows in scan.items():
            rows.sort()
            if any(a[2] > b[2] for a, b in zip(rows, rows[1:])):
                bad.add(g)
    return bad


def merged(regions: Iterator[list[bytes]], extras: Iterator[tuple[list, bytes]], tenant: str | None = None,
           database: str | None = None) -> Iterator[list[bytes]]:
    """The record JSON of the manifest copy's record lines (``regions``, newest first, those
    masked already left out) merged with ``extras`` ((meta, JSON), newest first), in lists.
    A region no extra falls into (its last line is newer than the next extra) and no filter
    applies to is passed through without decoding its metas."""
    ex = next(extras, None)
    for lines in regions:
        if tenant is not None or database is not None:
            metas = line_metas(lines)
            keep = [i for i, m in enumerate(metas) if (tenant is None or m[1] == tenant)
                    and (database is None or m[2] == database)]
            if len(keep) < len(lines):
                metas, lines = [metas[i] for i in keep], [lines[i] for i in keep]
        elif ex is not None and time_key(ex) > time_key((line_meta(lines[-1]), b"")):
            metas = line_metas(lines)
        else:
            yield line_records(lines)
            continue
        out: list[bytes] = []
        for m, rec in zip(metas, line_records(lines)):
            key = (m[3], m[0])
            while ex is not None and time_key(ex) > key:
                out.append(ex[1])
                ex = next(extras, None)
            out.append(rec)
        if out:
            yield out
    tail = [] if ex is None else [ex[1]]
    for _, data in extras:
        tail.append(data)
        if len(tail) >= 2000:
            yield tail
            tail = []
    if tail:
        yield tail


def entries(regions: Iterator[list[bytes]], extras: Iterator[tuple[list, bytes]], tenant: str | None = None,
            database: str | None = None) -> Iterator[tuple[list, bytes]]:
    """(meta, JSON) of each record of the manifest copy's record lines (filtered on their meta)
    merged with ``extras``, newest first by (created_at, id)."""
    def lines() -> Iterator[tuple[list, bytes]]:
        for ls in regions:
            for m, rec in zip(line_metas(ls), line_records(ls)):
                if (tenant is None or m[1] == tenant) and (database is None or m[2] == database):
                    yield m, rec

    return heapq.merge(lines(), extras, key=time_key, reverse=True)


def newest_by_sequence(cache: CatalogCache, store: str, tenant: str, database: str,
                       entries: Callable[[], Iterator[tuple[list, bytes]]]) -> tuple[int, str] | None:
    """(sequence or 0, created_at) of the tenant/database's newest record by ``order_key``
    (None when it has none): from the manifest's facts and the rows read since when they
    settle it (the manifest's newest there still listed, or outranked by a row), else from
    ``entries`` (that group's records, read from the manifest copy and the rows)."""
    top = cache.top(store, tenant, database)
    fact = cache.groups(store).get((tenant, database)) if cache.manifest(store)[0] else None
    if fact is not None:
        created, bid, seq, ordered = fact
        key = (seq, created, bid)  # an ordered group's newest by time is its newest by sequence
        if not ordered or (bid in cache.masked(store) and (top is None or tuple(top) < key)):
            top = max(((m[4] or 0, m[3], m[0]) for m, _ in entries() if m[1] == tenant and m[2] == database),
                      default=None)
        elif top is None or tuple(top) < key:
            top = key
    return None if top is None else (top[0], top[1])
