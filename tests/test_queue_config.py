"""Issue 16: the queue keys read like the tenants' (password from env or file, never in the
URL), and `dumpsafe worker` without a queue says so in one sentence."""

from pathlib import Path

import pytest

from dumpsafe.config_load import load_config
from dumpsafe.errors import ConfigError
from dumpsafe.queue_config import connect_kwargs

BASE = 'state_dir = "state"\n{extra}\n[stores.local]\nkind = "local"\npath = "backups"\n'


def write(tmp_path: Path, extra: str) -> Path:
    p = tmp_path / "dumpsafe.toml"
    p.write_text(BASE.format(extra=extra))
    return p


@pytest.mark.parametrize("extra, expected", [
    ('queue = "postgresql://u:hunter2@db/q"', "queue: the queue URL must not carry a password"),
    ('queue = "mysql://u@db/q"', "queue: expected a URL like"),
    ('queue = "postgresql://u@db"', "queue: expected a URL like"),
    ('queue = "postgresql://u@db/q"\nqueue_password_env = "X"\nqueue_password_file = "f"', "set queue_password_env or queue_password_file, not both"),
    ("max_parallel_per_server = 0", "max_parallel_per_server: must be at least 1"),
])
def test_bad_queue_keys_name_the_key(tmp_path, extra, expected):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, extra))
    assert expected in str(e.value) and "hunter2" not in str(e.value)


def test_queue_password_from_file_or_env_never_in_the_url(tmp_path, monkeypatch):
    (tmp_path / "qpw").write_text("s3cret\n")
    cfg = load_config(write(tmp_path, 'queue = "postgresql://u@db/q"\nqueue_password_file = "qpw"'))
    kw = connect_kwargs(cfg)
    assert kw["password"] == "s3cret" and "s3cret" not in kw["conninfo"]
    cfg = load_config(write(tmp_path, 'queue = "postgresql://u@db/q"\nqueue_password_env = "QPW_UNSET_X"'))
    with pytest.raises(ConfigError, match="environment variable QPW_UNSET_X is not set"):
        connect_kwargs(cfg)


def test_worker_without_a_queue_is_one_clear_sentence(env):
    r = env.cli("worker")
    assert r.code == 2 and "no queue is configured" in r.err and "Traceback" not in r.err
