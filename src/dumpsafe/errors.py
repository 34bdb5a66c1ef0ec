"""One error hierarchy. Each class carries its CLI exit code and HTTP status.

Messages are single sentences a user can act on; they never contain secrets.
The CLI, REST and MCP fronts map these in one place each.
"""

from __future__ import annotations


class DumpsafeError(Exception):
    """Base class: a failure dumpsafe explains in one sentence."""

    exit_code = 1
    http_status = 500
    kind = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(DumpsafeError):
    """The caller asked for something malformed (bad ID, bad flag combination)."""

    exit_code = 2
    http_status = 400
    kind = "usage"


class ConfigError(UsageError):
    """The config file is missing, unreadable or invalid."""

    kind = "config"


class UnknownNameError(UsageError):
    """A tenant or store name that the config does not define (a usage mistake: exit 2)."""

    http_status = 404
    kind = "not_found"


class NotFoundError(DumpsafeError):
    """A tenant, store or backup does not exist (or is not visible to the caller)."""

    http_status = 404
    kind = "not_found"


class ConflictError(DumpsafeError):
    """The request collides with existing state (target database exists, lock held)."""

    http_status = 409
    kind = "conflict"


class RefusedError(DumpsafeError):
    """A destructive action was not confirmed."""

    exit_code = 1
    http_status = 409
    kind = "refused"


class IntegrityError(DumpsafeError):
    """Stored bytes do not match the checksum recorded at backup time."""

    http_status = 422
    kind = "integrity"


class DamagedRecord(IntegrityError):
    """A backup's record does not parse or does not match its own checksum."""


class BackupFailed(DumpsafeError):
    """A backup could not be made (database down, bad password, disk full)."""

    http_status = 502
    kind = "backup_failed"


class RestoreFailed(DumpsafeError):
    """A restore or drill failed; the target was left as it was."""

    http_status = 502
    kind = "restore_failed"


class ToolFailed(DumpsafeError):
    """A PostgreSQL client tool (pg_dump, pg_restore) would not start or failed outside the
    restore itself, e.g. inside a tenant's exec target. Raised by restores and drills; a backup
    says ``backup_failed``. A drill that fails so records no verdict on the backup."""

    http_status = 502
    kind = "tool_failed"


class DatabaseUnavailable(DumpsafeError):
    """The PostgreSQL server cannot be reached or refuses the login (down, wrong password, no such database).

    Raised wherever dumpsafe connects (backup, restore, drill, dry run); a backup reports it as
    ``backup_failed`` (see ``Service.create``), everything else under its own name.
    """

    http_status = 503
    kind = "database_unavailable"


class SqlFailed(DumpsafeError):
    """A statement failed on the server; ``sqlstate`` says which kind (e.g. 55006 object in use)."""

    http_status = 502
    kind = "sql_failed"

    def __init__(self, message: str, sqlstate: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate


class WrongKey(UsageError):
    """The stored bytes are intact but the age identity given cannot decrypt them: a usage error, not a verdict."""


class StoreError(DumpsafeError):
    """A store could not be read or written."""

    http_status = 502
    kind = "store"

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class ObjectMissing(StoreError, NotFoundError):
    """An object a record points to is not in the store."""

    http_status = 404
    kind = "not_found"


class AuthError(DumpsafeError):
    """No token, a bad token or an expired token."""

    http_status = 401
    kind = "unauthorized"


class ForbiddenError(DumpsafeError):
    """The token lacks the scope the action needs."""

    http_status = 403
    kind = "forbidden"


class RateLimited(DumpsafeError):
    """Too many failed authentications from one client address: wait ``retry_after`` seconds."""

    http_status = 429
    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


def first_line(e: BaseException, default: str | None = None) -> str:
    """The first line of an exception's text (libraries run on with hints and context), else ``default`` or its type's name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else (default or type(e).__name__)
