"""Shared fixtures: a real PostgreSQL cluster (password auth on), a fresh database per
test, an uploads tree, a config file, and an in-process CLI runner."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from dumpsafe.config_load import load_config
from dumpsafe.devcluster import Cluster, load_sample, make_uploads

PASSWORD_ENV = "ACME_PGPASSWORD"


@pytest.fixture(scope="session")
def pg() -> Cluster:
    """One real cluster for the session; password (scram) auth over TCP."""
    cluster = Cluster(password="pw-" + secrets.token_hex(12)).init().start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def db(pg: Cluster) -> str:
    """A fresh database with the sample schema and data."""
    name = "t_" + secrets.token_hex(5)
    pg.create_database(name)
    load_sample(pg, name, customers=200, orders=800)
    yield name
    pg.drop_database(name)


@pytest.fixture
def new_db(pg: Cluster):
    """``new_db(prefix)``: the name of a fresh, empty database on the session cluster, dropped after the test."""
    made: list[str] = []

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        pg.create_database(name)
        made.append(name)
        return name

    yield make
    for name in made:
        pg.drop_database(name)


@pytest.fixture
def uploads_dir(tmp_path: Path) -> Path:
    root = tmp_path / "uploads"
    make_uploads(root)
    return root


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        import json

        return json.loads(self.out)


@dataclass
class Env:
    """A working directory with a dumpsafe.toml pointing at the test cluster."""

    root: Path
    pg: Cluster
    db: str
    uploads: Path
    extra_toml: str = ""
    tenant_extra: str = ""
    stores_toml: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "dumpsafe.toml"

    @property
    def store_dir(self) -> Path:
        return self.root / "backups"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def write_config(self, **overrides: str) -> Path:
        tenant = overrides.get("tenant_extra", self.tenant_extra)
        stores = overrides.get("stores_toml", self.stores_toml) or (
            '[stores.local]\nkind = "local"\npath = "backups"\n'
        )
        text = f"""state_dir = "state"
{overrides.get('extra_toml', self.extra_toml)}
{stores}
[tenants.acme]
host = "127.0.0.1"
port = {self.pg.port}
user = "postgres"
password_env = "{PASSWORD_ENV}"
databases = ["{self.db}"]
uploads = "{self.uploads}"
{tenant}
"""
        self.config_path.write_text(text)
        return self.config_path

    def config(self):
        return load_config(self.config_path)

    def service(self):
        from dumpsafe.service import BackupService

        return BackupService(self.config())

    def cli(self, *args: str) -> CliResult:
        """Run the real CLI entry point in-process (stdin is not a TTY)."""
        from dumpsafe.fronts.cli import main

        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["--config", str(self.config_path), *args])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return CliResult(code, out.getvalue(), err.getvalue())

    def subprocess_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[PASSWORD_ENV] = self.pg.password
        src = str(Path(__file__).resolve().parent.parent / "src")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def cli_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dumpsafe", "--config", str(self.config_path), *args]


@pytest.fixture
def env(tmp_path: Path, pg: Cluster, db: str, uploads_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv(PASSWORD_ENV, pg.password)
    monkeypatch.delenv("DUMPSAFE_CONFIG", raising=False)
    e = Env(root=tmp_path, pg=pg, db=db, uploads=uploads_dir)
    e.write_config()
    return e


def table_digest(pg: Cluster, dbname: str) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent content hash of every user table."""
    out: dict[str, tuple[int, str]] = {}
    with pg.connect(dbname) as c:
        tables = c.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1,2"
        ).fetchall()
        for schema, table in tables:
            n, h = c.execute(
                f'SELECT count(*), coalesce(md5(string_agg(md5(t::text), \'\' ORDER BY md5(t::text))), \'\') FROM "{schema}"."{table}" t'
            ).fetchone()
            out[f"{schema}.{table}"] = (n, h)
    return out


