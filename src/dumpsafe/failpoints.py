"""Failpoints: named crash points at the step boundaries of multi-step operations.

A failpoint does nothing unless the environment lists it, so tests can kill a process
exactly between two steps instead of hoping a random kill lands there (after TiKV's
``fail`` crate)::

    DUMPSAFE_FAILPOINTS="backup.after_uploads_commit=kill"
    DUMPSAFE_FAILPOINTS="copy.after_record_copy=error,prune.after_delete=kill"

Actions: ``kill`` sends SIGKILL to the own process (nothing runs after it: no ``finally``,
no audit line), ``error`` raises :class:`FailpointError` (a clean, audited failure),
``stop`` sends SIGSTOP to the own process (a test resumes it with SIGCONT: a writer
frozen mid-step while another command runs).

API for every operation (the restore journal adds its points the same way)::

    RESTORE = register("restore", {"after_refuse": "connections refused, before the rename"})
    failpoint("restore.after_refuse")

Every point is declared once, here, so tests iterate over every point of an operation
(``points("backup")``) and a typo in the environment is an error instead of a silently
skipped crash. When the variable is unset a failpoint costs one lookup in ``os.environ``.
"""

from __future__ import annotations

import os
import signal

from dumpsafe.errors import DumpsafeError, UsageError

ENV = "DUMPSAFE_FAILPOINTS"
ACTIONS = ("kill", "error", "stop")

POINTS: dict[str, str] = {}  # name -> where it sits (documentation and tests)
_parsed: tuple[str, dict[str, str]] = ("", {})


class FailpointError(DumpsafeError):
    """Raised by a failpoint whose action is ``error``."""


def register(operation: str, points: dict[str, str]) -> tuple[str, ...]:
    """Declare the failpoints of ``operation`` (``{"after_x": "what has happened"}``);
    returns their full names (``operation.after_x``) in step order."""
    names = []
    for short, doc in points.items():
        name = f"{operation}.{short}"
        POINTS[name] = doc
        names.append(name)
    return tuple(names)


def _active(spec: str) -> dict[str, str]:
    global _parsed
    if _parsed[0] == spec:
        return _parsed[1]
    out: dict[str, str] = {}
    for item in spec.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, action = item.partition("=")
        name, action = name.strip(), (action.strip() or "kill")
        if action not in ACTIONS:
            raise UsageError(f"{ENV}: unknown action {action!r} for {name!r} (use {' or '.join(ACTIONS)})")
        out[name] = action
    _parsed = (spec, out)
    return out


def failpoint(name: str) -> None:
    """Crash here if ``$DUMPSAFE_FAILPOINTS`` names this point; otherwise do nothing."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    active = _active(spec)
    unknown = [n for n in active if n not in POINTS]
    if unknown:
        raise UsageError(f"{ENV}: unknown failpoint {unknown[0]!r} (known: {', '.join(sorted(POINTS))})")
    action = active.get(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif action == "error":
        raise FailpointError(f"failpoint {name} triggered ({ENV})")


def points(operation: str) -> list[str]:
    """Every registered failpoint of ``operation``, in declaration (step) order."""
    return [n for n in POINTS if n.startswith(operation + ".")]


BACKUP = register("backup", {
    "after_pending": "pending marker written, no object yet",
    "after_uploads_commit": "uploads object committed, dump not started",
    "after_globals_commit": "globals object committed, dump not started",
    "after_dump_commit": "dump object committed, no record",
    "after_record_copy": "record copy beside the objects written, record not yet",
    "after_record_commit": "record written (committed), audit line not yet",
    "after_audit": "audit line written, pending marker not yet removed",
})
COPY = register("copy", {
    "after_pending": "pending marker in the target store written, no object yet",
    "after_object_commit": "first object committed in the target store",
    "after_record_copy": "record copy in the target written, record not yet",
    "after_record_commit": "the copy's record written, source's copies list not yet updated",
})
DELETE = register("delete", {
    "after_pending": "pending (delete) marker written, nothing removed",
    "after_record_copy_removed": "record copy removed, record still listed",
    "after_record_removed": "record removed (no longer listed), objects remain",
    "after_object_removed": "first object removed",
})
PRUNE = register("prune", {
    "after_delete": "first doomed backup deleted, the others not yet",
})
STORE = register("store", {
    "after_multipart_start": "an S3 multipart upload was started (in flight on the server)",
})
RESTORE = register("restore", {
    "after_load": "atomic/new: journal at 'load'; pg_restore into the staging database done and the streamed "
                  "dump's hash checked, contents not yet counted; nothing live touched",
    "after_staged": "journal written: staging database restored and checked, uploads staged; nothing live touched",
    "after_refuse": "atomic: connections to the target refused, before the rename",
    "after_rename": "atomic/new: database renamed into place, uploads tree not yet swapped",
    "after_clean_restore": "clean: pg_restore --clean committed, the backup's properties not yet given",
    "after_properties": "clean: properties given and contents checked, uploads tree not yet swapped",
    "after_uploads_swap": "uploads tree swapped in; atomic: the replaced database not yet dropped",
    "after_drop_old": "atomic: the replaced database dropped (or kept), journal not yet removed",
})
RESTORE_SELECTIVE = register("restore_selective", {  # issue 19 (restore_selective.py)
    "after_staged": "selected tables restored and counted in the staging database (moved to the new schema)",
    "after_copy": "--into-schema: the schema committed in the live database, staging not yet dropped",
})
