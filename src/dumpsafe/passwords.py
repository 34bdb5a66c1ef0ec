"""A password from an environment variable or a file: the one lookup behind tenants, drill
servers and the queue database. Never echoed; a missing one is one sentence naming the fix."""

from __future__ import annotations

import os
from pathlib import Path

from dumpsafe.errors import ConfigError


def read_password(owner: str, env: str | None, file: Path | None, *, env_key: str = "password_env",
                  file_key: str = "password_file") -> str | None:
    """``env`` names the variable, ``file`` the file (its first line); ``owner`` ("tenant 'acme'") and the
    config keys go into the error. None when neither is configured."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{owner}: environment variable {env} is not set (export it or use {file_key})")
        return value
    if file:
        try:
            return Path(file).read_text().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"{owner}: cannot read {file_key} {file} ({e.strerror}); fix the path or its permissions") from None
    return None
