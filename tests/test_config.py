"""Config loading: one sentence naming the file and the key, exit 2, before any work."""

from pathlib import Path

import pytest

from dumpsafe.config_load import load_config
from dumpsafe.errors import ConfigError

BASE = """
state_dir = "state"
[stores.local]
kind = "local"
path = "backups"
[tenants.acme]
port = 5432
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "dumpsafe.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, expected",
    [
        (BASE.replace("port = 5432", 'port = "five"'), "tenants.acme.port: expected an integer"),
        (BASE.replace("port = 5432", "port = 70000"), "tenants.acme.port: must be at most 65535"),
        (BASE.replace("port = 5432", "prot = 5432"), "tenants.acme.prot: unknown key"),
        (BASE.replace('kind = "local"', 'kind = "ftp"'), "stores.local.kind: kind must be one of local, s3, gcs"),
        (BASE.replace('path = "backups"', ""), "stores.local.path: required key is missing"),
        (BASE + 'store = "nowhere"\n', "tenants.acme: no store named 'nowhere'"),
        (BASE + 'password_env = "A"\npassword_file = "f"\n', "tenants.acme: set password_env or password_file, not both"),
        (BASE + 'max_age = "soon"\n', "tenants.acme.max_age: expected a duration"),
        (BASE + "retention = { last = 0 }\n", "tenants.acme.retention: a retention policy that keeps nothing"),
        (BASE.replace("[tenants.acme]", "[tenants.'a.b']"), "tenants: name 'a.b' must be"),
        ("state_dir = [", "not valid TOML"),
        (BASE + 'restore_names = ["../x"]\n', "tenants.acme.restore_names: '../x' is not a restore name pattern"),
        (BASE + 'restore_names = ["*"]\n', "tenants.acme.restore_names: '*' is not a restore name pattern"),
        (BASE + 'restore_names = ["b*"]\n[tenants.beta]\ndatabases = ["beta_app"]\n',
         "tenants.acme.restore_names: 'b*' matches database 'beta_app' of tenant 'beta'"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, expected):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}: ")
    assert expected in msg
    assert "\n" not in msg


def test_relative_paths_resolve_against_config_dir(tmp_path):
    p = write(tmp_path, BASE + 'uploads = "up"\n')
    cfg = load_config(p)
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.stores["local"].path == tmp_path / "backups"
    assert cfg.tenants["acme"].uploads == tmp_path / "up"


def test_config_found_through_env(tmp_path, monkeypatch):
    p = write(tmp_path, BASE)
    monkeypatch.setenv("DUMPSAFE_CONFIG", str(p))
    assert "acme" in load_config().tenants


def test_missing_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DUMPSAFE_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="dumpsafe.toml: config file not found"):
        load_config()


def test_cli_bad_config_exit_2_one_line_no_traceback(env):
    env.config_path.write_text(env.config_path.read_text().replace("port = ", 'port = "x" #'))
    r = env.cli("backup", "list")
    assert r.code == 2
    assert "tenants.acme.port: expected an integer" in r.err
    assert "Traceback" not in r.err and r.out == ""
    assert not env.store_dir.exists()
