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

from conftest import Env, serving, table_digest, tenant_toml
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
    beta = 'restore_names = ["acme_restored_*"]\nstore = "acme_store"\n' + tenant_toml("beta", pg, beta_db, 'store = "beta_store"\n')
    stores = (
        '[stores.acme_store]\nkind = "local"\npath = "acme-backups"\n\n'
        '[stores.beta_store]\nkind = "local"\npath = "beta-backups"\n'
    )
    env = Env(root=root, pg=pg, db=acme_db, uploads=root / "uploads", tenant_extra=beta, stores_toml=stores)
    env.write_config()
    return env


@pytest.fixture(scope="module")
def two(pg, tmp_path_factory):
    from dumpsafe.auth import READ, SCOPES, WRITE

    root = tmp_path_factory.mktemp("two")
    suffix = secrets.token_hex(4)
    acme_db, beta_db = f"acme_app_{suffix}", f"beta_app_{suffix}"
    for name in (acme_db, beta_db):
        pg.create_database(name)
        load_sample(pg, name, customers=30, orders=120)
    make_uploads(root / "uploads", files=6)
    env = two_tenants_config(root, pg, acme_db, beta_db)
    kinds = {"acme": dict(tenant="acme", scopes=[READ, WRITE]), "beta": dict(tenant="beta", scopes=[READ, WRITE]),
             "admin": dict(tenant=None, scopes=list(SCOPES)), "acme_create": dict(tenant="acme", scopes=["backups:create"])}
    try:
        with serving(env, kinds) as (service, _app, url, tokens, ids):
            yield Two(env, service, url, tokens, ids, acme_db, beta_db)
    finally:
        for name in (acme_db, beta_db):
            pg.drop_database(name)
