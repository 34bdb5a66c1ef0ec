"""The demo's runner: runs the real CLI as a user would and shows each command and its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx
from rich.console import Console
from rich.rule import Rule

from dumpsafe.devcluster import Cluster, free_port

PASSWORD_ENV = "DEMO_PGPASSWORD"


class Demo:
    def __init__(self, workdir: Path, cluster: Cluster):
        self.workdir = workdir
        self.cluster = cluster
        self.console = Console()
        self.config = workdir / "dumpsafe.toml"
        self.env = dict(os.environ, **{PASSWORD_ENV: cluster.password})
        self.env.pop("DUMPSAFE_CONFIG", None)

    def step(self, title: str) -> None:
        self.console.print(Rule(f"[bold]{title}"))

    def run(self, *args: str, expect: int = 0, capture_json: bool = False, show: bool = True, config: Path | None = None,
            env: dict[str, str] | None = None):
        """Run the real CLI as a user would, showing the command (and any extra environment) and its output."""
        if show:
            shown = f"--config {config.relative_to(self.workdir)} " if config else ""
            extra = "".join(f"{k}={v} " for k, v in (env or {}).items())
            self.console.print(f"[bold cyan]$ {extra}dumpsafe {shown}{' '.join(args)}[/]", highlight=False)
        argv = [sys.executable, "-m", "dumpsafe", "--config", str(config or self.config), *args]
        proc = subprocess.run(argv, env={**self.env, **(env or {})}, cwd=self.workdir, text=True, capture_output=True)
        if show:
            if proc.stdout:
                sys.stdout.write(proc.stdout)
            if proc.stderr:
                sys.stdout.write(proc.stderr)
            sys.stdout.flush()
        if proc.returncode != expect:
            raise SystemExit(f"demo: 'dumpsafe {' '.join(args)}' exited {proc.returncode}, expected {expect}")
        return json.loads(proc.stdout) if capture_json else proc

    def write_config(self, extra: str = "") -> None:
        self.config.write_text(
            f"""# dumpsafe demo configuration
state_dir = ".dumpsafe"

[stores.local]
kind = "local"
path = "backups"

[tenants.demo]
host = "127.0.0.1"
port = {self.cluster.port}
user = "postgres"
password_env = "{PASSWORD_ENV}"
databases = ["app"]
uploads = "uploads"
store = "local"
retention = {{ last = 3, daily = 7 }}
max_age = "26h"
{extra}"""
        )

    @contextmanager
    def serving(self, port: int | None = None) -> Iterator[str]:
        """`dumpsafe serve --no-scheduler` on ``port`` (default: a free one) until the block ends;
        yields its URL once /healthz answers, and stops the server on the way out."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "dumpsafe", "--config", str(self.config), "serve", "--port", str(port), "--no-scheduler"]
        proc = subprocess.Popen(argv, env=self.env, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_healthy(url, proc)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: 'dumpsafe serve' exited {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("demo: 'dumpsafe serve' did not answer /healthz within 30s")
