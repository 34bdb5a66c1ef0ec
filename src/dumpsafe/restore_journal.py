"""The restore journal: what a restore was about to do, so an interrupted one is finished or undone.

Before each step that changes the live side a restore writes its intent to
``<state_dir>/journal/restore-<tenant>-<db>.json`` (0600 in a 0700 directory, fsynced,
replaced by rename): the names it uses (staging and replaced databases, staged uploads
tree and its inode) and the step it is about to take::

    atomic: staged -> refuse -> rename -> uploads -> finish     (then the journal is removed)
    new:    staged -> rename -> uploads
    clean:  staged -> clean -> properties -> uploads

The journal is replayed under the restore's own lock (``locks/restore-<tenant>-<db>.lock``),
so a live restore is never touched: by the next ``restore``, ``backup create`` or drill of
that tenant, by ``dumpsafe recover`` (``serve`` runs it at start), and in the restoring
process itself when a step fails. The rule, decided from the database server's state, not
from the step alone:

- the database swap happened (atomic: the replaced name exists and the staging name does
  not; new: the staging name is gone; clean: pg_restore committed, i.e. the step is past
  ``clean``, or, killed inside it, the target's contents now match the backup's counts):
  **roll forward** to the backup: swap the staged uploads tree in (unless it already is, by
  inode), give the template flag, allow connections, drop the replaced database (``--keep-old``:
  keep it, connections allowed);
- it did not: **undo**: allow connections on the target again, drop the staging database,
  remove the staged uploads tree.

Either way the database and the uploads tree are again a matching pair, the target accepts
connections, and no leftover stays. Leftovers without a journal (spool directories, staging
trees and ``_dsstage_``/``_dsold_`` databases claimed by nobody) are swept by ``recover``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from dumpsafe import recovery
from dumpsafe.engines import databases as dbs
from dumpsafe.engines import files
from dumpsafe.engines.dbspec import parse_spec
from dumpsafe.errors import ConflictError, DumpsafeError, first_line
from dumpsafe.fsutil import fsync_dir, open_private, private_dir
from dumpsafe.models import encode_db

if TYPE_CHECKING:
    from dumpsafe.service import BackupService

log = logging.getLogger(__name__)
JOURNAL_DIR = "journal"


def journal_path(state_dir: Path, tenant: str, database: str) -> Path:
    return Path(state_dir) / JOURNAL_DIR / f"restore-{tenant}-{encode_db(database)}.json"


def lock_path(state_dir: Path, tenant: str, database: str) -> Path:
    return Path(state_dir) / "locks" / f"restore-{tenant}-{encode_db(database)}.lock"


@contextmanager
def restore_lock(state_dir: Path, tenant: str, database: str, *, wait: bool = False) -> Iterator[None]:
    """The lock every restore of ``tenant``/``database`` holds; ConflictError when it is taken."""
    path = lock_path(state_dir, tenant, database)
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise ConflictError(f"another restore into database {database!r} of tenant {tenant!r} is running") from None
        yield
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open_private(tmp) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class Journal:
    """One restore's journal; ``step`` writes the next intent before the step is taken."""

    def __init__(self, state_dir: Path, **fields: Any):
        self.data: dict[str, Any] = {"version": 1, "pid": os.getpid(), "step": None, **fields}
        self.path = journal_path(state_dir, fields["tenant"], fields["database"])
        self.written = False

    def step(self, step: str, **changes: Any) -> None:
        self.data.update(changes, step=step)
        _write_durable(self.path, json.dumps(self.data, sort_keys=True).encode())
        self.written = True

    def remove(self) -> None:
        if self.written:
            self.path.unlink(missing_ok=True)
            fsync_dir(self.path.parent)
            self.written = False


# ---- replay ---------------------------------------------------------------------------------
def _db_swapped(svc: "BackupService", s: Any, e: dict[str, Any]) -> bool:
    mode, step = e["mode"], e.get("step")
    if step in (None, "load", "staged"):  # load: pg_restore into the staging database (atomic/new)
        return False
    if step in ("uploads", "finish", "properties"):  # written only after the swap (or clean's commit)
        return True
    if mode == "atomic":
        return bool(e.get("old")) and dbs.database_exists(s, e["old"]) and not dbs.database_exists(s, e["staging"])
    if mode == "new":
        return not dbs.database_exists(s, e["staging"]) and dbs.database_exists(s, e["database"])
    return _clean_committed(svc, e)  # step "clean": killed while pg_restore ran, or right after it returned


