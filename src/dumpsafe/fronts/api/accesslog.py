"""uvicorn's logging for ``dumpsafe serve``, with access lines that never carry a query string
(a token or another secret pasted into a URL must not land in the server log)."""

from __future__ import annotations

import copy
import logging
from typing import Any


class NoQueryString(logging.Filter):
    """Cut ``?...`` from the path of uvicorn's access lines (args: client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?<query omitted>", *args[3:])
        return True


def log_config() -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg.setdefault("filters", {})["no_query"] = {"()": NoQueryString}
    cfg["handlers"]["access"].setdefault("filters", []).append("no_query")
    return cfg
