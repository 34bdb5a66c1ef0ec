"""Catalogs of many records, made cheaply: valid record JSON files modelled on a real record
(written straight into a local store's records/ or PUT into moto's S3), not real backups.

Run alone for the issue-16 table (``backup list`` at 100,000 records, local and S3, cold and
warm cache, peak RSS): ``.venv/bin/python bench/listing.py --records 100000``.
"""

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


def fake_records(model: dict, n: int, tenants: int = 1) -> list[tuple[str, bytes]]:
    """``n`` (key, JSON) pairs: the model record with a new id, times, object keys, sequence
    and record_sha256 each (spread over ``tenants`` tenants of the model's database)."""
    from dumpsafe.catalog import _content_sha256

    rnd = random.Random(7)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    out = []
    seq: dict[str, int] = {}
    for i in reversed(range(n)):  # oldest first, so sequences grow with time
        created = t0 - timedelta(minutes=7 * i)
        tenant = model["tenant"] if tenants == 1 else f"{model['tenant']}{i % tenants}"
        bid = f"{tenant}.{model['database']}.{created:%Y%m%dT%H%M%SZ}.{''.join(rnd.choices(ALPHABET, k=8))}"
        rec = dict(model)
        rec["id"] = bid
        rec["tenant"] = tenant
        rec["created_at"] = created.isoformat().replace("+00:00", "Z")
        rec["completed_at"] = (created + timedelta(seconds=40)).isoformat().replace("+00:00", "Z")
        rec["objects"] = [dict(o, key=f"objects/{bid}/{o['key'].rsplit('/', 1)[-1]}") for o in model.get("objects", [])]
        rec["location"] = model["location"].rsplit("/objects/", 1)[0] + f"/objects/{bid}/"
        seq[tenant] = seq.get(tenant, 0) + 1
        rec["sequence"] = seq[tenant]
        rec.pop("record_sha256", None)
        rec["record_sha256"] = _content_sha256(rec)
        out.append((f"records/{bid}.json", (json.dumps(rec, indent=2, sort_keys=True) + "\n").encode()))
    return out


def fabricate_local(root: Path, model: dict, n: int, tenants: int = 1) -> None:
    (root / "records").mkdir(parents=True, exist_ok=True)
    for key, data in fake_records(model, n, tenants):
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


def fabricate_s3(s3: MotoS3, bucket: str, model: dict, n: int, tenants: int = 1) -> None:
    client = s3.client()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), fake_records(model, n, tenants)))


