"""Loading the config: found by ``--config PATH``, else ``$DUMPSAFE_CONFIG``, else
``./dumpsafe.toml``; validated against the model in ``config`` before any work, with one
error sentence naming the file and key. Relative paths in the file are relative to the
file's own directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dumpsafe.config import Config, LocalStoreConfig
from dumpsafe.errors import ConfigError

_FRIENDLY = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "missing": "required key is missing",
    "extra_forbidden": "unknown key (check the spelling against the documentation)",
    "union_tag_invalid": "kind must be one of local, s3, gcs",
    "union_tag_not_found": "kind is required (local, s3 or gcs)",
    "literal_error": "unexpected value",
}


def _format_error(path: Path, err: ValidationError) -> str:
    e = err.errors()[0]
    loc_parts: list[str] = []
    for part in e["loc"]:
        # discriminated unions insert the tag ("local", "s3") into the location
        if isinstance(part, str) and part in ("local", "s3", "gcs") and loc_parts and loc_parts[-2:-1] == ["stores"]:
            continue
        if isinstance(part, int):
            loc_parts.append(f"[{part}]")
        else:
            loc_parts.append(str(part))
    if e["type"].startswith("union_tag"):
        loc_parts.append("kind")
    loc = ".".join(loc_parts).replace(".[", "[")
    msg = _FRIENDLY.get(e["type"])
    if msg is None:
        msg = e["msg"]
        msg = re.sub(r"^(Value|Assertion) error, ", "", msg)
        if e["type"] == "greater_than_equal":
            msg = f"must be at least {e['ctx']['ge']}"
        elif e["type"] == "less_than_equal":
            msg = f"must be at most {e['ctx']['le']}"
    return f"{path}: {loc}: {msg}" if loc else f"{path}: {msg}"


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("DUMPSAFE_CONFIG")
    if env:
        return Path(env)
    return Path("dumpsafe.toml")


def _resolve(base: Path, p: Path | None) -> Path | None:
    if p is None:
        return None
    p = p.expanduser()
    return p if p.is_absolute() else (base / p)


def load_config(explicit: str | os.PathLike[str] | None = None, *, check_notify: bool = True) -> Config:
    """Load and validate the config file, or raise ConfigError naming the file and key."""
    path = config_path(explicit)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (create it, pass --config PATH or set DUMPSAFE_CONFIG)"
        ) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    return config_from_dict(data, path, check_notify=check_notify)


def config_from_dict(data: dict[str, Any], path: Path, *, check_notify: bool = True) -> Config:
    try:
        cfg = Config.model_validate(data, context={"check_notify": check_notify})
    except ValidationError as e:
        raise ConfigError(_format_error(path, e)) from None
    base = path.resolve().parent
    stores = {
        name: (s.model_copy(update={"path": _resolve(base, s.path)}) if isinstance(s, LocalStoreConfig) else s)
        for name, s in cfg.stores.items()
    }
    tenants = {
        name: t.model_copy(
            update={
                "uploads": _resolve(base, t.uploads),
                "password_file": _resolve(base, t.password_file),
                "identity_file": _resolve(base, t.identity_file),
                "pg_bin_dir": _resolve(base, t.pg_bin_dir),
            }
        )
        for name, t in cfg.tenants.items()
    }
    drill_servers = {
        name: d.model_copy(update={"password_file": _resolve(base, d.password_file), "pg_bin_dir": _resolve(base, d.pg_bin_dir)})
        for name, d in cfg.drill_servers.items()
    }
    return cfg.model_copy(
        update={
            "spool_dir": _resolve(base, cfg.spool_dir),
            "queue_password_file": _resolve(base, cfg.queue_password_file),
            "drill_servers": drill_servers,
            "state_dir": _resolve(base, cfg.state_dir),
            "pg_bin_dir": _resolve(base, cfg.pg_bin_dir),
            "stores": stores,
            "tenants": tenants,
            "source": path,
        }
    )
