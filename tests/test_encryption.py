"""Tenant-held keys: backups encrypted to age recipients while streaming."""

import io
import stat

import pyrage
import zstandard

from dumpsafe.crypto import load_identities
from dumpsafe.pipeline import unpack_stream


def test_keygen_writes_0600_identity_and_prints_recipient(env, tmp_path):
    key = tmp_path / "acme.key"
    r = env.cli("keygen", "--output", str(key))
    assert r.code == 0, r.err
    recipient = r.out.strip()
    assert recipient.startswith("age1") and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "AGE-SECRET-KEY-" in key.read_text() and "AGE-SECRET-KEY-" not in r.out + r.err
    again = env.cli("keygen", "--output", str(key))
    assert again.code == 2 and "already exists" in again.err


def test_encrypted_backup_roundtrip(env, tmp_path):
    key = tmp_path / "acme.key"
    recipient = env.cli("keygen", "--output", str(key)).out.strip()
    env.tenant_extra = f'encrypt_to = ["{recipient}"]'
    env.write_config()
    rec = env.cli("backup", "create", "acme", "--json").json()[0]
    assert rec["encryption"] == "age"
    assert all(o["key"].endswith(".age") for o in rec["objects"])
    st = env.service().store("local")
    for o in rec["objects"]:
        stored = st.get_bytes(o["key"])
        assert stored.startswith(b"age-encryption.org/v1")
        try:
            zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored)).read()
        except zstandard.ZstdError:
            pass
        else:
            raise AssertionError("encrypted object decompressed without the key")
    # with the tenant's identity the dump comes back as a pg_dump custom archive
    out = io.BytesIO()
    unpack_stream(io.BytesIO(st.get_bytes(rec["objects"][0]["key"])), out, identities=load_identities(key, None, "x"))
    assert out.getvalue().startswith(b"PGDMP")
    # and the service that wrote it cannot read it back: it only has the public key
    assert "AGE-SECRET-KEY" not in env.config_path.read_text()


def test_bad_recipient_is_a_config_error(env):
    env.tenant_extra = 'encrypt_to = ["age1notakey"]'
    env.write_config()
    r = env.cli("backup", "create", "acme")
    assert r.code == 2
    assert "tenants.acme.encrypt_to" in r.err and "is not an age recipient" in r.err


def test_wrong_identity_refused(tmp_path):
    from pyrage import x25519

    a, b = x25519.Identity.generate(), x25519.Identity.generate()
    buf = io.BytesIO()
    pyrage.encrypt_io(io.BytesIO(b"data"), buf, [a.to_public()])
    keyfile = tmp_path / "b.key"
    keyfile.write_text(f"# comment\n{b}\n")
    ids = load_identities(keyfile, None, "backup x")
    buf.seek(0)
    try:
        pyrage.decrypt_io(buf, io.BytesIO(), ids)
    except pyrage.DecryptError:
        pass
    else:
        raise AssertionError("decrypted with the wrong identity")
