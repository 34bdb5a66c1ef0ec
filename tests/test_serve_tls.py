"""Issue 12: `dumpsafe serve --tls-cert/--tls-key` answers real HTTPS (a self-signed
certificate made here), and its access log never prints a query string (finding 7)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import time

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from live import free_port


def _self_signed(dirpath):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = dirpath / "cert.pem", dirpath / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_serve_over_https_and_no_query_string_in_the_log(env, tmp_path):
    cert, key = _self_signed(tmp_path)
    proc_env = env.subprocess_env()
    made = subprocess.run(env.cli_argv("token", "create", "--tenant", "acme", "--scope", "backups:read"),
                          env=proc_env, capture_output=True, text=True, timeout=60)
    token = made.stdout.strip()
    port = free_port()
    server = subprocess.Popen(env.cli_argv("serve", "--port", str(port), "--no-scheduler", "--tls-cert", str(cert),
                                           "--tls-key", str(key)),
                              env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"https://127.0.0.1:{port}"
    ctx = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(url + "/healthz", verify=ctx, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.1)
        ok = httpx.get(url + "/v1/backups", headers={"Authorization": f"Bearer {token}"}, verify=ctx, timeout=30)
        leaked = httpx.get(url + "/v1/backups", params={"token": token, "tenant": "acme"}, verify=ctx, timeout=30)
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            plain = "answered"
        except httpx.HTTPError:
            plain = "refused"
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    assert ok.status_code == 200 and leaked.status_code == 401
    assert plain == "refused"  # TLS only
    assert "GET /v1/backups" in log and "?<query omitted>" in log
    assert token not in log and token.split("_", 2)[2] not in log and "tenant=acme" not in log


def test_tls_options_are_checked_first(env, tmp_path):
    r = env.cli("serve", "--tls-cert", str(tmp_path / "missing.pem"))
    assert r.code == 2 and "pass both --tls-cert and --tls-key" in r.err
    r = env.cli("serve", "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(tmp_path / "missing.key"))
    assert r.code == 2 and "cannot load them" in r.err and "Traceback" not in r.err
