"""A worker fleet for tests: a control-plane database, tenants on database servers, and
`dumpsafe worker` processes (real subprocesses) running jobs from the queue."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dumpsafe.config_load import load_config
from dumpsafe.devcluster import Cluster, load_sample

PASSWORD_ENV = "FLEET_PGPASSWORD"
SRC = str(Path(__file__).resolve().parent.parent / "src")


@dataclass
class Fleet:
    root: Path
    control: Cluster  # holds the queue database (and half of the tenants)
    servers: list[Cluster]
    queue_db: str
    tenants: dict[str, tuple[Cluster, str]] = field(default_factory=dict)
    workers: list[subprocess.Popen] = field(default_factory=list)
    extra_toml: str = ""
    tenants_toml: str = ""  # more [tenants.X] tables, as written

    @property
    def config_path(self) -> Path:
        return self.root / "dumpsafe.toml"

    def add_tenants(self, n: int, *, rows: int = 300) -> None:
        for i in range(n):
            server = self.servers[i % len(self.servers)]
            name, db = f"t{len(self.tenants):03d}", "d_" + secrets.token_hex(4)
            server.create_database(db)
            load_sample(server, db, customers=rows, orders=rows * 4)
            self.tenants[name] = (server, db)

    def write_config(self, *, queue: bool = True, max_parallel_per_server: int = 2, schedule: str = "0 0 3 * * *") -> Path:
        lines = [
            'state_dir = "state"',
            f"max_parallel_per_server = {max_parallel_per_server}",
            "queue_retry_wait_s = 0.2",
            "queue_retry_attempts = 3",
        ]
        if queue:
            lines += [f'queue = "postgresql://postgres@127.0.0.1:{self.control.port}/{self.queue_db}"',
                      f'queue_password_env = "{PASSWORD_ENV}"']
        lines += [self.extra_toml, '[stores.local]', 'kind = "local"', 'path = "backups"', ""]
        for name, (server, db) in self.tenants.items():
            lines += [f"[tenants.{name}]", 'host = "127.0.0.1"', f"port = {server.port}", 'user = "postgres"',
                      f'password_env = "{PASSWORD_ENV}"', f'databases = ["{db}"]', f'schedule = "{schedule}"', ""]
        self.config_path.write_text("\n".join(lines) + "\n" + self.tenants_toml)
        return self.config_path

    def config(self):
        return load_config(self.config_path)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env[PASSWORD_ENV] = self.control.password
        env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("DUMPSAFE_FAILPOINTS", None)
        env.update(extra)
        return env

    def start_worker(self, concurrency: int = 2, **env: str) -> subprocess.Popen:
        log = open(self.root / f"worker-{len(self.workers)}.log", "wb")
        p = subprocess.Popen(
            [sys.executable, "-m", "dumpsafe", "--config", str(self.config_path), "worker",
             "--concurrency", str(concurrency), "--heartbeat", "0.5", "--stalled-after", "2", "--poll", "0.2"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env(**env), cwd=self.root,
        )
        self.workers.append(p)
        return p

    def stop_workers(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.workers:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.workers.clear()

    def jobs(self) -> list[tuple]:
        with self.control.connect(self.queue_db) as c:
            return c.execute("SELECT id, task_name, status::text, args, attempts FROM procrastinate_jobs ORDER BY id").fetchall()

    def unfinished(self) -> int:
        with self.control.connect(self.queue_db) as c:
            return c.execute("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')").fetchone()[0]
