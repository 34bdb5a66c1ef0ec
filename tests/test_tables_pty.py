"""Tables fit the terminal (like `restic snapshots`): run the real CLI on a pseudo-terminal of
80, 120 and 200 columns. No line is wider than the terminal, headers are whole words on
one line, IDs are never cut, columns are dropped least useful first; --wide shows all."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios

import pytest

from dumpsafe.auth import READ, TokenStore

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RECORD_HEADERS = ["ID", "TENANT", "DATABASE", "CREATED (UTC)", "SIZE", "SHA-256", "STORE", "VERIFIED", "NOTE"]


def on_pty(env, cols: int, *args: str) -> tuple[int, list[str]]:
    """Run `dumpsafe ARGS` with stdout on a pty of `cols` columns; return its lines (no colour)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    e = env.subprocess_env()
    for k in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR"):
        e.pop(k, None)
    e["TERM"] = "xterm-256color"
    proc = subprocess.Popen(env.cli_argv(*args), stdin=slave, stdout=slave, stderr=subprocess.PIPE, env=e)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    proc.stderr.read()
    proc.wait(timeout=60)
    text = ANSI.sub("", b"".join(chunks).decode()).replace("\r", "")
    return proc.returncode, [line for line in text.split("\n") if line.strip()]


def headers(line: str) -> list[str]:
    return [h for h in re.split(r"\s{2,}", line.strip()) if h]


@pytest.fixture
def listed(env):
    ids = []
    for extra in ([], ["--pin", "--label", "nightly"]):
        r = env.cli("backup", "create", "acme", "--json", *extra)
        assert r.code == 0, r.err
        ids.append(r.json()[0]["id"])
    assert env.cli("backup", "verify", ids[0]).code == 0
    return ids


@pytest.mark.parametrize("cols", [80, 120, 200])
def test_backup_list_fits(env, listed, cols):
    code, lines = on_pty(env, cols, "backup", "list")
    assert code == 0
    assert all(len(line) <= cols for line in lines), lines
    shown = headers(lines[0])
    assert shown and all(h in RECORD_HEADERS for h in shown), shown  # whole headers, none wrapped
    assert shown == [h for h in RECORD_HEADERS if h in shown]  # in their order
    assert len(lines) == 1 + len(listed)  # one line per backup: nothing wrapped
    for bid in listed:
        assert any(line.startswith(bid + " ") for line in lines[1:]), bid  # IDs whole
    assert {"ID", "SIZE"} <= set(shown)
    if cols == 200:
        assert shown == RECORD_HEADERS
    if cols == 80:  # what the ID already says goes first
        assert "TENANT" not in shown and "DATABASE" not in shown
        assert "CREATED (UTC)" in shown


def test_backup_list_wide_shows_everything(env, listed):
    code, lines = on_pty(env, 80, "backup", "list", "--wide")
    assert code == 0 and headers(lines[0]) == RECORD_HEADERS and len(lines) == 3
    assert "pinned nightly" in lines[1] + lines[2]


@pytest.mark.parametrize("cols", [80, 120])
def test_prune_status_and_tokens_fit(env, listed, cols):
    env.write_config(tenant_extra='retention = { last = 1 }\nmax_age = "26h"\nschedule = "0 30 2 * * *"')
    code, lines = on_pty(env, cols, "prune", "--dry-run")
    assert code == 0 and all(len(line) <= cols for line in lines), lines
    assert headers(lines[0])[0] == "ID" and "KEPT BY" in headers(lines[0])
    text = "\n".join(lines)
    assert "pinned" in text and "newest" in text and "n…" not in text
    for bid in listed:
        assert bid in text

    code, lines = on_pty(env, cols, "status")
    assert code == 0 and all(len(line) <= cols for line in lines), lines
    assert {"TENANT", "DATABASE", "LAST SUCCESS", "LAST FAILURE"} <= set(headers(lines[0]))
    assert all(h in {"TENANT", "DATABASE", "LAST SUCCESS", "LAST FAILURE", "LAST DRILL", "RESTORABLE", "NEXT RUN (UTC)", "MAX AGE"}
               for h in headers(lines[0]))

    store = TokenStore(env.state_dir)
    for name in ("ci-reader", "grafana"):
        store.create(tenant="acme", scopes=[READ], name=name)
    code, lines = on_pty(env, cols, "token", "list")
    assert code == 0 and all(len(line) <= cols for line in lines), lines
    assert {"ID", "TENANT", "SCOPES"} <= set(headers(lines[0])) and len(lines) == 3
