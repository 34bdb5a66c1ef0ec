"""The Markdown report: tables of medians, ratios against same-run baselines, targets."""

from __future__ import annotations

import json
from pathlib import Path

from measure import Series

MiB = 2**20
PG_FC = "pg_dump -Fc (gzip)"
RAW = "pg_dump -Fc -Z0 > /dev/null (raw read)"
DS_LOCAL = "dumpsafe backup create (local)"
DS_S3 = "dumpsafe backup create (S3, moto)"
PG_RESTORE = "pg_restore (plain -Fc dump)"
DS_NEW, DS_ATOMIC, DS_DRILL = "dumpsafe restore --mode new", "dumpsafe restore --mode atomic", "dumpsafe verify --drill"
DS_NEW_S3 = "dumpsafe restore --mode new (S3, moto)"
DS_GCS, DS_NEW_GCS = "dumpsafe backup create (GCS, emulator)", "dumpsafe restore --mode new (GCS, emulator)"
RSS_LIMIT = 150 * MiB
RESTORE_LIMITS = {DS_NEW: 1.10, DS_ATOMIC: 1.10, DS_DRILL: 1.15}
# sections render() writes; any other "## " section of an existing RESULTS.md is kept (run.py)
GENERATED = ("Backup", "Restore", "Listing", "Where restore time goes (per step, medians)", "Targets (same-run ratios)",
             "Peak RSS by dataset size (flat memory)", "Notes")
PROFILE = "dumpsafe-profile "


STARTUP_HELP = "dumpsafe --help (start-up)"


def _mib(n: int | None) -> str:
    return "-" if not n else f"{n / MiB:.1f}"


def profile(s: Series) -> dict[str, float]:
    """Median wall seconds per step over the repetitions (the dumpsafe-profile line on stderr)."""
    import statistics

    per: dict[str, list[float]] = {}
    for sample in s.samples:
        for line in sample.stderr.splitlines():
            if line.startswith(PROFILE):
                for name, secs in json.loads(line[len(PROFILE):])["steps"]:
                    per.setdefault(name, []).append(secs)
    return {name: statistics.median(v) for name, v in per.items()}


def _summary(series: dict[str, Series]) -> dict:
    return {
        name: {"wall_s": s.wall, "cpu_s": s.cpu, "server_cpu_s": s.server_cpu, "peak_rss": s.rss, "size": s.size,
               "walls": [x.wall_s for x in s.samples], "profile": profile(s) or None}
        for name, s in series.items()
    }


def _floor(s: Series, base: Series) -> str:
    """For a missed restore target: pg_restore's own step against the baseline, and the rest."""
    steps = profile(s)
    load = next((v for k, v in steps.items() if k.startswith("pg_restore")), None)
    if load is None:
        return ""
    rest = sorted(((v, k) for k, v in steps.items() if not k.startswith("pg_restore")), reverse=True)[:3]
    return (f"; floor: its pg_restore step alone is {load:.2f} s = {load / base.wall:.2f}x, process start-up and the "
            f"other steps {s.wall - load:.2f} s (largest: " + ", ".join(f"{k} {v:.2f} s" for v, k in rest) + ")")


