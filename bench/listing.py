"""Catalogs of many records, made cheaply: valid record JSON files modelled on a real record
(written straight into a local store's records/ or PUT into moto's S3), not real backups."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def fake_records(model: dict, n: int) -> list[tuple[str, bytes]]:
    """``n`` (key, JSON) pairs: the model record with a new id, times and object keys each."""
    rnd = random.Random(7)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    out = []
    for i in range(n):
        created = t0 - timedelta(minutes=7 * i)
        bid = f"{model['tenant']}.{model['database']}.{created:%Y%m%dT%H%M%SZ}.{''.join(rnd.choices(ALPHABET, k=8))}"
        rec = dict(model)
        rec["id"] = bid
        rec["created_at"] = created.isoformat().replace("+00:00", "Z")
        rec["completed_at"] = (created + timedelta(seconds=40)).isoformat().replace("+00:00", "Z")
        rec["objects"] = [dict(o, key=f"objects/{bid}/{o['key'].rsplit('/', 1)[-1]}") for o in model.get("objects", [])]
        rec["location"] = model["location"].rsplit("/objects/", 1)[0] + f"/objects/{bid}/"
        out.append((f"records/{bid}.json", (json.dumps(rec, indent=2, sort_keys=True) + "\n").encode()))
    return out


def fabricate_local(root: Path, model: dict, n: int) -> None:
    (root / "records").mkdir(parents=True, exist_ok=True)
    for key, data in fake_records(model, n):
        (root / key).write_bytes(data)


def s3_available() -> bool:
    return importlib.util.find_spec("dumpsafe.storage.s3") is not None and _moto_server() is not None


def _moto_server() -> str | None:
    near = Path(sys.executable).parent / "moto_server"
    return str(near) if near.exists() else shutil.which("moto_server")


class MotoS3:
    """moto's S3 server on a free port (objects live in its memory)."""

    def __init__(self, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def start(self) -> None:
        self.proc = subprocess.Popen([_moto_server(), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, env=dict(os.environ, **self.env()))
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"moto_server did not start (see {self.log})")
                time.sleep(0.2)
        for b in ("bench-data", "bench-catalog"):
            self.client().create_bucket(Bucket=b)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="bench", aws_secret_access_key="bench")

    def store_toml(self, name: str, bucket: str) -> str:
        return f'\n[stores.{name}]\nkind = "s3"\nbucket = "{bucket}"\nendpoint_url = "{self.url}"\nregion = "us-east-1"\n'

    def rss(self) -> int:
        from measure import tree_rss

        return tree_rss(self.proc.pid) if self.proc else 0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def fabricate_s3(s3: MotoS3, bucket: str, model: dict, n: int) -> None:
    client = s3.client()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), fake_records(model, n)))
