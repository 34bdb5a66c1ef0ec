"""A real application: Django's contrib apps (auth, admin, contenttypes, sessions) and an app of
its own, migrated into a tenant database as the app's own role, backed up, restored atomically
and in new mode; afterwards ``migrate --check`` passes and a new migration applies as that role."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg import sql

from conftest import PASSWORD_ENV, Env

ROLE, PASSWORD, DB = "dj_app", "dj-pw-not-secret", "dj_tenant"

SETTINGS = """
import os
SECRET_KEY = "not-a-secret"
INSTALLED_APPS = ["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                  "django.contrib.sessions", "django.contrib.messages", "shop"]
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
              "django.contrib.auth.middleware.AuthenticationMiddleware",
              "django.contrib.messages.middleware.MessageMiddleware"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
              "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                 "django.contrib.auth.context_processors.auth",
                                                 "django.contrib.messages.context_processors.messages"]}}]
ROOT_URLCONF = "urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": os.environ["DJ_DB"], "USER": "dj_app",
                         "PASSWORD": os.environ["DJ_PW"], "HOST": "127.0.0.1", "PORT": os.environ["DJ_PORT"]}}
"""

MODELS = """
from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=50)
"""

NEW_MODEL = """

class Tag(models.Model):
    label = models.CharField(max_length=20)
"""


def _project(root: Path) -> Path:
    (root / "shop" / "migrations").mkdir(parents=True)
    (root / "settings.py").write_text(SETTINGS)
    (root / "urls.py").write_text("urlpatterns = []\n")
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "migrations" / "__init__.py").write_text("")
    (root / "shop" / "models.py").write_text(MODELS)
    return root


def _manage(project: Path, pg, db: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJ_DB": db, "DJ_PW": PASSWORD, "DJ_PORT": str(pg.port), "PYTHONPATH": str(project),
           "DJANGO_SETTINGS_MODULE": "settings"}
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def django_tenant(pg, tmp_path, monkeypatch):
    with pg.connect() as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(PASSWORD)))
        c.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DB), sql.Identifier(ROLE)))
    monkeypatch.setenv(PASSWORD_ENV, pg.password)
    (tmp_path / "uploads").mkdir()
    env = Env(root=tmp_path, pg=pg, db=DB, uploads=tmp_path / "uploads")
    env.write_config()
    project = _project(tmp_path / "project")
    try:
        yield env, project
    finally:
        with pg.connect() as c:
            for name in (DB, DB + "_copy"):
                c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(ROLE)))


def test_django_migrated_tenant_restores_atomic_and_new_and_keeps_migrating(django_tenant, pg):
    env, project = django_tenant
    for args in (("makemigrations", "shop"), ("migrate",)):
        out = _manage(project, pg, DB, *args)
        assert out.returncode == 0, out.stderr
    r = env.cli("backup", "create", "acme", "--no-uploads", "--json")
    assert r.code == 0, r.err
    bid = r.json()[0]["id"]

    r = env.cli("backup", "restore", bid, "--yes", "--no-uploads", "--json")
    assert r.code == 0, r.err
    r = env.cli("backup", "restore", bid, "--database", DB + "_copy", "--no-uploads", "--json")
    assert r.code == 0, r.err

    for db in (DB, DB + "_copy"):
        out = _manage(project, pg, db, "migrate", "--check")
        assert out.returncode == 0, out.stdout + out.stderr
    with open(project / "shop" / "models.py", "a") as fh:
        fh.write(NEW_MODEL)
    out = _manage(project, pg, DB, "makemigrations", "shop")
    assert out.returncode == 0, out.stderr
    for db in (DB, DB + "_copy"):  # the app's own role creates its new table in both restored databases
        out = _manage(project, pg, db, "migrate")
        assert out.returncode == 0, out.stdout + out.stderr
        with pg.connect(db) as c:
            assert c.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'shop_tag'").fetchone() == (ROLE,)
