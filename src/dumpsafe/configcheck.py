"""``dumpsafe config check``: is this config ready to make backups?

The config itself has been validated by loading it. Then, per tenant: its password is
readable, its server answers (directly or through ``exec``), a ``pg_dump`` of the server's
major version or newer is found (inside the exec target when there is one), the databases
it lists exist, and its uploads tree is a readable directory. Per store: it is reachable
and writable (a small probe object is written, read back and deleted). With a ``queue``:
the control-plane PostgreSQL answers and the job queue's tables are applied. Each check is
one row; nothing else is changed.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Callable

from dumpsafe.engines.sqlsession import open_session
from dumpsafe.errors import DumpsafeError

PROBE_PREFIX = "dumpsafe-check/"
DATABASES_SQL = "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname"


@dataclass(frozen=True)
class Check:
    check: str  # what was tested
    subject: str  # tenant NAME, store NAME
    ok: bool
    detail: str

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run(subject: str, check: str, fn: Callable[[], str]) -> Check:
    try:
        return Check(check, subject, True, fn())
    except DumpsafeError as e:
        return Check(check, subject, False, e.message)
    except OSError as e:
        return Check(check, subject, False, f"{e.strerror or e}")


def check_tenant(service: Any, name: str) -> list[Check]:
    tcfg = service.config.tenant(name)
    subject = f"tenant {name}"
    out: list[Check] = []
    target_box: list[Any] = []

    def password() -> str:
        target_box.append(service.pg_target(name))
        if tcfg.password_env:
            return f"${tcfg.password_env} is set"
        return f"{tcfg.password_file} is readable" if tcfg.password_file else "no password configured"

    out.append(_run(subject, "password", password))
    if not target_box:
        return out
    target = target_box[0]
    server: dict[str, Any] = {}

    def connect() -> str:
        with open_session(target, "postgres") as s:
            version, num = s.rows("SELECT current_setting('server_version'), current_setting('server_version_num')::int")[0]
            server["major"] = int(num) // 10000
            server["databases"] = [r[0] for r in s.rows(DATABASES_SQL)]
        via = f" through {target.exec_prefix[0]}" if target.exec_prefix else ""
        return f"PostgreSQL {version} at {target.where()}{via}"

    out.append(_run(subject, "connection", connect))
    if "major" in server:
        def client() -> str:
            path, version = service.pg_tool(target, "pg_dump", server["major"])
            return f"{path} {version} fits server {server['major']}"

        out.append(_run(subject, "pg_dump version", client))

        def databases() -> str:
            wanted = tcfg.databases
            if wanted is None:
                return f"every database ({len(server['databases'])}: {', '.join(server['databases'])})"
            missing = [d for d in wanted if d not in server["databases"]]
            if missing:
                raise DumpsafeError(f"database {missing[0]!r} does not exist at {target.where()} "
                                    f"(fix tenants.{name}.databases)")
            return ", ".join(wanted)

        out.append(_run(subject, "databases", databases))
    if tcfg.uploads is not None:
        def uploads() -> str:
            path = tcfg.uploads
            if not path.is_dir():
                raise DumpsafeError(f"{path} is not a directory (fix tenants.{name}.uploads)")
            if not os.access(path, os.R_OK | os.X_OK):
                raise DumpsafeError(f"{path} is not readable by this user (fix its permissions)")
            return f"{path} is a readable directory"

        out.append(_run(subject, "uploads", uploads))
    return out


def check_store(service: Any, name: str) -> Check:
    def probe() -> str:
        st = service.store(name)
        key = PROBE_PREFIX + secrets.token_hex(8)
        data = secrets.token_bytes(32)
        st.put_bytes(key, data)
        try:
            if st.get_bytes(key) != data:
                raise DumpsafeError(f"store {name!r}: the probe object read back differs from what was written")
        finally:
            st.delete(key)
        return f"{st.url()} is reachable and writable"

    return _run(f"store {name}", "read/write", probe)


def check_queue(config: Any) -> Check:
    """With ``queue`` set: the control-plane database answers and holds the job tables."""
    def probe() -> str:
        from dumpsafe.queue import JobQueue

        queue = JobQueue(config)
        with queue.connect() as c:
            version = c.execute("SELECT current_setting('server_version')").fetchone()[0]
            where = f"database {c.info.dbname!r} at {c.info.host}:{c.info.port}"
            missing = [t for t in ("procrastinate_jobs", "procrastinate_workers", "dumpsafe_job_results")
                       if c.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is None]
        if missing:
            raise DumpsafeError(f"the job queue's schema is not applied in {where} (table {missing[0]} is missing); "
                                f"start 'dumpsafe worker' or 'dumpsafe serve' once with this config: either applies it")
        return f"PostgreSQL {version}, {where}: the job tables are there"

    return _run("queue", "control-plane database", probe)


def run_checks(service: Any) -> list[Check]:
    checks = [c for name in sorted(service.config.tenants) for c in check_tenant(service, name)]
    checks += [check_store(service, name) for name in sorted(service.config.stores)]
    if getattr(service.config, "queue", None):
        checks.append(check_queue(service.config))
    return checks
