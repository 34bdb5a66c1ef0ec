"""Encrypted backups (age, tenant-held keys) restore and verify only with the tenant's identity;
without it, or with a wrong one, one clear sentence and nothing changed. Exec tenants are refused."""

from __future__ import annotations

import pytest

from restore_helpers import databases, db_state, enrich, tree_state


@pytest.fixture
def encrypted(env, tmp_path):
    key = tmp_path / "acme.key"
    recipient = env.cli("keygen", "--output", str(key)).out.strip()
    env.write_config(tenant_extra=f'encrypt_to = ["{recipient}"]')
    enrich(env.pg, env.db)
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    assert r.json()[0]["encryption"] == "age"
    return r.json()[0]["id"], key, db_state(env.pg, env.db), tree_state(env.uploads)


def _damage(env) -> None:
    with env.pg.connect(env.db) as c:
        c.execute("DELETE FROM billing.invoices; UPDATE customers SET name = 'x'")
    (env.uploads / "invoices/README.txt").write_text("defaced\n")


def test_encrypted_restore_and_drill_with_identity(env, encrypted):
    bid, key, state, tree = encrypted
    _damage(env)
    r = env.cli("backup", "restore", bid, "--yes", "--identity", str(key), "--json")
    assert r.code == 0, r.err
    assert db_state(env.pg, env.db) == state and tree_state(env.uploads) == tree
    r = env.cli("backup", "verify", bid, "--drill", "--identity", str(key), "--json")
    assert r.code == 0, r.err
    assert r.json()["last_verification"]["result"] == "passed"
    # the tenant's identity_file works as well as --identity
    recipient = env.config_path.read_text().split('encrypt_to = ["')[1].split('"')[0]
    env.write_config(tenant_extra=f'encrypt_to = ["{recipient}"]\nidentity_file = "{key}"')
    r = env.cli("backup", "verify", bid)
    assert r.code == 0, r.err
    assert "AGE-SECRET-KEY" not in (env.state_dir / "audit.jsonl").read_text()


def test_encrypted_without_or_with_wrong_identity_is_refused(env, encrypted, tmp_path):
    bid, key, _, _ = encrypted
    _damage(env)
    damaged, tree, dbs = db_state(env.pg, env.db), tree_state(env.uploads), databases(env.pg)

    r = env.cli("backup", "restore", bid, "--yes")
    assert r.code == 2 and "is encrypted: pass --identity FILE" in r.err

    wrong = tmp_path / "wrong.key"
    assert env.cli("keygen", "--output", str(wrong)).code == 0
    r = env.cli("backup", "restore", bid, "--yes", "--identity", str(wrong))
    assert r.code == 2 and "cannot be decrypted with the identity given" in r.err and "Traceback" not in r.err
    r = env.cli("backup", "restore", bid, "--yes", "--identity", str(wrong), "--json")  # a usage error, not a failed restore
    assert r.code == 2 and '"kind": "usage"' in r.err
    r = env.cli("backup", "verify", bid, "--identity", str(wrong))
    assert r.code == 2 and "cannot be decrypted" in r.err  # a key error, not a verdict on the backup
    assert db_state(env.pg, env.db) == damaged and tree_state(env.uploads) == tree and databases(env.pg) == dbs


def test_tampered_encrypted_object_is_an_integrity_failure(env, encrypted):
    bid, key, _, _ = encrypted
    _damage(env)
    damaged, dbs = db_state(env.pg, env.db), databases(env.pg)
    path = env.store_dir / env.service().get(bid).object("database").key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    r = env.cli("backup", "restore", bid, "--yes", "--identity", str(key))
    assert r.code == 1 and "integrity check failed" in r.err
    assert db_state(env.pg, env.db) == damaged and databases(env.pg) == dbs


def test_exec_tool_missing_fails_in_one_sentence_but_verify_works(env):
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    bid = r.json()[0]["id"]
    state = db_state(env.pg, env.db)
    env.write_config(tenant_extra='exec = ["no-such-exec-tool", "exec", "acme", "--"]')
    r = env.cli("backup", "restore", bid, "--yes")
    assert r.code == 1 and "cannot start no-such-exec-tool" in r.err and len(r.err.strip().splitlines()) == 1
    r = env.cli("backup", "verify", bid, "--drill")
    assert r.code == 1 and "cannot start no-such-exec-tool" in r.err
    r = env.cli("backup", "verify", bid)  # integrity needs no server: the TOC is read by a local pg_restore
    assert r.code == 0, r.err
    assert db_state(env.pg, env.db) == state
