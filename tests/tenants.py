"""Two tenants on one PostgreSQL server sharing a superuser (as in the README's quickstart),
each with its own database, store and token, behind a live `dumpsafe serve` app."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import PASSWORD_ENV, Env, table_digest
from dumpsafe.devcluster import load_sample, make_uploads


@dataclass
class Two:
    env: Env
    service: Any
    url: str
    tokens: dict[str, str]
    ids: dict[str, str]
    acme_db: str
    beta_db: str

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}

    def call(self, who: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers=self.headers(who), timeout=60, **kw)

    def mcp(self, who: str) -> Client:
        hc = httpx2.AsyncClient(headers=self.headers(who), timeout=60)
        return Client(streamable_http_client(self.url + "/mcp", http_client=hc))

    def backup(self, tenant: str = "acme", uploads: bool = False) -> str:
        return self.service.create(tenant, uploads=uploads)[0].id

    def digest(self, db: str) -> dict:
        return table_digest(self.env.pg, db)

    def databases(self) -> set[str]:
        with self.env.pg.connect() as c:
            return {r[0] for r in c.execute("SELECT datname FROM pg_database")}

    def audit(self, action: str | None = None) -> list[dict]:
        return [e for e in self.service.audit.entries() if action is None or e["action"] == action]


def two_tenants_config(root, pg, acme_db: str, beta_db: str) -> Env:
    beta = (
        'restore_names = ["acme_restored_*"]\nstore = "acme_store"\n'
        f'\n[tenants.beta]\nhost = "127.0.0.1"\nport = {pg.port}\nuser = "postgres"\n'
        f'password_env = "{PASSWORD_ENV}"\ndatabases = ["{beta_db}"]\nstore = "beta_store"\n'
    )
    stores = (
        '[stores.acme_store]\nkind = "local"\npath = "acme-backups"\n\n'
        '[stores.beta_store]\nkind = "local"\npath = "beta-backups"\n'
    )
    env = Env(root=root, pg=pg, db=acme_db, uploads=root / "uploads", tenant_extra=beta, stores_toml=stores)
    env.write_config()
    return env


@pytest.fixture(scope="module")
def two(pg, tmp_path_factory):
    from dumpsafe.api import create_app
    from dumpsafe.auth import READ, SCOPES, WRITE, TokenStore
    from live import LiveServer

    root = tmp_path_factory.mktemp("two")
    suffix = secrets.token_hex(4)
    acme_db, beta_db = f"acme_app_{suffix}", f"beta_app_{suffix}"
    for name in (acme_db, beta_db):
        pg.create_database(name)
        load_sample(pg, name, customers=30, orders=120)
    make_uploads(root / "uploads", files=6)
    env = two_tenants_config(root, pg, acme_db, beta_db)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PASSWORD_ENV, pg.password)
        mp.delenv("DUMPSAFE_CONFIG", raising=False)
        service = env.service()
        store = TokenStore(service.state_dir)
        tokens, ids = {}, {}
        for who, tenant, scopes in (("acme", "acme", [READ, WRITE]), ("beta", "beta", [READ, WRITE]),
                                    ("admin", None, list(SCOPES)), ("acme_create", "acme", ["backups:create"])):
            info, secret = store.create(tenant=tenant, scopes=scopes, name=who)
            tokens[who], ids[who] = secret, info.id
        server = LiveServer(create_app(service)).start()
        try:
            yield Two(env, service, server.url, tokens, ids, acme_db, beta_db)
        finally:
            server.stop()
            for name in (acme_db, beta_db):
                pg.drop_database(name)
