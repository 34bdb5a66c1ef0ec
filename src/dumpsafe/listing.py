"""Listing backups across stores: one entry per backup ID (the original, else its first
copy), newest first, with the damaged records met on the way; also streamed as JSON
straight from the stores' checked manifest copies and the catalog cache (no model per
record, memory flat).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Iterator

from dumpsafe.catalog import Catalog, Damaged
from dumpsafe.catalog_order import filter_records, newest_first
from dumpsafe.models import BackupRecord

if TYPE_CHECKING:
    from dumpsafe.config import Config
    from dumpsafe.service import BackupService
    from dumpsafe.storage import Store


class Lister:
    """What listing needs of the service (the config, its stores and their catalogs) without
    the backup/restore stack (PostgreSQL engines, restore, verify, export): ``backup list``
    runs on this, so it does not import them (``python -X importtime``: ~0.35 s less)."""

    def __init__(self, config: Config):
        from dumpsafe.fsutil import secure_config_roots

        self.config = config
        self._stores: dict[str, Store] = {}
        secure_config_roots(config)  # as BackupService does: owner-only at rest

    def store(self, name: str) -> Store:
        from dumpsafe.storage import open_store

        if name not in self._stores:
            self._stores[name] = open_store(self.config, name)
        return self._stores[name]

    def catalog(self, store_name: str) -> Catalog:
        from pathlib import Path

        return Catalog(self.store(store_name), Path(self.config.state_dir) / "cache")  # BackupService.catalog's

    def list(self, tenant: str | None = None, database: str | None = None, store: str | None = None) -> RecordList:
        return list_records(self, tenant, database, store)

    def list_json(self, tenant: str | None = None, database: str | None = None,
                  store: str | None = None) -> tuple[Iterator[bytes], list[Damaged]]:
        return list_json(self, tenant, database, store)


class RecordList(list):
    """Records, plus the damaged records met while listing them (never silently dropped)."""

    damaged: list[Damaged]
    warnings: list[str]


def list_records(svc: BackupService | Lister, tenant: str | None = None, database: str | None = None,
                 store: str | None = None) -> RecordList:
    """Records newest first, from one store or all configured stores."""
    if tenant is not None and tenant not in svc.config.tenants:
        svc.config.tenant(tenant)  # raises the unknown-tenant error
    names = [store] if store else list(svc.config.stores)
    out: list[BackupRecord] = []
    damaged: list[Damaged] = []
    for name in names:
        cat = svc.catalog(name)
        out += filter_records(cat.records(), tenant, database)
        damaged += [d for d in cat.damaged if tenant is None or d.id.split(".", 1)[0] == tenant]
    result = RecordList(newest_first(out) if store else prefer_originals(newest_first(out)))
    result.damaged = damaged
    return result


def prefer_originals(records: list[BackupRecord]) -> list[BackupRecord]:
    """One entry per backup ID across stores: the original, else its first copy found."""
    seen: dict[str, BackupRecord] = {}
    for r in records:
        had = seen.get(r.id)
        if had is None or (getattr(had, "copy_of", None) and not getattr(r, "copy_of", None)):
            seen[r.id] = r
    return [r for r in records if seen[r.id] is r]


def list_json(svc: BackupService | Lister, tenant: str | None = None, database: str | None = None,
              store: str | None = None) -> tuple[Iterator[bytes], list[Damaged]]:
    """``list``'s records as one JSON array (newest first), streamed in pieces straight
    from the manifest copies and the cache's normalized JSON: no model per record, memory flat."""
    if tenant is not None and tenant not in svc.config.tenants:
        svc.config.tenant(tenant)  # raises the unknown-tenant error
    names = [store] if store else list(svc.config.stores)
    damaged: list[Damaged] = []
    streams = []
    for name in names:
        cat = svc.catalog(name)
        # one store: its record JSON a region at a time; several: merged record by record
        streams.append(cat.batches(tenant, database) if len(names) == 1 else cat.stream(tenant, database))
        damaged += [d for d in cat.damaged if tenant is None or d.id.split(".", 1)[0] == tenant]
    if any(s is None for s in streams):  # a clock went back somewhere: order by sequence
        recs = svc.list(tenant, database, store)
        return iter([b"[" + b",\n".join(r.model_dump_json().encode() for r in recs) + b"]\n"]), damaged
    if len(names) == 1:
        return _array(streams[0]), damaged
    merged = heapq.merge(*streams, key=lambda t: (t[0], t[1]), reverse=True)

    def unique() -> Iterator[list[bytes]]:
        """One entry per backup ID across stores: the original, else its first copy (in lists)."""
        held, batch = None, []
        for item in merged:
            if held is not None and item[1] == held[1]:
                if held[2] and not item[2]:
                    held = item
                continue
            if held is not None:
                batch.append(held[3])
                if len(batch) == 2000:
                    yield batch
                    batch = []
            held = item
        if held is not None:
            batch.append(held[3])
        yield batch

    return _array(unique()), damaged


def _array(batches: Iterator[list[bytes]]) -> Iterator[bytes]:
    """A JSON array of the records in ``batches``, one piece per batch."""
    sep = b"[\n"
    for batch in batches:
        if batch:
            yield sep + b",\n".join(batch)
            sep = b",\n"
    yield (b"[" if sep == b"[\n" else b"") + b"\n]\n"
