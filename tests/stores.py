"""Real object-store servers for tests: moto's S3 server and gcp-storage-emulator.

Both run as child processes on free 127.0.0.1 ports for the whole session. Import the
fixtures into a test module (``from stores import s3_server, gcs_server, make_store``)
or a conftest. ``make_store(kind)`` returns (Config, Store) for "local" (a tmp dir),
"s3" or "gcs" (a fresh bucket each call). ``TcpProxy`` sits between a store and its
server so a test can cut the server off mid-upload, as if it had been stopped.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from dumpsafe.config import Config
from dumpsafe.config_load import config_from_dict
from dumpsafe.storage import open_store
from dumpsafe.storage.base import Store

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never wait on an instance-metadata lookup
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"server at {url} did not answer within {timeout}s") from None
            time.sleep(0.1)


class Server:
    """A child-process HTTP server on a free port; stop() terminates it."""

    def __init__(self, argv: list[str], port: int, health_path: str = "/", env: dict[str, str] | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        try:
            wait_http(self.url + health_path, self.proc)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_moto(env: dict[str, str] | None = None) -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port,
                  "/moto-api/", env)


def start_gcs_emulator() -> Server:
    port = free_port()
    return Server(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
         "--in-memory", "--quiet"],
        port,
    )


class TcpProxy:
    """A TCP forwarder to ``upstream``; ``cut()`` closes every connection and the listener,
    which is what a client sees when the server process dies."""

    def __init__(self, upstream_port: int, *, fail_first: int = 0, fail_status: str = "503 Slow Down"):
        self.upstream = ("127.0.0.1", upstream_port)
        self.fail_remaining = fail_first  # answer this many connections with an HTTP error
        self.fail_status = fail_status
        self.connections = 0
        self.requests: list[str] = []  # request lines seen going upstream (best effort)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.bytes_up = 0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._cut.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.fail_remaining > 0:
                self.fail_remaining -= 1
                threading.Thread(target=self._fail, args=(client,), daemon=True).start()
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._cut.is_set():
                    client.close()
                    server.close()
                    return
                self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _fail(self, client: socket.socket) -> None:
        """Answer one request with an S3-style error (GCS clients only read the status)."""
        try:
            client.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(65536)
                if not data:
                    break
                head += data
            code = "".join(self.fail_status.split()[1:]) or "Error"
            body = f"<Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>".encode()
            client.sendall(
                f"HTTP/1.1 {self.fail_status}\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
        except OSError:
            pass
        finally:
            client.close()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self._cut.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for s in ready:
                    data = s.recv(1 << 20)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
                    if s is a:
                        self.bytes_up += len(data)
                        if data[:7].split(b" ")[0] in (b"GET", b"PUT", b"POST", b"DELETE", b"HEAD"):
                            self.requests.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self._cut.set()
        self.listener.close()
        with self._lock:
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def fake_aws_env() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in FAKE_AWS}
    for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        saved.setdefault(k, os.environ.get(k))
    os.environ.pop("AWS_PROFILE", None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ.update(FAKE_AWS)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def s3_server(fake_aws_env: None) -> Iterator[Server]:
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[Server]:
    server = start_gcs_emulator()
    saved = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = server.url
    yield server
    if saved is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = saved
    server.stop()


def new_bucket_name() -> str:
    return f"dumpsafe-test-{uuid.uuid4().hex[:16]}"


def create_s3_bucket(endpoint_url: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1").create_bucket(Bucket=bucket)


def create_gcs_bucket(bucket: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    storage.Client(project="test", credentials=AnonymousCredentials()).create_bucket(bucket)


def store_section(kind: str, tmp_path: Path, request: Any, *, bucket: str | None = None,
                  create: bool = True, **extra: Any) -> dict[str, Any]:
    """A [stores.NAME] table for ``kind`` with a fresh bucket (servers started on demand)."""
    if kind == "local":
        return {"kind": "local", "path": str(tmp_path / f"store-{uuid.uuid4().hex[:8]}"), **extra}
    bucket = bucket or new_bucket_name()
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        section = {"kind": "s3", "bucket": bucket, "prefix": "pg/", "endpoint_url": server.url,
                   "region": "us-east-1", **extra}
        if create:
            create_s3_bucket(server.url, bucket)
        return section
    if kind == "gcs":
        request.getfixturevalue("gcs_server")
        section = {"kind": "gcs", "bucket": bucket, "prefix": "pg/", "project": "test", **extra}
        if create:
            create_gcs_bucket(bucket)
        return section
    raise ValueError(kind)


@pytest.fixture
def make_store(tmp_path: Path, request: Any) -> Callable[..., tuple[Config, Store]]:
    """make_store(kind, name="main", **store_keys) -> (Config, Store) on a fresh bucket/dir."""

    def make(kind: str, name: str = "main", *, create: bool = True, bucket: str | None = None,
             **extra: Any) -> tuple[Config, Store]:
        section = store_section(kind, tmp_path, request, bucket=bucket, create=create, **extra)
        cfg = config_from_dict({"state_dir": str(tmp_path / "state"), "stores": {name: section}},
                               tmp_path / "dumpsafe.toml")
        return cfg, open_store(cfg, name)

    return make
