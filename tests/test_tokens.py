"""Tokens through the real CLI: created once in clear, stored hashed, listed, expired, revoked."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import timedelta

import pytest

from dumpsafe.auth import TokenStore
from dumpsafe.errors import AuthError


def test_create_list_revoke_and_the_secret_never_lands_on_disk(env):
    r = env.cli("token", "create", "--tenant", "acme", "--scope", "backups:read", "--name", "ci", "--expires", "30d")
    assert r.code == 0, r.err
    secret = r.out.strip()
    assert secret.startswith("ds_") and len(r.out.splitlines()) == 1
    token_id = secret.split("_")[1]
    assert token_id in r.err and secret not in r.err

    caller = TokenStore(env.state_dir).authenticate(secret)
    assert (caller.actor, caller.tenant, caller.scopes) == (token_id, "acme", frozenset({"backups:read"}))

    listed = env.cli("token", "list", "--json").json()
    assert [(t["id"], t["tenant"], t["scopes"], t["name"]) for t in listed] == [(token_id, "acme", ["backups:read"], "ci")]
    assert listed[0]["expires_at"] > listed[0]["created_at"]
    assert secret not in env.cli("token", "list").out

    # neither the secret nor its bare-sha256 (a crackable form if it were low entropy) is in any file
    bare = hashlib.sha256(secret.encode()).hexdigest()
    part = secret.split("_", 2)[2]
    for path in env.state_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and part.encode() not in data and bare.encode() not in data, path
    tokens_file = env.state_dir / "tokens.json"
    assert stat.S_IMODE(os.stat(tokens_file).st_mode) == 0o600

    assert env.cli("token", "revoke", token_id).code == 0
    with pytest.raises(AuthError, match="was revoked"):
        TokenStore(env.state_dir).authenticate(secret)
    # kept, marked revoked, so older audit lines stay attributable (issue 12)
    (kept,) = env.cli("token", "list", "--json").json()
    assert kept["id"] == token_id and kept["revoked"] is True and kept["revoked_at"]


def test_json_create_shows_the_secret_once_with_its_metadata(env):
    r = env.cli("token", "create", "--admin", "--scope", "backups:read", "--scope", "backups:write", "--json")
    body = r.json()
    assert body["admin"] is True and body["scopes"] == ["backups:read", "backups:write"] and body["expires_at"] is None
    assert TokenStore(env.state_dir).authenticate(body["token"]).admin


def test_expired_and_tampered_tokens_are_refused(env):
    store = TokenStore(env.state_dir)
    _, old = store.create(tenant="acme", scopes=["backups:read"], expires_in=timedelta(seconds=-1))
    with pytest.raises(AuthError, match="expired"):
        store.authenticate(old)
    _, good = store.create(tenant="acme", scopes=["backups:read"])
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    for bad in (tampered, "", None, "Bearer x", good + "x", "ds_" + "a" * 12 + "_" + "b" * 43):
        with pytest.raises(AuthError):
            store.authenticate(bad)


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--scope", "backups:read"], 2, "exactly one of --tenant"),
        (["--admin", "--tenant", "acme", "--scope", "backups:read"], 2, "exactly one of --tenant"),
        (["--admin"], 2, "at least one --scope"),
        (["--admin", "--scope", "backups:everything"], 2, "unknown scope 'backups:everything'"),
        (["--admin", "--scope", "backups:read", "--expires", "soon"], 2, "--expires 'soon'"),
        (["--tenant", "nobody", "--scope", "backups:read"], 2, "unknown tenant 'nobody'"),
    ],
)
def test_bad_token_requests_get_one_clear_sentence(env, args, code, message):
    r = env.cli("token", "create", *args)
    assert r.code == code and message in r.err and "Traceback" not in r.err
    assert not (env.state_dir / "tokens.json").exists() or json.loads((env.state_dir / "tokens.json").read_text())["tokens"] == []


def test_revoking_an_unknown_token_says_so(env):
    r = env.cli("token", "revoke", "nosuchtoken0")
    assert r.code == 1 and "no token with id 'nosuchtoken0'" in r.err


def test_token_commands_refuse_to_run_remotely(env, monkeypatch):
    monkeypatch.setenv("DUMPSAFE_SERVER", "http://127.0.0.1:9")
    r = env.cli("token", "list")
    assert r.code == 2 and "runs on the server host" in r.err


def test_a_corrupt_token_file_fails_closed_without_telling_the_caller_where(env):
    from dumpsafe.errors import DumpsafeError

    store = TokenStore(env.state_dir)
    _, secret = store.create(tenant="acme", scopes=["backups:read"])
    store.path.write_text('{"tokens": [{"id": 1}]}')
    with pytest.raises(DumpsafeError) as e:
        store.authenticate(secret)
    assert not isinstance(e.value, AuthError) and str(env.state_dir) not in e.value.message
    r = env.cli("token", "list")
    assert r.code == 1 and "tokens.json: token file is unreadable" in r.err and "Traceback" not in r.err
