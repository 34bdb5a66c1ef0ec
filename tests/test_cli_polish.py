"""A newcomer's first hour with the CLI: --version, completion, readable --help, choices,
one-sentence errors (JSON under --json), and start-up that imports only what it uses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dumpsafe.models import ID_RE

SRC = str(Path(__file__).resolve().parent.parent / "src")


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, python_flags: tuple[str, ...] = ()):
    e = dict(os.environ if env is None else env)
    e["PYTHONPATH"] = SRC + os.pathsep + e.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, *python_flags, "-m", "dumpsafe", *args], capture_output=True, text=True,
                          env=e, cwd=cwd, timeout=120)


def _command_paths(command, prefix=()):
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*prefix, name))


def test_version():
    from dumpsafe import __version__

    r = run("--version")
    assert r.returncode == 0 and r.stdout == f"dumpsafe {__version__}\n"


def test_shell_completion_completes_commands_and_choices():
    env = dict(os.environ, _DUMPSAFE_COMPLETE="complete_bash", COMP_WORDS="dumpsafe back", COMP_CWORD="1")
    r = run(env=env)
    assert r.returncode == 0 and r.stdout.split() == ["backup"]
    env.update(COMP_WORDS="dumpsafe backup restore x --mode ", COMP_CWORD="5")
    assert run(env=env).stdout.split() == ["atomic", "clean", "new"]


def test_every_help_has_readable_metavars_and_no_python_types(env):
    import typer

    from dumpsafe.fronts.cli import app, readable_help

    tree = typer.main.get_command(app)
    readable_help(tree)
    paths = list(_command_paths(tree))
    assert ("backup", "restore") in paths and ("status",) in paths
    for path in paths:
        r = env.cli(*path, "--help")
        assert r.code == 0, (path, r.err)
        assert not re.search(r"<[a-z_\[\]|, .]+>", r.out), (path, r.out)
    restore = env.cli("backup", "restore", "--help").out
    assert "--mode [atomic|clean|new]" in restore and "--identity FILE" in restore and "ID  Backup ID" in restore
    assert "--format [cron|systemd|kubernetes]" in env.cli("schedule", "export", "--help").out
    top = env.cli("--help").out
    assert "Examples:" in top and "dumpsafe backup create acme" in top


def test_mode_and_format_are_choices(env):
    r = env.cli("backup", "restore", "acme.app.20261122T023000Z.k3j7x2ab", "--mode", "sideways")
    assert r.code == 2 and "sideways" in r.err and "atomic" in r.err
    r = env.cli("status", "--format", "yaml")
    assert r.code == 2 and "yaml" in r.err and "prometheus" in r.err


def test_the_id_shown_in_the_not_an_id_error_is_itself_valid(env):
    r = env.cli("backup", "get", "nope")
    assert r.code == 2
    examples = re.findall(r"IDs look like (\S+?);", r.err)
    assert examples and all(ID_RE.match(x) for x in examples)


def test_keygen_into_a_missing_directory_is_one_sentence(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "acme.key"
    r = run("keygen", "--output", str(target))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert str(target.parent) in r.stderr and "create the directory" in r.stderr
    assert not target.parent.exists()


def test_create_json_is_always_an_array(env):
    r = env.cli("backup", "create", "acme", "--no-uploads", "--json")
    assert r.code == 0, r.err
    body = r.json()
    assert isinstance(body, list) and len(body) == 1 and body[0]["database"] == env.db


def test_errors_under_json_are_a_json_object_on_stderr(env):
    r = env.cli("backup", "get", "acme.app.20261122T023000Z.k3j7x2ab", "--json")
    assert r.code == 1 and r.out == ""
    err = json.loads(r.err)
    assert err["kind"] == "not_found" and err["exit_code"] == 1 and "acme.app.20261122T023000Z.k3j7x2ab" in err["error"]
    r = env.cli("backup", "create", "nosuchtenant", "--json")
    err = json.loads(r.err)
    assert r.code == 2 and err["exit_code"] == 2 and "nosuchtenant" in err["error"]
    # click's own usage errors too: a bad choice, an unknown flag
    r = env.cli("status", "--format", "yaml", "--json")
    err = json.loads(r.err)
    assert r.code == 2 and err["kind"] == "usage" and err["exit_code"] == 2 and "'yaml' is not one of" in err["error"]
    r = env.cli("backup", "list", "--json", "--colour")
    assert r.code == 2 and "--colour" in json.loads(r.err)["error"]
    # without --json: the human sentence
    r = env.cli("backup", "get", "acme.app.20261122T023000Z.k3j7x2ab")
    assert r.err.startswith("error:")


@pytest.mark.parametrize("listed", [True, False], ids=["databases-listed", "all-databases"])
def test_a_mistyped_database_leaves_no_phantom_row_and_no_last_failure(env, listed):
    if not listed:
        env.config_path.write_text(env.config_path.read_text().replace(f'databases = ["{env.db}"]\n', ""))
    r = env.cli("backup", "create", "acme", "--database", "nosuchdb")
    assert r.code == 2 and "nosuchdb" in r.err
    rows = env.cli("status", "--json").json()
    assert "nosuchdb" not in {row["database"] for row in rows}
    assert all(row["last_failure_at"] is None for row in rows)
    assert "nosuchdb" in (env.state_dir / "audit.jsonl").read_text()  # still audited


def test_verify_with_the_wrong_identity_leaves_the_record_alone(env, tmp_path):
    key, wrong = tmp_path / "acme.key", tmp_path / "wrong.key"
    recipient = env.cli("keygen", "--output", str(key)).out.strip()
    assert env.cli("keygen", "--output", str(wrong)).code == 0
    env.write_config(tenant_extra=f'encrypt_to = ["{recipient}"]')
    bid = env.cli("backup", "create", "acme", "--no-uploads", "--json").json()[0]["id"]
    r = env.cli("backup", "verify", bid, "--identity", str(wrong))
    assert r.code == 2 and "cannot be decrypted with the identity given" in r.err
    assert env.cli("backup", "get", bid, "--json").json()["last_verification"] is None
    assert "failed" not in env.cli("backup", "list").out
    r = env.cli("backup", "verify", bid, "--identity", str(key), "--json")
    assert r.code == 0 and r.json()["last_verification"]["result"] == "passed"


def _imported(r: subprocess.CompletedProcess) -> set[str]:
    return {m.group(1).strip().split(".")[0] for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|(.+)$", r.stderr, re.M)}


def test_help_and_list_import_only_what_they_use(tmp_path):
    heavy = {"apprise", "psycopg", "boto3", "botocore", "google", "fastapi", "uvicorn", "mcp", "pyrage", "zstandard"}
    r = run("--help", python_flags=("-X", "importtime"))
    assert r.returncode == 0
    mods = _imported(r)
    assert not (mods & (heavy | {"pydantic"})), mods & (heavy | {"pydantic"})
    (tmp_path / "dumpsafe.toml").write_text(
        'state_dir = "state"\nnotify = ["json://127.0.0.1:9/hook"]\n[stores.local]\nkind = "local"\npath = "b"\n'
        '[tenants.acme]\nhost = "127.0.0.1"\nuser = "postgres"\ndatabases = ["app"]\nnotify = ["json://127.0.0.1:9/t"]\n'
    )
    r = run("backup", "list", python_flags=("-X", "importtime"), cwd=tmp_path)
    assert r.returncode == 0 and "no backups" in r.stderr
    light = heavy - {"psycopg", "pyrage", "zstandard"}  # the service imports its engines (left as they are)
    assert not (_imported(r) & light), _imported(r) & light
    # a command that notifies still checks the URLs when the config loads
    (tmp_path / "dumpsafe.toml").write_text((tmp_path / "dumpsafe.toml").read_text().replace("json://127.0.0.1:9/t", "nosuch://x"))
    r = run("prune", cwd=tmp_path)
    assert r.returncode == 2 and "tenants.acme.notify: entry 0 is not a notification URL" in r.stderr
