"""Sweep a store of what dead writers left, decided by our own pending markers only.

- A dead create or copy marker (see ``pending``) whose backup has a record: the write
  committed and only the marker (and maybe the audit line) was left; the marker goes.
- A dead create or copy marker without a record: every object under ``objects/<id>/``
  and every unfinished upload there is removed, then the marker.
- A dead delete marker: the delete is finished (record copy, record, objects), then the marker.
- ``full=True`` (``index rebuild``, ``recover``) also lists ``objects/`` for backups that
  have neither a record nor a live marker (e.g. a delete killed before it wrote its
  marker in an older version): removed, unless a record copy beside them says the
  record itself went missing (reported, kept for ``backup repair``).

Listing order makes a race with a live writer impossible: objects are listed first, then
markers, then records. A writer writes its marker before its first object and its
record before removing its marker, so every object listed is covered by a marker or a
record seen after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dumpsafe.errors import DumpsafeError
from dumpsafe.catalog import OBJECTS_PREFIX, RECORDS_PREFIX, id_from_record_key, objects_prefix, record_copy_key, record_key
from dumpsafe.manifest import write_note
from dumpsafe.pending import PENDING_PREFIX, Marker, marker_key, read_marker
from dumpsafe.storage.base import Store


@dataclass
class SweepReport:
    store: str
    removed: dict[str, int] = field(default_factory=dict)  # backup id -> objects removed (dead, uncommitted)
    committed: list[Marker] = field(default_factory=list)  # dead markers of writes that had committed
    finished_deletes: list[Marker] = field(default_factory=list)
    dead: list[Marker] = field(default_factory=list)  # dead create/copy markers without a record
    orphans: list[str] = field(default_factory=list)  # ids without record or marker, removed (full only)
    missing_records: list[str] = field(default_factory=list)  # record gone, its copy present (full only)
    aborted_uploads: int = 0
    temp_files: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.committed or self.finished_deletes or self.orphans or self.aborted_uploads
                     or self.temp_files)


def _id_of_object(key: str) -> str | None:
    if not key.startswith(OBJECTS_PREFIX):
        return None
    rest = key[len(OBJECTS_PREFIX) :]
    return rest.split("/", 1)[0] if "/" in rest else None


def remove_backup_objects(store: Store, backup_id: str) -> int:
    """Delete every object under ``objects/<id>/`` (the record copy last); how many."""
    keys = [o.key for o in store.list(objects_prefix(backup_id))]
    copy = record_copy_key(backup_id)
    keys.sort(key=lambda k: k == copy)
    for k in keys:
        store.delete(k)
    return len(keys)


def sweep(store: Store, now: datetime, *, full: bool = False) -> SweepReport:
    rep = SweepReport(store.name)
    rep.temp_files = store.sweep()
    objects: dict[str, list[str]] = {}
    if full:
        for o in store.list(OBJECTS_PREFIX):
            bid = _id_of_object(o.key)
            if bid:
                objects.setdefault(bid, []).append(o.key)
    markers = [m for m in (read_marker(store, o.key) for o in store.list(PENDING_PREFIX)) if m is not None]
    live = {m.backup_id for m in markers if m.alive(now, store.name)}
    records: set[str] = set()
    if full or len(live) < len(markers):  # listed after the markers (see above), only when needed
        records = {bid for bid in (id_from_record_key(o.key) for o in store.list(RECORDS_PREFIX)) if bid}
    for m in markers:
        if m.backup_id in live:
            continue
        if m.op == "delete":
            write_note(store, m.backup_id)  # so a catalog manifest never keeps listing it
            store.delete(record_copy_key(m.backup_id))
            store.delete(record_key(m.backup_id))
            remove_backup_objects(store, m.backup_id)
            rep.finished_deletes.append(m)
        elif m.backup_id in records:
            rep.committed.append(m)
        else:
            rep.removed[m.backup_id] = remove_backup_objects(store, m.backup_id)
            rep.dead.append(m)
        store.delete(marker_key(m.backup_id))
        objects.pop(m.backup_id, None)
    for u in store.unfinished(OBJECTS_PREFIX):
        bid = _id_of_object(u.key)
        if bid and bid not in live:
            try:
                store.abort_unfinished(u)
                rep.aborted_uploads += 1
            except DumpsafeError:
                pass
    for bid, keys in objects.items():
        if bid in records or bid in live:
            continue
        if record_copy_key(bid) in keys:
            rep.missing_records.append(bid)
            continue
        for k in keys:
            store.delete(k)
        rep.orphans.append(bid)
    return rep