# ---- the issue-16 listing table (run this file) ------------------------------------------------
def model_record() -> dict:
    """A record shaped like a real one: a dozen tables, a dump and an uploads object."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from dumpsafe.models import BackupRecord, ObjectRef, UploadsInfo

    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    objects = [ObjectRef(role="database", key="objects/x/database.dump.zst", size_bytes=212_300_000, sha256="ab" * 32,
                         raw_bytes=250_000_000),
               ObjectRef(role="uploads", key="objects/x/uploads.tar.zst", size_bytes=5_000_000, sha256="cd" * 32)]
    rec = BackupRecord(
        id="acme.app.20260101T000000Z.aaaaaaaa", tenant="acme", database="app", server_version="15.18",
        created_at=when, completed_at=when, store="main", location="file:///srv/backups/objects/x/",
        size_bytes=217_300_000, sha256="ab" * 32, tables={f"public.table_{i}": i * 1000 for i in range(12)},
        table_keys="quoted", uploads=UploadsInfo(files=25, bytes=5_000_000), objects=objects,
        client_version="15.18", dumpsafe_version="0.1.0", duration_s=5.2, sequence=1)
    return rec.to_json_dict()


def seed_manifest(store, model: dict, n: int, tenants: int) -> str:
    """The manifest ``index rebuild`` would write, built from the records just PUT (a rebuild
    over moto's 100,000-key listing takes many minutes: moto lists in O(keys) per page)."""
    import tempfile as _tf

    from dumpsafe.catalog import Catalog, _row, check_record

    with _tf.TemporaryDirectory() as d:
        cat = Catalog(store, Path(d))
        cat.cache.bind(store.name, store.url())
        recs = (check_record(data) for _, data in fake_records(model, n, tenants))
        cat.cache.put_many((_row(store.name, r, None), r.model_dump_json().encode()) for r in recs)
        cat.cache.db.commit()
        key = cat.compact(force=True, resync=False)
        cat.cache.close()
        return key


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from measure import run

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--tenants", type=int, default=200)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--no-s3", action="store_true")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "listing.json")
    args = p.parse_args(argv)
    n = args.records
    work = Path(tempfile.mkdtemp(prefix="dumpsafe-listing-"))
    log = lambda msg: print(f"[{datetime.now(timezone.utc):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    model = model_record()
    t = time.perf_counter()
    fabricate_local(work / "store", model, n, args.tenants)
    log(f"local: {n:,} records written in {time.perf_counter() - t:.1f} s")
    toml = f'state_dir = "{work / "state"}"\n\n[stores.local]\nkind = "local"\npath = "{work / "store"}"\n'
    s3 = None
    env = dict(os.environ)
    if not args.no_s3 and s3_available():
        s3 = MotoS3(work / "moto.log")
        s3.start()
        env.update(s3.env())
        os.environ.update(s3.env())
        t = time.perf_counter()
        fabricate_s3(s3, "bench-catalog", model, n, args.tenants)
        log(f"S3: {n:,} records PUT in {time.perf_counter() - t:.1f} s")
        toml += s3.store_toml("s3", "bench-catalog")
    (work / "dumpsafe.toml").write_text(toml)
    env["DUMPSAFE_CONFIG"] = str(work / "dumpsafe.toml")
    dumpsafe = [str(Path(sys.executable).parent / "dumpsafe")]
    results: dict[str, dict] = {}
    try:
        s = run(dumpsafe + ["index", "rebuild", "--store", "local", "--json"], env=env)
        assert s.rc == 0, s.stderr
        results[f"index rebuild (local, {n:,} records: reads every record, writes the manifest)"] = {
            "wall_s": [s.wall_s], "rss": [s.peak_rss], "cpu_s": [s.cpu_s]}
        log(f"local index rebuild: {s.wall_s:.2f} s")
        stores = ["local"]
        if s3:
            from dumpsafe.config_load import load_config
            from dumpsafe.storage import open_store

            t = time.perf_counter()
            seed_manifest(open_store(load_config(work / "dumpsafe.toml"), "s3"), model, n, args.tenants)
            log(f"S3 manifest written in {time.perf_counter() - t:.1f} s")
            stores.append("s3")
        cache = work / "state" / "cache"  # the SQLite file and the manifests' local copies
        for rep in range(args.reps):
            for store in stores:
                for warm in (False, True):
                    if not warm:
                        shutil.rmtree(cache, ignore_errors=True)
                    out = work / "list.json"
                    with open(out, "wb") as fh:
                        s = run(dumpsafe + ["backup", "list", "--store", store, "--json"], env=env, stdout=fh)
                    assert s.rc == 0, s.stderr
                    count = sum(1 for _ in open(out, "rb")) - 2
                    assert count == n, f"{store}: {count} records listed, expected {n}"
                    name = f"backup list --json, {n:,} records ({'S3, moto' if store == 's3' else 'local'}, {'warm' if warm else 'cold'} cache)"
                    r = results.setdefault(name, {"wall_s": [], "rss": [], "cpu_s": []})
                    r["wall_s"].append(s.wall_s)
                    r["rss"].append(s.peak_rss)
                    r["cpu_s"].append(s.cpu_s)  # the CLI's own CPU (not moto's): load does not change it much
                    log(f"rep {rep + 1}: {name}: {s.wall_s:.2f} s, CPU {s.cpu_s:.2f} s, {s.peak_rss / 2**20:.0f} MiB")
    finally:
        if s3:
            s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"records": n, "tenants": args.tenants, "results": results,
                                    "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}"}, indent=2))
    print("| case | wall s (median) | range | CPU s (median) | peak RSS MiB |\n|---|---:|---:|---:|---:|")
    for name, r in results.items():
        w, c = sorted(r["wall_s"]), sorted(r.get("cpu_s") or [float("nan")])
        print(f"| {name} | {w[len(w) // 2]:.2f} | {w[0]:.2f}-{w[-1]:.2f} | {c[len(c) // 2]:.2f} | {max(r['rss']) / 2**20:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
