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


def _serve(env, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(env.cli_argv("serve", "--port", str(port), "--no-scheduler", *extra),
                              env=env.subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return server, port


def _wait(server: subprocess.Popen, url: str, **kw) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert server.poll() is None, server.stdout.read()
        try:
            if httpx.get(url + "/healthz", timeout=1, **kw).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "serve did not come up"
        time.sleep(0.1)


def _token(env) -> str:
    made = subprocess.run(env.cli_argv("token", "create", "--tenant", "acme", "--scope", "backups:read"),
                          env=env.subprocess_env(), capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_the_access_log_never_prints_a_query_string(env):
    token = _token(env)
    server, port = _serve(env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(server, url)
        leaked = httpx.get(url + "/v1/backups", params={"token": token, "tenant": "acme"}, timeout=30)
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    assert leaked.status_code == 401  # a token in a query string is not a token ...
    assert "GET /v1/backups?<query omitted>" in log  # ... and does not land in the server log
    assert token not in log and token.split("_", 2)[2] not in log and "tenant=acme" not in log


def test_serve_over_https(env, tmp_path):
    cert, key = _self_signed(tmp_path)
    token = _token(env)
    server, port = _serve(env, "--tls-cert", str(cert), "--tls-key", str(key))
    url = f"https://127.0.0.1:{port}"
    ctx = ssl.create_default_context(cafile=str(cert))
    try:
        _wait(server, url, verify=ctx)
        ok = httpx.get(url + "/v1/backups", headers={"Authorization": f"Bearer {token}"}, verify=ctx, timeout=30)
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            plain = "answered"
        except httpx.HTTPError:
            plain = "refused"
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert ok.status_code == 200 and ok.json() == []
    assert plain == "refused"  # TLS only


def test_tls_options_are_checked_first(env, tmp_path):
    r = env.cli("serve", "--tls-cert", str(tmp_path / "missing.pem"))
    assert r.code == 2 and "pass both --tls-cert and --tls-key" in r.err
    r = env.cli("serve", "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(tmp_path / "missing.key"))
    assert r.code == 2 and "cannot load them" in r.err and "Traceback" not in r.err
