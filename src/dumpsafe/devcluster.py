"""A throwaway PostgreSQL cluster (initdb on a free port in a temp dir) for the demo,
the tests and the benchmarks. Runs as the ``postgres`` system user when we are root,
because PostgreSQL refuses to run as root."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from dumpsafe.engines.postgres import candidate_bin_dirs, tool_version


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_bin_dir(min_major: int | None = None, prefer: Path | None = None) -> Path:
    """A directory holding initdb/pg_ctl/postgres (newest first)."""
    dirs = ([prefer] if prefer else []) + candidate_bin_dirs()
    for d in dirs:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            v = tool_version(str(d / "initdb"))
            if v and (min_major is None or v[0] >= min_major):
                return (d / "initdb").resolve().parent  # /usr/local/bin/initdb may be a symlink
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found; run 'make pg' or apt-get install postgresql")


class Cluster:
    """initdb + pg_ctl on 127.0.0.1:<free port>, password (scram) auth over TCP."""

    def __init__(self, password: str = "demo-secret", bin_dir: Path | None = None, base: Path | None = None):
        self.bin_dir = Path(bin_dir) if bin_dir else server_bin_dir()
        self.password = password
        self.port = free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix="dumpsafe-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.as_postgres = os.geteuid() == 0
        self.version = tool_version(str(self.bin_dir / "initdb"))

    def _run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)

    def _chown(self, path: Path) -> None:
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def init(self) -> "Cluster":
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o700)
        self._chown(self.base)
        pwfile = self.base / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.password + "\n")
        self._chown(pwfile)
        try:
            self._run([
                str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", self.user, "--encoding=UTF8",
                "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
            ])
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"initdb failed: {e.stderr.strip()}") from None
        finally:
            pwfile.unlink(missing_ok=True)
        return self

    def start(self) -> "Cluster":
        opts = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c max_connections=100 -c shared_buffers=64MB"
        )
        try:
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start"])
        except subprocess.CalledProcessError as e:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {e.stderr.strip()} {log}") from None
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.data.exists():
            subprocess.run(
                (["runuser", "-u", "postgres", "--"] if self.as_postgres else [])
                + [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
                capture_output=True,
            )

    def is_running(self) -> bool:
        try:
            with self.connect("postgres"):
                return True
        except psycopg.OperationalError:
            return False

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def connect(self, dbname: str = "postgres", autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=dbname, autocommit=autocommit
        )

    def create_database(self, name: str) -> None:
        from psycopg import sql

        with self.connect() as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.connect() as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                return
            time.sleep(0.2)
        raise RuntimeError("PostgreSQL did not become ready")

    def __enter__(self) -> "Cluster":
        try:
            return self.init().start()
        except BaseException:
            self.destroy()
            raise

    def __exit__(self, *exc: object) -> None:
        self.destroy()


SAMPLE_SQL = """
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto') THEN
        CREATE EXTENSION IF NOT EXISTS pgcrypto;
    END IF;
END $$;
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    email text UNIQUE NOT NULL,
    profile jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    total numeric(12,2) NOT NULL,
    note text,
    placed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_idx ON orders(customer_id);
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (
    id serial PRIMARY KEY,
    order_id bigint REFERENCES orders(id),
    pdf_path text,
    amount numeric(12,2)
);
CREATE VIEW customer_totals AS
    SELECT c.id, c.name, count(o.id) AS orders, coalesce(sum(o.total), 0) AS total
    FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name;
CREATE SEQUENCE ticket_seq START 1000;
SELECT nextval('ticket_seq');
INSERT INTO customers (name, email, profile)
    SELECT 'customer ' || g, 'c' || g || '@example.com',
           jsonb_build_object('tier', (ARRAY['free','pro','team'])[1 + g % 3], 'seats', g % 17)
    FROM generate_series(1, %(customers)s) g;
INSERT INTO orders (customer_id, total, note)
    SELECT 1 + (g % %(customers)s), round((random() * 500)::numeric, 2), md5(g::text)
    FROM generate_series(1, %(orders)s) g;
INSERT INTO billing.invoices (order_id, pdf_path, amount)
    SELECT id, 'invoices/' || id || '.pdf', total FROM orders WHERE id % 4 = 0;
"""


def load_sample(cluster: Cluster, dbname: str, customers: int = 500, orders: int = 2000) -> None:
    """Sample schema with FKs, an index, a view, a sequence, jsonb and a second schema."""
    sql_text = SAMPLE_SQL.replace("%(customers)s", str(int(customers))).replace("%(orders)s", str(int(orders)))
    with cluster.connect(dbname) as c:
        c.execute(sql_text)


def make_uploads(root: Path, files: int = 24) -> None:
    """A small uploads tree: nested directories, binary and text files, a symlink."""
    import random

    rnd = random.Random(42)
    for i in range(files):
        d = root / f"tenant-files/{i % 4:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"upload-{i:03d}.bin").write_bytes(bytes(rnd.getrandbits(8) for _ in range(512 + i * 97)))
    (root / "invoices").mkdir(parents=True, exist_ok=True)
    (root / "invoices/README.txt").write_text("Invoices rendered by the app.\n")
    link = root / "invoices/latest.txt"
    if not link.is_symlink():
        link.symlink_to("README.txt")