def render(meta: dict, series: dict[str, Series], results_dir: Path) -> str:
    results_dir.mkdir(exist_ok=True)
    (results_dir / f"{meta['size']}.json").write_text(json.dumps({"meta": meta, "series": _summary(series)}, indent=2) + "\n")
    m, d = meta["machine"], meta["dataset"]
    out = [
        "# dumpsafe benchmarks",
        "",
        f"- **Date:** {meta['date']} · **size:** {meta['size']} (database {d['db_bytes'] / 2**30:.2f} GiB on disk, "
        f"{d.get('tables', 2)} tables: {d['events']:,} event rows (jsonb + text + numeric) + {d['customers']:,} customers"
        + (f" + {d['metrics']:,} rows in 6 narrow metrics tables + {d['documents']:,} ~700-byte documents"
           if d.get("metrics") else "") + ", 3 secondary indexes)",
        f"- **Machine:** {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['cpu']}; PostgreSQL {meta['postgres']}; "
        f"Python {m['python']}; Linux {m['kernel']}",
        f"- **Machine load** (other work shares these cores): {meta.get('load', 'unknown')}",
        f"- **Method:** {meta['reps']} repetitions, cases interleaved (each rep starts at the next case), "
        "medians shown (range = min-max wall); ratios use the same run's baselines. "
        "Peak RSS = max over reps of the summed RSS of the command's whole process tree sampled every 20 ms "
        "(a child between fork and exec, which shares its parent's pages, is not counted twice) "
        "(dumpsafe's Python + pg_dump/pg_restore; the PostgreSQL server is not counted for any tool). "
        "CPU s client = the command's process tree (rusage); CPU s server = the PostgreSQL cluster over the same "
        "interval (postmaster + backends): CPU-seconds do not depend on what else the machine runs, wall times do.",
        "",
    ]
    g = series.get
    fc, raw = g(PG_FC), g(RAW)

    def ratio(a: Series | None, b: Series | None, inv: bool = False) -> str:
        if not a or not b:
            return "-"
        return f"{(b.wall / a.wall if inv else a.wall / b.wall):.2f}x"

    out += ["## Backup", "",
            "| case | wall s (median) | range | faster than pg_dump -Fc | vs raw read | CPU s client | CPU s server | output MiB | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in (PG_FC, RAW, DS_LOCAL, DS_S3, DS_GCS):
        s = g(name)
        if s:
            out.append(f"| {name} | {s.wall:.2f} | {s.spread} | {ratio(s, fc, inv=True)} | {ratio(s, raw)} | "
                       f"{s.cpu:.1f} | {s.server_cpu:.1f} | {_mib(s.size)} | {s.rss / MiB:.0f} |")
    restore = [n for n in series if n.startswith(("pg_restore", "dumpsafe restore", "dumpsafe verify"))]
    if restore:
        base = g(PG_RESTORE)
        out += ["", "## Restore", "",
                "| case | wall s (median) | range | vs pg_restore | CPU s client | CPU s server | peak RSS MiB |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for name in restore:
            s = series[name]
            out.append(f"| {name} | {s.wall:.2f} | {s.spread} | {ratio(s, base)} | {s.cpu:.1f} | {s.server_cpu:.1f} | {s.rss / MiB:.0f} |")
    lists = [n for n in series if "list" in n or "start-up" in n]
    restore = [n for n in restore if n not in lists]
    profiled = [(n, profile(series[n])) for n in restore]
    profiled = [(n, p) for n, p in profiled if p]
    if profiled:
        out += ["", "## Where restore time goes (per step, medians)", "",
                "`DUMPSAFE_PROFILE=1` makes a restore or drill print its steps' wall times (src/dumpsafe/profile.py); "
                "the rest of the wall time is the interpreter start-up and imports (~0.35 s) and the CLI.", ""]
        for n, p in profiled:
            out.append(f"- **{n}** ({series[n].wall:.2f} s): " + ", ".join(f"{k} {v:.2f}" for k, v in p.items()))
    if lists:
        out += ["", "## Listing", "", "| case | wall s (median) | range | JSON out MiB |", "|---|---:|---:|---:|"]
        for name in lists:
            s = series[name]
            out.append(f"| {name} | {s.wall:.3f} | {s.spread} | {_mib(s.size)} |")

    out += ["", "## Targets (same-run ratios)", "", "| target | measured | met |", "|---|---|:---:|"]

    def target(text: str, value: str, ok: bool | None) -> None:
        out.append(f"| {text} | {value} | {'yes' if ok else ('-' if ok is None else '**no**')} |")

    for name in (DS_LOCAL, DS_S3):
        s = g(name)
        if not s:
            continue
        where = name.split("(")[1].rstrip(")")
        if fc and raw:
            target(f"backup ({where}) >= 3.5x faster than pg_dump -Fc",
                   f"{fc.wall / s.wall:.2f}x (ceiling in this run: the raw read itself is {fc.wall / raw.wall:.2f}x; "
                   f"client+server CPU {s.cpu + s.server_cpu:.1f} s vs {fc.cpu + fc.server_cpu:.1f} s)",
                   fc.wall / s.wall >= 3.5)
            target(f"artifact ({where}) <= pg_dump -Fc size", f"{s.size / fc.size:.3f}x ({_mib(s.size)} vs {_mib(fc.size)} MiB)",
                   s.size <= fc.size)
        if raw:
            target(f"backup ({where}) <= 1.25x raw read", f"{s.wall / raw.wall:.2f}x", s.wall / raw.wall <= 1.25)
        target(f"peak RSS ({where}) <= 150 MiB", f"{s.rss / MiB:.0f} MiB", s.rss <= RSS_LIMIT)
    if g(DS_GCS):
        target(f"peak RSS ({DS_GCS}) <= 150 MiB", f"{g(DS_GCS).rss / MiB:.0f} MiB", g(DS_GCS).rss <= RSS_LIMIT)
    base = g(PG_RESTORE)
    for name in restore:
        if name in RESTORE_LIMITS and base:
            r, limit = series[name].wall / base.wall, RESTORE_LIMITS[name]
            target(f"{name} <= {limit:.2f}x pg_restore", f"{r:.2f}x" + ("" if r <= limit else _floor(series[name], base)),
                   r <= limit)
    for name in restore:
        if name.startswith("dumpsafe"):
            target(f"peak RSS ({name}) <= 150 MiB", f"{series[name].rss / MiB:.0f} MiB", series[name].rss <= RSS_LIMIT)
    if STARTUP_HELP in series:
        target(f"{STARTUP_HELP} <= 0.35 s", f"{series[STARTUP_HELP].wall:.2f} s", series[STARTUP_HELP].wall <= 0.35)
    for name in lists:
        if name.startswith("backup list"):
            limit = 3.0 if "(S3" in name else 1.0
            target(f"{name} <= {limit:g} s", f"{series[name].wall:.2f} s", series[name].wall <= limit)

    flat = _flatness(results_dir)
    if flat:
        out += ["", "## Peak RSS by dataset size (flat memory)", "",
                "| size | date | " + " | ".join(n for n, _ in flat[0][2]) + " |",
                "|---|---|" + "---:|" * len(flat[0][2])]
        for size, date, row in flat:
            out.append(f"| {size} | {date} | " + " | ".join(f"{v / MiB:.0f} MiB" if v else "-" for _, v in row) + " |")
        out.append("")
        out.append("Each row comes from that size's latest run (bench/results/<size>.json).")
    if meta["notes"]:
        out += ["", "## Notes", ""] + [f"- {n}" for n in meta["notes"]]
    return "\n".join(out) + "\n"


def _flatness(results_dir: Path) -> list:
    rows = []
    names = (DS_LOCAL, DS_S3, DS_GCS, DS_NEW, DS_ATOMIC, DS_DRILL, DS_NEW_S3, DS_NEW_GCS, PG_FC, PG_RESTORE)
    for f in sorted(results_dir.glob("*.json")):
        data = json.loads(f.read_text())
        if "dataset" not in data.get("meta", {}):
            continue  # listing.json and the like
        s = data["series"]
        rows.append((data["meta"]["size"], data["meta"]["date"], data["meta"]["dataset"]["db_bytes"],
                     [(n, s.get(n, {}).get("peak_rss")) for n in names]))
    rows.sort(key=lambda r: r[2])
    return [(size, date, row) for size, date, _, row in rows] if len(rows) > 1 else []