def _clean_committed(svc: "BackupService", e: dict[str, Any]) -> bool:
    """Killed while pg_restore --clean --single-transaction ran: end its session (an open
    transaction rolls back), then the target's contents say whether it had committed."""
    from dumpsafe.compare import check_contents
    from dumpsafe.engines.sqlsession import open_session
    from psycopg import sql

    target = svc.pg_target(e["tenant"])
    with dbs.admin(target, e["database"]) as s:
        q = sql.SQL("SELECT pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity WHERE application_name = {}")
        deadline = time.monotonic() + 30
        while s.rows(q.format(sql.Literal(e["appname"]))) and time.monotonic() < deadline:
            time.sleep(0.1)
    record = svc.get(e["backup_id"], e.get("store"))
    with open_session(target, e["database"]) as s:
        _, mismatch = check_contents(record, s, extra_tables_ok=True)
    return not mismatch


def _uploads_forward(e: dict[str, Any], *, locked: bool) -> str:
    staged, live = e.get("uploads_staged"), e.get("uploads_live")
    if not staged:
        return ""
    staged_p, live_p = Path(staged), Path(live)
    with _staging_claim(staged_p, locked):
        try:
            already = os.stat(live_p).st_ino == e.get("staged_ino")
        except FileNotFoundError:
            already = False
        if not already:
            if not staged_p.is_dir():
                return f"; the staged uploads tree {staged} is gone, so {live} was not replaced"
            files.swap_in(staged_p, live_p)  # removes the tree it replaced
        else:  # swapped before the kill: the staging name (exchange) or -old (two renames) holds the old tree
            files.remove_tree(staged_p)
        files.remove_tree(Path(f"{staged}-old"))
    return f", uploads tree {live} from the backup"


def _uploads_undo(e: dict[str, Any], *, locked: bool) -> None:
    staged, live = e.get("uploads_staged"), e.get("uploads_live")
    if not staged:
        return
    staged_p, old = Path(staged), Path(f"{staged}-old")
    with _staging_claim(staged_p, locked):
        if old.exists() and not os.path.lexists(live):  # killed between the two renames of a fallback swap
            os.rename(old, live)
        files.remove_tree(staged_p)
        files.remove_tree(old)


@contextmanager
def _staging_claim(staged: Path, locked: bool) -> Iterator[None]:
    """The staged tree's flock (held already when the restoring process resolves its own journal)."""
    lock = Path(f"{staged}.lock")
    if locked or not lock.exists():
        yield
        return
    fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
        lock.unlink(missing_ok=True)
    finally:
        os.close(fd)


def resolve(svc: "BackupService", e: dict[str, Any], *, in_process: bool = False) -> tuple[bool, str]:
    """Finish or undo one journaled restore (the caller holds its restore lock): whether it
    was rolled forward, and a report line."""
    target = svc.pg_target(e["tenant"])
    db, staging, old = e["database"], e.get("staging"), e.get("old")
    what = f"restore of backup {e['backup_id']} into database {db!r} (tenant {e['tenant']!r}, {e['mode']})"
    forward = False
    with dbs.admin(target, *(n for n in (db, staging, old) if n)) as s:
        forward = _db_swapped(svc, s, e)
        if forward:
            up = _uploads_forward(e, locked=in_process)
            spec = parse_spec(e.get("database_sql") or [])
            if e["mode"] == "clean":
                dbs.replace_properties(s, db, spec, owner=e.get("owner"))
            else:
                dbs.finish(s, db, spec)
            dbs.allow_connections(s, db)
            if old and dbs.database_exists(s, old):
                if e.get("keep_old"):
                    dbs.allow_connections(s, old)
                else:
                    dbs.drop_now(s, old)
            line = f"{what}: rolled forward to the backup (database{up})"
        else:
            if e["mode"] == "atomic" and dbs.database_exists(s, db):
                dbs.allow_connections(s, db)
            if staging and dbs.database_exists(s, staging):
                dbs.drop_now(s, staging)
            _uploads_undo(e, locked=in_process)
            line = f"{what}: undone (the database and uploads tree are as they were)"
    return forward, line


