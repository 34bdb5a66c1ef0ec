"""`dumpsafe serve` and `dumpsafe token create` as real processes: the secret travels through
stdout and an env var only, and appears in no log line and no file."""

from __future__ import annotations

import importlib.util
import subprocess
import time

import httpx

from live import free_port


def test_serve_answers_with_a_cli_made_token_and_logs_no_secret(env):
    proc_env = env.subprocess_env()
    made = subprocess.run(env.cli_argv("token", "create", "--tenant", "acme", "--scope", "backups:read"),
                          env=proc_env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    env.service().create("acme", uploads=False)

    port = free_port()
    server = subprocess.Popen(env.cli_argv("serve", "--port", str(port)), env=proc_env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.1)
        r = httpx.get(url + "/v1/backups", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200 and [b["tenant"] for b in r.json()] == ["acme"]
        assert httpx.get(url + "/v1/backups", headers={"Authorization": "Bearer " + token[:-1] + "x"}).status_code == 401
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    assert server.returncode in (0, -15) and "Application shutdown complete" in log, log  # uvicorn re-raises SIGTERM
    assert "GET /v1/backups" in log  # the access log ran
    if importlib.util.find_spec("dumpsafe.scheduler"):
        assert "scheduler started" in log and "scheduler stopped" in log
    assert token not in log and token.split("_", 2)[2] not in log
    for path in env.state_dir.rglob("*"):
        if path.is_file():
            assert token.split("_", 2)[2].encode() not in path.read_bytes(), path
