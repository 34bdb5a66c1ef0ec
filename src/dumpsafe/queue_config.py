"""The ``queue`` keys of the config: the control-plane PostgreSQL URL and its password.

Kept apart from queue.py so reading a config never imports the job engine. The password
comes from ``queue_password_env`` or ``queue_password_file`` (like a tenant's), never from
the URL: a URL ends up in process lists, logs and error text.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from dumpsafe.passwords import read_password

QUEUE = "dumpsafe"  # the procrastinate queue every dumpsafe job runs on


def check_queue_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path.strip("/"):
        raise ValueError("expected a URL like \"postgresql://dumpsafe@db.example.com:5432/dumpsafe_queue\" "
                         "(user, host and database name)")
    if parts.password is not None:
        raise ValueError("the queue URL must not carry a password; set queue_password_env or queue_password_file")
    return url


def queue_password(config: Any) -> str | None:
    """The control-plane database password from its env var or file (never echoed)."""
    return read_password("queue", config.queue_password_env, config.queue_password_file,
                         env_key="queue_password_env", file_key="queue_password_file")


def connect_kwargs(config: Any) -> dict[str, Any]:
    """psycopg connection arguments for the queue database (the password as a keyword, not in the URL)."""
    kw: dict[str, Any] = {"conninfo": config.queue, "application_name": "dumpsafe-queue"}
    pw = queue_password(config)
    if pw is not None:
        kw["password"] = pw
    return kw