def _pending(state_dir: Path, tenant: str | None) -> list[Path]:
    d = Path(state_dir) / JOURNAL_DIR
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("restore-*.json") if tenant is None or p.name.startswith(f"restore-{tenant}-"))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def replay(svc: "BackupService", tenant: str | None = None, *, held: tuple[str, str] | None = None,
           log_notes: bool = True) -> list[str]:
    """Resolve every journal left by a dead restore (of ``tenant``, or all); report lines.

    A journal whose restore lock is taken belongs to a live restore and is left alone;
    ``held`` names the tenant/database whose lock the caller already holds. A journal that
    cannot be resolved now (server down) stays for the next command, with a warning. The lines
    are logged too unless ``log_notes`` is off (``recover`` prints them itself)."""
    notes: list[str] = []
    for path in _pending(svc.state_dir, tenant):
        e = _read(path)
        if e is None:
            continue
        try:
            key = (e["tenant"], e["database"])
            if held == key:
                notes.append(resolve(svc, e)[1])
            else:
                with restore_lock(svc.state_dir, *key):
                    if not path.exists():
                        continue
                    notes.append(resolve(svc, e)[1])
            path.unlink(missing_ok=True)
        except ConflictError:
            continue  # a live restore holds it
        except (DumpsafeError, OSError, KeyError) as err:
            msg = getattr(err, "message", None) or str(err)
            notes.append(f"warning: the interrupted restore in {path.name} could not be resolved yet ({msg})")
        except Exception as err:  # a database error: the journal stays for the next command
            notes.append(f"warning: the interrupted restore in {path.name} could not be resolved yet "
                         f"({first_line(err)})")
    spool = sweep_spool(spool_root(svc.config))  # a dead restore's spool (cheap: one directory listing)
    if spool:
        notes.append(f"{len(spool)} spool director{'y' if len(spool) == 1 else 'ies'} of dead restores removed")
    for n in notes if log_notes else ():
        log.warning("%s", n)
    return notes


# ---- spool directories ---------------------------------------------------------------------
SPOOL_PREFIX = "restore-"


def spool_root(config: Any) -> Path:
    return Path(config.spool_dir or (Path(config.state_dir) / "spool"))


@contextmanager
def spool_dir(config: Any) -> Iterator[Path]:
    """A fresh 0700 spool directory, claimed by an flock on ``<dir>.lock`` (taken before the
    directory exists) while it is used; the ones of dead processes are swept first."""
    root = spool_root(config)
    private_dir(root)
    sweep_spool(root)
    d = root / f"{SPOOL_PREFIX}{secrets.token_hex(6)}"
    lock = Path(f"{d}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        d.mkdir(mode=0o700)
        yield d
    finally:
        files.remove_tree(d)
        lock.unlink(missing_ok=True)
        os.close(fd)


def sweep_spool(root: Path) -> list[Path]:
    """Remove spool directories whose process is gone (their lock is free, or they have none)."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for d in sorted(root.glob(f"{SPOOL_PREFIX}*")):
        if d.name.endswith(".lock") or not d.is_dir():
            continue
        lock = Path(f"{d}.lock")
        fd = None
        try:
            if lock.exists():
                fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # in use
            files.remove_tree(d)
            lock.unlink(missing_ok=True)
            removed.append(d)
        except FileNotFoundError:
            continue  # its owner finished meanwhile
        finally:
            if fd is not None:
                os.close(fd)
    for lock in root.glob(f"{SPOOL_PREFIX}*.lock"):  # a lock left without its directory
        if not Path(str(lock)[: -len(".lock")]).exists():
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not Path(str(lock)[: -len(".lock")]).exists():
                    lock.unlink(missing_ok=True)
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
    return removed


# ---- dumpsafe recover ------------------------------------------------------------------------
def recover_step(svc: "BackupService") -> list[str]:
    """``recovery.STEPS`` entry: replay journals, then sweep spool, staging trees and orphan databases."""
    notes = replay(svc, log_notes=False)  # recover prints its report's lines itself
    for name, t in svc.config.tenants.items():
        if t.uploads is not None and Path(t.uploads).parent.is_dir():
            staged = files.sweep_staging(Path(os.path.realpath(t.uploads)))
            if staged:
                notes.append(f"tenant {name!r}: {len(staged)} uploads staging tree(s) of dead restores removed")
        try:
            target = svc.pg_target(name)
        except DumpsafeError:
            continue
        dropped = dbs.sweep_orphans(target)
        if dropped:
            notes.append(f"tenant {name!r}: dropped databases of dead restores or drills: {', '.join(dropped)}")
    return notes


recovery.STEPS.append(recover_step)
