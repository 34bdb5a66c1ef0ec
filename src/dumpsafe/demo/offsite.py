"""Demo steps: an off-host S3-compatible store, a 3-2-1 copy, and a fresh host that sees
and restores every backup from the bucket alone. The S3 server is moto's standalone server
on 127.0.0.1 (installed with the dev extra), a stand-in for AWS S3, MinIO or Ceph."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from dumpsafe.demo.runner import Demo
from dumpsafe.devcluster import free_port

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "demo-access-key",
    "AWS_SECRET_ACCESS_KEY": "demo-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _start_moto() -> tuple[subprocess.Popen, str] | None:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return None
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    return None


def offsite_steps(demo: Demo, backup_id: str) -> None:
    demo.step("Off-host: an S3-compatible store (moto's S3 server on 127.0.0.1 stands in for S3/MinIO)")
    started = _start_moto()
    if started is None:
        demo.console.print("moto is not installed (pip install 'dumpsafe[dev]'): skipping the S3 steps")
        return
    proc, url = started
    demo.env.update(FAKE_AWS)
    try:
        import boto3

        boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id=FAKE_AWS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket="demo-backups")
        offsite = f'''
[stores.offsite]
kind = "s3"
bucket = "demo-backups"
prefix = "pg/"
endpoint_url = "{url}"
'''
        demo.config.write_text(demo.config.read_text().replace("\n[tenants.demo]", offsite + "\n[tenants.demo]", 1))
        demo.console.print(f"added to {demo.config.name}:{offsite}", highlight=False, markup=False)
        demo.run("backup", "create", "demo", "--store", "offsite")
        demo.step("3-2-1: copy the first backup to the bucket; its SHA-256 is checked on arrival")
        demo.run("backup", "copy", backup_id, "--to", "offsite")

        demo.step("A fresh host: empty state_dir, only the bucket in its config, sees every backup and restores")
        fresh = demo.workdir / "fresh-host"
        fresh.mkdir()
        tenant = demo.config.read_text().split("[tenants.demo]", 1)[1].replace('store = "local"', 'store = "offsite"')
        (fresh / "dumpsafe.toml").write_text(f'state_dir = ".dumpsafe"\n{offsite}\n[tenants.demo]{tenant}')
        cfg = fresh / "dumpsafe.toml"
        demo.run("backup", "list", config=cfg)
        newest = demo.run("backup", "list", "--json", capture_json=True, show=False, config=cfg)[0]["id"]
        demo.run("backup", "restore", newest, "--database", "app_from_s3", "--no-uploads", config=cfg)
        with demo.cluster.connect("app_from_s3") as c:
            n = c.execute("SELECT count(*) FROM orders").fetchone()[0]
        demo.console.print(f"app_from_s3.orders has {n} rows, restored from the bucket by a host that never made a backup",
                           highlight=False)
        demo.cluster.drop_database("app_from_s3")
        # back to the local store alone for the rest of the tour
        demo.config.write_text(demo.config.read_text().replace(offsite, "", 1))
        for name in ("index-offsite.json",):
            (demo.workdir / ".dumpsafe" / "cache" / name).unlink(missing_ok=True)
    finally:
        proc.terminate()
        proc.wait(10)
