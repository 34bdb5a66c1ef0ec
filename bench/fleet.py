"""Fleet throughput (issue 16): tenants backed up per minute with 1, 2 and 3 `dumpsafe worker`s.

    python bench/fleet.py [--tenants 24] [--rows 5000] [--workers 1,2,3] [--concurrency 2]

Two throwaway PostgreSQL clusters hold the tenants (one database each, split over the two
"servers"); a database on the first is the control-plane queue. For each worker count: a
fresh queue database, the workers started and registered first (their start-up is not
timed), then one backup job per tenant queued, timed until the queue drains, every backup
verified afterwards. max_parallel_per_server = 2 x concurrency, so the per-server limit does
not cap the measurement. Writes bench/FLEET.md. On a 2-core machine the dumps, compression
and checksums of every worker share the same 2 cores: expect little gain past one worker.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from dumpsafe.config_load import load_config  # noqa: E402
from dumpsafe.devcluster import Cluster, load_sample  # noqa: E402

PW_ENV = "BENCH_FLEET_PGPASSWORD"


def write_config(root: Path, control: Cluster, queue_db: str, tenants: dict, per_server: int) -> Path:
    lines = ['state_dir = "state"', f"max_parallel_per_server = {per_server}",
             f'queue = "postgresql://postgres@127.0.0.1:{control.port}/{queue_db}"', f'queue_password_env = "{PW_ENV}"',
             '[stores.local]', 'kind = "local"', 'path = "backups"', ""]
    for name, (server, db) in tenants.items():
        lines += [f"[tenants.{name}]", 'host = "127.0.0.1"', f"port = {server.port}", 'user = "postgres"',
                  f'password_env = "{PW_ENV}"', f'databases = ["{db}"]', ""]
    path = root / "dumpsafe.toml"
    path.write_text("\n".join(lines))
    return path


def run_once(root: Path, control: Cluster, tenants: dict, workers: int, concurrency: int) -> dict:
    from dumpsafe.queue import JobQueue
    from dumpsafe.service import BackupService

    queue_db = "bq_" + secrets.token_hex(4)
    control.create_database(queue_db)
    shutil.rmtree(root / "backups", ignore_errors=True)
    cfg_path = write_config(root, control, queue_db, tenants, 2 * concurrency)
    config = load_config(cfg_path)
    q = JobQueue(config)
    q.ensure_schema()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    procs = [subprocess.Popen([sys.executable, "-m", "dumpsafe", "--config", str(cfg_path), "worker",
                               "--concurrency", str(concurrency), "--poll", "0.2", "--heartbeat", "2"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    try:
        with q.connect() as c:
            while c.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0] < workers:
                time.sleep(0.1)
        t0 = time.monotonic()
        ids = [q.defer("backup", t, actor="bench").id for t in tenants]
        with q.connect() as c:
            while c.execute("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo','doing')").fetchone()[0]:
                time.sleep(0.05)
        elapsed = time.monotonic() - t0
        failed = [i for i in ids if q.job(i).status != "succeeded"]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
        q.close()
    svc = BackupService(config)
    recs = svc.list()
    ok = sum(svc.verify(r.id).last_verification.result == "passed" for r in recs)
    control.drop_database(queue_db)
    return {"workers": workers, "seconds": elapsed, "per_min": len(tenants) / elapsed * 60, "failed": len(failed),
            "verified": ok, "backups": len(recs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenants", type=int, default=24)
    ap.add_argument("--rows", type=int, default=5000, help="customers per tenant database (orders: 4x)")
    ap.add_argument("--workers", default="1,2,3")
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dumpsafe-fleet-bench-"))
    pw = "pw-" + secrets.token_hex(8)
    os.environ[PW_ENV] = pw  # the tenants' and the queue's password (one throwaway cluster password)
    servers = [Cluster(password=pw).init().start() for _ in range(2)]
    try:
        tenants = {}
        for i in range(args.tenants):
            server, db = servers[i % 2], f"b_{i:03d}"
            server.create_database(db)
            load_sample(server, db, customers=args.rows, orders=args.rows * 4)
            tenants[f"t{i:03d}"] = (server, db)
        rows = [run_once(root, servers[0], tenants, int(w), args.concurrency) for w in args.workers.split(",")]
    finally:
        for s in servers:
            s.destroy()
        shutil.rmtree(root, ignore_errors=True)
    out = [f"# Fleet throughput ({datetime.now(timezone.utc):%Y-%m-%d})", "",
           f"{args.tenants} tenants (one database each, {args.rows} customers / {args.rows * 4} orders) on 2 PostgreSQL "
           f"clusters; each worker `--concurrency {args.concurrency}`; local store; {os.cpu_count()} CPU cores "
           f"({platform.machine()}), shared with everything else on the host.", "",
           "| workers | seconds | tenants/minute | failed | backups verified |", "|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['workers']} | {r['seconds']:.1f} | {r['per_min']:.0f} | {r['failed']} | {r['verified']}/{r['backups']} |")
    out += ["", "Every worker's dumps, compression and SHA-256 run on the same cores: on a 2-core host the work is "
            "CPU-bound, so more workers mostly add contention. Across hosts, throughput grows with the hosts' cores "
            "up to max_parallel_per_server per database server."]
    text = "\n".join(out) + "\n"
    (HERE / "FLEET.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
