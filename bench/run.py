"""dumpsafe benchmarks against `pg_dump -Fc`, in one run, alternating repetitions.

    make bench                      # 1 GB, 3 repetitions
    make bench BENCH_SIZE=100MB BENCH_REPS=5
    python bench/run.py --size 100MB --reps 3 [--no-s3] [--no-restore]

A throwaway PostgreSQL cluster gets a generated dataset (bench/dataset.py); every case runs
once per repetition, cases interleaved (A B C, B C A, ...) so background noise hits them
alike. The report shows medians and ratios against the baseline measured in the same run,
prints a Markdown table and writes it to bench/RESULTS.md (and the raw figures to
bench/results/<size>.json, which the RSS-flatness row compares across sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import dataset  # noqa: E402
import listing  # noqa: E402
from report import STARTUP_HELP  # noqa: E402
import report  # noqa: E402
from measure import Sample, Series, run  # noqa: E402

from dumpsafe.config_load import load_config  # noqa: E402
from dumpsafe.devcluster import Cluster  # noqa: E402
from dumpsafe.engines.postgres import find_tool  # noqa: E402
from dumpsafe.service import BackupService  # noqa: E402

PASSWORD_ENV = "BENCH_PGPASSWORD"
DB = "app"
TENANT = "bench"


class GcsEmulator:
    """gcp-storage-emulator (in memory) on a free port, with one bucket."""

    def __init__(self, log_path: Path):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import urllib.request

        self.proc = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                                      "--port", str(self.port), "--in-memory", "--quiet"],
                                     stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"gcp_storage_emulator did not start (see {self.log_path})")
                time.sleep(0.2)
        os.environ["STORAGE_EMULATOR_HOST"] = self.url
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        storage.Client(project="bench", credentials=AnonymousCredentials()).create_bucket("bench-gcs")

    def store_toml(self) -> str:
        return '\n[stores.gcs]\nkind = "gcs"\nbucket = "bench-gcs"\nproject = "bench"\n'

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def gcs_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("gcp_storage_emulator", "google.cloud.storage"))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rotations(cases: list, reps: int):
    """Rep r runs the cases starting at r mod n: every case sees every position."""
    for r in range(reps if cases else 0):  # every case skipped: nothing to run
        k = r % len(cases)
        yield r, cases[k:] + cases[:k]


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.size_gb = dataset.parse_size(args.size)
        self.cluster = Cluster(password="bench-secret", base=work / "pg")
        self.config_path = work / "dumpsafe.toml"
        self.env = dict(os.environ, **{PASSWORD_ENV: self.cluster.password})
        self.env.pop("DUMPSAFE_CONFIG", None)
        self.env["PYTHONPATH"] = str(HERE.parent / "src") + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env["DUMPSAFE_PROFILE"] = "1"  # restores and drills print their per-step wall times (dumpsafe/profile.py)
        self.series: dict[str, Series] = {}
        self.notes: list[str] = []
        self.s3 = None  # listing.MotoS3 when the S3 store exists
        self.gcs: GcsEmulator | None = None
        self.info: dict = {}

    # ---- setup ------------------------------------------------------------------------------
    def setup(self) -> None:
        log(f"cluster + {self.args.size} dataset in {self.work}")
        self.cluster.init().start()
        self.info["dataset"] = dataset.load(self.cluster, DB, self.size_gb, log=log)
        self.pg_dump = find_tool("pg_dump", self.cluster.version[0])[0]
        self.pg_restore = find_tool("pg_restore", self.cluster.version[0])[0]
        self.pg_env = dict(self.env, PGHOST=self.cluster.host, PGPORT=str(self.cluster.port), PGUSER="postgres",
                           PGPASSWORD=self.cluster.password)
        if not self.args.no_s3 and listing.s3_available():
            self.s3 = listing.MotoS3(self.work / "moto.log")
            self.s3.start()
        if not self.args.no_gcs and self.size_gb <= self.args.gcs_max_gb and gcs_available():
            self.gcs = GcsEmulator(self.work / "gcs.log")
            self.gcs.start()
        os.environ[PASSWORD_ENV] = self.cluster.password  # for the in-process service below
        self.postmaster = int((self.cluster.data / "postmaster.pid").read_text().split()[0])
        self.write_config()
        self.service = BackupService(load_config(self.config_path))

    def write_config(self) -> None:
        s3 = ""
        if self.s3:
            s3 = self.s3.store_toml("s3", "bench-data") + self.s3.store_toml("catalog_s3", "bench-catalog")
        if self.gcs:
            s3 += self.gcs.store_toml()
        self.config_path.write_text(
            f"""state_dir = "{self.work / 'state'}"

[stores.local]
kind = "local"
path = "{self.work / 'store'}"