# --- API, MCP and remote CLI (issue 6) ---------------------------------------------------------
@dataclass
class Served:
    """A live `dumpsafe serve` app (REST + MCP) over real HTTP, two tenants, tokens of each kind."""

    env: Env
    service: Any
    url: str
    tokens: dict[str, str]
    token_ids: dict[str, str]
    app: Any = None

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}


def _token_kinds() -> dict[str, dict[str, Any]]:
    from datetime import timedelta

    from dumpsafe.auth import CREATE, READ, SCOPES, WRITE

    return {
        "read": dict(tenant="acme", scopes=[READ]),
        "create": dict(tenant="acme", scopes=[READ, CREATE]),  # makes backups, destroys nothing
        "write": dict(tenant="acme", scopes=[READ, WRITE]),
        "other": dict(tenant="beta", scopes=list(SCOPES)),
        "admin": dict(tenant=None, scopes=list(SCOPES)),
        "expired": dict(tenant=None, scopes=list(SCOPES), expires_in=timedelta(seconds=-1)),
    }


@pytest.fixture(scope="module")
def served(pg: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Served:
    root = tmp_path_factory.mktemp("served")
    name = "t_" + secrets.token_hex(5)
    pg.create_database(name)
    load_sample(pg, name, customers=50, orders=200)
    make_uploads(root / "uploads")
    beta = 'restore_names = ["r_*"]\n' + tenant_toml("beta", pg, name)
    stores = 'default_store = "local"\n[stores.local]\nkind = "local"\npath = "backups"\n\n[stores.offsite]\nkind = "local"\npath = "offsite"\n'
    env = Env(root=root, pg=pg, db=name, uploads=root / "uploads", tenant_extra=beta, stores_toml=stores)
    env.write_config()

    def backed_up(service) -> None:
        for tenant in ("acme", "beta"):
            service.create(tenant, uploads=False)

    try:
        with serving(env, _token_kinds(), before=backed_up) as (service, app, url, tokens, ids):
            tokens["bad"] = "ds_" + ids["admin"] + "_" + "A" * 43  # a real id, a wrong secret
            yield Served(env=env, service=service, url=url, tokens=tokens, token_ids=ids, app=app)
    finally:
        pg.drop_database(name)


def tenant_toml(tenant: str, pg: Cluster, db: str, extra: str = "") -> str:
    """A ``[tenants.NAME]`` table for one database on the shared cluster (password from PASSWORD_ENV)."""
    return (f'\n[tenants.{tenant}]\nhost = "127.0.0.1"\nport = {pg.port}\nuser = "postgres"\n'
            f'password_env = "{PASSWORD_ENV}"\ndatabases = ["{db}"]\n{extra}')


@contextlib.contextmanager
def serving(env: Env, token_kinds: dict[str, dict[str, Any]], before: Any = None) -> Iterator[tuple[Any, Any, str, dict, dict]]:
    """``dumpsafe serve``'s app over real HTTP on env's config, with a token of each kind (name -> create() keywords);
    ``before(service)`` runs before the server starts. Yields (service, app, url, tokens, token ids)."""
    from live import LiveServer

    from dumpsafe.fronts.api import create_app
    from dumpsafe.auth import TokenStore

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PASSWORD_ENV, env.pg.password)
        mp.delenv("DUMPSAFE_CONFIG", raising=False)
        service = env.service()
        store = TokenStore(service.state_dir)
        tokens, ids = {}, {}
        for who, kw in token_kinds.items():
            info, secret = store.create(name=who, **kw)
            tokens[who], ids[who] = secret, info.id
        if before is not None:
            before(service)
        app = create_app(service)
        server = LiveServer(app).start()
        try:
            yield service, app, server.url, tokens, ids
        finally:
            server.stop()
def all_cmdlines() -> list[tuple[str, bytes]]:
    """(pid, argv bytes) of every process visible now; vanished processes are skipped."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                out.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes()))
            except OSError:
                pass
    return out