[stores.catalog]
kind = "local"
path = "{self.work / 'catalog'}"
{s3}
[tenants.{TENANT}]
host = "{self.cluster.host}"
port = {self.cluster.port}
user = "postgres"
password_env = "{PASSWORD_ENV}"
databases = ["{DB}"]
store = "local"
"""
        )
        if self.s3:
            self.env.update(self.s3.env())
            os.environ.update(self.s3.env())
        if self.gcs:
            self.env["STORAGE_EMULATOR_HOST"] = self.gcs.url

    def run(self, argv: list[str], **kw) -> Sample:
        return run(argv, server=self.postmaster, **kw)

    def dumpsafe(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dumpsafe", "--config", str(self.config_path), *args]

    def track(self, name: str) -> Series:
        return self.series.setdefault(name, Series(name))

    # ---- backup -----------------------------------------------------------------------------
    def backup_cases(self) -> list:
        out_file = self.work / "plain.dump"

        def pg_dump_fc() -> tuple[Sample, int]:
            with open(out_file, "wb") as fh:
                s = self.run([self.pg_dump, "-Fc", f"--dbname={DB}"], env=self.pg_env, stdout=fh)
            return s, out_file.stat().st_size

        def pg_dump_raw() -> tuple[Sample, int | None]:
            return self.run([self.pg_dump, "-Fc", "-Z0", f"--dbname={DB}"], env=self.pg_env), None

        def create(store: str):
            def case() -> tuple[Sample, int]:
                out = self.work / "create.json"
                with open(out, "wb") as fh:
                    s = self.run(self.dumpsafe("backup", "create", TENANT, "--store", store, "--json"), env=self.env, stdout=fh)
                if s.rc != 0:
                    return s, 0
                data = json.loads(out.read_text())
                rec = data[0] if isinstance(data, list) else data
                self.last_record = rec
                self.service.delete(rec["id"], store=store)  # keep the store from growing
                return s, rec["size_bytes"]
            return case

        cases = [("pg_dump -Fc (gzip)", pg_dump_fc), ("pg_dump -Fc -Z0 > /dev/null (raw read)", pg_dump_raw),
                 ("dumpsafe backup create (local)", create("local"))]
        if self.s3:
            if self.size_gb <= self.args.s3_max_gb:
                cases.append(("dumpsafe backup create (S3, moto)", create("s3")))
            else:
                self.notes.append(f"S3 backup and restore skipped above {self.args.s3_max_gb:g} GB: moto keeps objects in memory.")
        if self.gcs:
            cases.append(("dumpsafe backup create (GCS, emulator)", create("gcs")))
        elif not self.args.no_gcs:
            self.notes.append(f"GCS backup and restore skipped (above {self.args.gcs_max_gb:g} GB or no emulator): "
                              "gcp-storage-emulator keeps objects in memory.")
        return cases

    def skipped(self, cases: list) -> list:
        """Cases left after --skip (substrings of case names), each skip noted."""
        kept = [c for c in cases if not any(k in c[0] for k in self.args.skip)]
        for name, _ in cases:
            if any(k in name for k in self.args.skip):
                self.notes.append(f"Not run (--skip): {name}.")
        return kept

    def bench_backup(self) -> None:
        cases = self.backup_cases()
        if self.args.no_warmup:
            self.notes.append("No warm-up run (--no-warmup): the first case of the first repetition reads a cold cache.")
        else:
            log("warm-up: one raw read (page cache) and one dumpsafe backup (bytecode, model record)")
            cases[1][1]()
            cases[2][1]()
        cases = self.skipped(cases)
        for r, order in rotations(cases, self.args.reps):
            for name, fn in order:
                s, size = fn()
                self.track(name).add(s, size)
                log(f"rep {r + 1}: {name}: {s.wall_s:.2f} s, {s.peak_rss / 2**20:.0f} MiB" + (f", {size / 2**20:.1f} MiB out" if size else ""))

    # ---- restore ----------------------------------------------------------------------------
    def bench_restore(self) -> None:
        if self.args.no_restore:
            return
        if not hasattr(self.service, "restore"):
            self.notes.append("Restore not measured: BackupService.restore is not in this tree yet.")
            return
        rec = self.service.create(TENANT, store="local")[0]
        rec_s3 = self.service.create(TENANT, store="s3")[0] if self.s3 and self.size_gb <= self.args.s3_max_gb else None
        rec_gcs = self.service.create(TENANT, store="gcs")[0] if self.gcs else None
        plain = self.work / "plain.dump"
        n = [0]

        def fresh(prefix: str) -> str:
            n[0] += 1
            return f"{prefix}_{n[0]}"

        def pg_restore() -> tuple[Sample, None]:
            db = fresh("r_plain")
            self.cluster.create_database(db)
            s = self.run([self.pg_restore, "--no-owner", f"--dbname={db}", str(plain)], env=self.pg_env)
            self.cluster.drop_database(db)
            return s, None

        jobs = max(2, min(4, os.cpu_count() or 1))  # what restore_jobs = 0 picks from 4 cores on (below: 1, streamed)

        def pg_restore_j() -> tuple[Sample, None]:
            db = fresh("r_plainj")
            self.cluster.create_database(db)
            s = self.run([self.pg_restore, "--no-owner", f"--jobs={jobs}", f"--dbname={db}", str(plain)], env=self.pg_env)
            self.cluster.drop_database(db)
            return s, None

        def ds_restore(mode: str, bid: str = rec.id):
            def case() -> tuple[Sample, None]:
                db = fresh(f"r_{mode}")
                if mode != "new":
                    self.cluster.create_database(db)  # atomic replaces an existing database
                s = self.run(self.dumpsafe("backup", "restore", bid, "--database", db, "--mode", mode, "--yes", "--json"),
                        env=self.env)
                for d in self.cluster_databases():
                    if d.startswith(db):  # the target and any kept/staging leftovers
                        self.cluster.drop_database(d)
                return s, None
            return case

        def drill() -> tuple[Sample, None]:
            return self.run(self.dumpsafe("backup", "verify", rec.id, "--drill", "--json"), env=self.env), None

        cases = [("pg_restore (plain -Fc dump)", pg_restore), ("dumpsafe restore --mode new", ds_restore("new")),
                 ("dumpsafe restore --mode atomic", ds_restore("atomic")), ("dumpsafe verify --drill", drill),
                 (f"pg_restore --jobs={jobs} (plain -Fc dump; for reference)", pg_restore_j)]
        if rec_s3 is not None:
            cases.insert(3, ("dumpsafe restore --mode new (S3, moto)", ds_restore("new", rec_s3.id)))
        if rec_gcs is not None:
            cases.insert(3, ("dumpsafe restore --mode new (GCS, emulator)", ds_restore("new", rec_gcs.id)))
        cases = self.skipped(cases)
        if not plain.exists():  # the pg_dump -Fc case was skipped: an uncompressed -Fc archive, not measured
            with open(plain, "wb") as fh:
                subprocess.run([self.pg_dump, "-Fc", "-Z0", f"--dbname={DB}"], env=self.pg_env, stdout=fh, check=True)
            self.notes.append("pg_restore's archive was written with pg_dump -Fc -Z0 (the gzip case was skipped): "
                              "pg_restore reads it without inflating, so its time is a lower (stricter) baseline.")
        for r, order in rotations(cases, self.args.reps):
            for name, fn in order:
                s, _ = fn()
                self.track(name).add(s)
                log(f"rep {r + 1}: {name}: {s.wall_s:.2f} s, {s.peak_rss / 2**20:.0f} MiB")

    def cluster_databases(self) -> list[str]:
        with self.cluster.connect() as c:
            return [r[0] for r in c.execute("SELECT datname FROM pg_database")]

    # ---- list -------------------------------------------------------------------------------
    def bench_list(self) -> None:
        model = getattr(self, "last_record", None)
        if model is None:
            model = self.service.create(TENANT, store="local")[0].to_json_dict()
        stores = [("local", "catalog", 1.0)]
        listing.fabricate_local(self.work / "catalog", model, self.args.records)
        if self.s3:
            listing.fabricate_s3(self.s3, "bench-catalog", model, self.args.records)
            stores.append(("S3", "catalog_s3", 3.0))
        # a real store has a catalog manifest (written every COMPACT_EVERY creates); the records
        # were written straight into the store, so write the one `index rebuild` writes
        for label, store, _ in stores:
            if run(self.dumpsafe("index", "rebuild", "--store", store, "--json"), env=self.env).rc != 0:
                raise RuntimeError(f"dumpsafe index rebuild --store {store} failed")
        self.notes.append(f"Listing: {self.args.records:,} records written straight into each store, then one "
                          "`dumpsafe index rebuild` (the catalog manifest a store gets from compaction).")
        cache = self.work / "state" / "cache"
        cases = []
        for label, store, _ in stores:
            for warm in (False, True):
                def case(store=store, warm=warm) -> tuple[Sample, int]:
                    if not warm:  # the SQLite catalog cache and the manifests' local copies (all stores)
                        shutil.rmtree(cache, ignore_errors=True)
                    out = self.work / "list.json"
                    with open(out, "wb") as fh:
                        s = run(self.dumpsafe("backup", "list", "--store", store, "--json"), env=self.env, stdout=fh)
                    return s, out.stat().st_size
                name = f"backup list --json, {self.args.records:,} records ({label}, {'warm' if warm else 'cold'} cache)"
                cases.append((name, case))
        # warm-up so the first 'warm' case really has a cache, and a count check
        for _, store, _ in stores:
            got = len(self.service.list(store=store))
            if got != self.args.records:
                raise RuntimeError(f"listing {store}: {got} records, expected {self.args.records}")
        for r, order in rotations(cases, self.args.reps):
            for name, fn in order:
                s, size = fn()
                self.track(name).add(s, size)
                log(f"rep {r + 1}: {name}: {s.wall_s:.2f} s")
        # in-process (no interpreter start, imports done): what the REST/MCP fronts pay
        for label, store, _ in stores:
            for warm in (False, True) if label == "local" else (True,):  # S3 cold: the CLI rows say it
                name = f"BackupService.list() in-process ({label}, {'warm' if warm else 'cold'})"
                for _ in range(self.args.reps):
                    if not warm:
                        shutil.rmtree(cache, ignore_errors=True)
                    t0 = time.perf_counter()
                    self.service.list(store=store)
                    self.track(name).add(Sample(time.perf_counter() - t0, 0.0, 0, 0))
        # the store's own listing of records/ (one paginated pass): the floor the server sets
        for label, store, _ in stores:
            name = f"store listing of records/ alone, in-process ({label})"
            for _ in range(self.args.reps):
                t0 = time.perf_counter()
                sum(1 for _ in self.service.store(store).list("records/"))
                self.track(name).add(Sample(time.perf_counter() - t0, 0.0, 0, 0))
        # interpreter + imports alone: the floor of any CLI call
        for _ in range(self.args.reps):
            self.track("python -c 'import dumpsafe.fronts.cli, dumpsafe.service' (start-up floor)").add(
                run([sys.executable, "-c", "import dumpsafe.fronts.cli, dumpsafe.service"], env=self.env))
        # what a newcomer's first command costs: interpreter, CLI and help, nothing else
        for _ in range(self.args.reps):
            self.track(STARTUP_HELP).add(run(self.dumpsafe("--help"), env=self.env))

    # ---- teardown -----------------------------------------------------------------------------
    def close(self) -> None:
        if self.s3:
            self.s3.stop()
        if self.gcs:
            self.gcs.stop()
        self.cluster.destroy()


def load_now() -> str:
    """Load average and CPU pressure (PSI): how busy the machine was around the run."""
    try:
        la = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return "unknown"
    text = f"load {' '.join(la)}"
    try:
        some = Path("/proc/pressure/cpu").read_text().split()[1:2]
        text += f", CPU pressure {some[0].replace('avg10=', 'some avg10 ')}%"
    except (OSError, IndexError):
        pass
    return text


def kept_sections(path: Path) -> str:
    """The "## " sections of an existing report that render() does not write (hand-written ones)."""
    try:
        old = path.read_text()
    except OSError:
        return ""
    parts = old.split("\n## ")[1:]
    kept = [p for p in parts if p.split("\n", 1)[0].strip() not in report.GENERATED]
    return "".join("\n## " + p.rstrip("\n") + "\n" for p in kept)


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cores": os.cpu_count(), "ram_gib": round(mem / 2**30), "cpu": cpu, "python": platform.python_version(),
            "kernel": platform.release()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default=os.environ.get("BENCH_SIZE", "1GB"), help="100MB, 1GB (default) or 10GB")
    p.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "3")), help="repetitions per case (default 3)")
    p.add_argument("--records", type=int, default=10_000, help="records for the listing benchmark")
    p.add_argument("--s3-max-gb", type=float, default=1.0, help="skip the S3 backup above this size (moto is in-memory)")
    p.add_argument("--gcs-max-gb", type=float, default=1.0, help="skip GCS above this size (the emulator is in-memory)")
    p.add_argument("--no-s3", action="store_true")
    p.add_argument("--no-gcs", action="store_true")
    p.add_argument("--no-restore", action="store_true")
    p.add_argument("--no-list", action="store_true")
    p.add_argument("--skip", action="append", default=[], help="skip cases whose name contains this (repeatable)")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up backup (10 GB runs on a shared machine)")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--workdir", type=Path, default=None, help="where the cluster and stores live (default: a temp dir)")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="dumpsafe-bench-", dir=args.workdir))
    os.chmod(work, 0o711)  # the cluster below runs as the postgres user when we are root
    bench = Bench(args, work)
    started = datetime.now(timezone.utc)
    load_before = load_now()
    try:
        bench.setup()
        bench.bench_backup()
        bench.bench_restore()
        if not args.no_list:
            bench.bench_list()
        v = bench.cluster.version
        meta = {
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "size": args.size,
            "reps": args.reps,
            "postgres": f"{v[0]}.{v[1]}",
            "machine": machine(),
            "dataset": bench.info["dataset"],
            "notes": bench.notes,
            "load": f"before: {load_before}; after: {load_now()}",
        }
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    text = report.render(meta, bench.series, HERE / "results")
    print(text)
    args.out.write_text(text + kept_sections(args.out))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
