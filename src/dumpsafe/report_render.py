"""The evidence report as text: JSON (the stable form), Markdown, and one self-contained
HTML file (inline CSS and SVG charts, no external URL, fit to print to PDF)."""

from __future__ import annotations

import json
from pathlib import Path

from dumpsafe import report_charts
from dumpsafe.report_model import DatabaseReport, Report
from dumpsafe.status import human_duration

TEMPLATES = Path(__file__).parent / "templates"


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def seconds(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}s" if v < 120 else human_duration(v)


def policy(p: dict | None) -> str:
    return ", ".join(f"{k} = {v}" for k, v in p.items()) if p else "none (everything kept)"


def charts(db: DatabaseReport) -> dict[str, str]:
    """The three charts of one database as SVG strings."""
    return {
        "size": report_charts.line_chart("Backup size", [(t, float(s)) for t, s in db.sizes], human_size),
        "duration": report_charts.line_chart("Backup duration", list(db.durations), seconds),
        "rto": report_charts.bar_chart("RTO per drill", [(f"{d.at:%Y-%m-%d}", d.rto_s if d.rto_s is not None else d.duration_s,
                                                d.outcome == "passed") for d in db.drills], seconds),
    }


def to_json(report: Report) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2) + "\n"


def to_html(report: Report) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters.update(size=human_size, secs=seconds, when=lambda t: f"{t:%Y-%m-%d %H:%M} UTC" if t else "-",
                       pct=lambda r: "-" if r is None else f"{r * 100:.1f}%", policy=policy)
    return env.get_template("report.html").render(r=report, charts=charts, markup=jinja2.utils.markupsafe.Markup)


def to_markdown(report: Report) -> str:
    w = lambda t: f"{t:%Y-%m-%d %H:%M} UTC" if t else "-"  # noqa: E731
    out = [f"# dumpsafe evidence report", "",
           f"Window: {w(report.since)} to {w(report.until)} · generated {w(report.generated_at)}", "",
           f"Audit log: {report.audit.chain}", ""]
    for t in report.tenants:
        s = t.schedule
        out += [f"## Tenant {t.tenant}", "",
                f"- Schedule: `{s.schedule or 'none'}`; expected runs {s.expected_runs if s.expected_runs is not None else '-'}{'' if s.expected_runs_exact else ' (about)'}; "
                f"scheduled runs {s.scheduled_runs} ({s.scheduled_ok} ok, {s.scheduled_failed} failed); success rate "
                f"{'-' if s.success_rate is None else f'{s.success_rate * 100:.1f}%'}",
                f"- Retention: {policy(t.retention.policy)}; prune runs {len(t.retention.prunes)}, "
                f"removed {sum(p.removed or 0 for p in t.retention.prunes)}"]
        out += [f"- Scheduled run failed {w(f.at)}: {f.detail}" for f in t.scheduled_failures]
        out.append("")
        for d in t.databases:
            out += [f"### {t.tenant}/{d.database}", "",
                    f"- Backups in window: {d.backups_in_window}; last success {w(d.last_success_at)}",
                    f"- Gaps longer than max_age ({seconds(d.max_age_s)}): {len(d.gaps)}"]
            out += [f"  - {w(g.start)} to {w(g.end)} ({seconds(g.seconds)}{', still open' if g.open else ''})" for g in d.gaps]
            out += [f"- Failures: {len(d.failures)}"] + [f"  - {w(f.at)}: {f.detail}" for f in d.failures]
            out += [f"- Drills: {len(d.drills)}; RTO min/median/max {seconds(d.rto.min_s)} / {seconds(d.rto.median_s)} / "
                    f"{seconds(d.rto.max_s)}; last verified restorable {w(d.last_verified_restorable_at)}"]
            out += [f"  - {w(x.at)} {x.outcome} RTO {seconds(x.rto_s)} ({x.backup_id}): {x.detail}" for x in d.drills]
            i = d.integrity
            out += [f"- Integrity checks: {i.passed} passed, {i.failed} failed, {i.error} could not run",
                    f"- Encryption: {d.encryption.encrypted} of {d.encryption.total} backups encrypted "
                    f"(encrypt_to {'configured' if d.encryption.configured else 'not configured'})", "",
                    "| backup | created | size | stores | off-site | 3-2-1 | verification |", "|---|---|---|---|---|---|---|"]
            out += [f"| {b.id} | {w(b.created_at)} | {human_size(b.size_bytes)} | {', '.join(b.stores)} | "
                    f"{'yes' if b.off_site else 'no'} | {'yes' if b.meets_3_2_1 else 'no'} | {b.last_verification or '-'} |"
                    for b in d.backups]
            out.append("")
    out += ["## Audit excerpt", "", f"{report.audit.chain}; {len(report.audit.entries)} lines shown"
            + (" (truncated)" if report.audit.truncated else ""), ""]
    out += [f"- {e.get('time')} {e.get('actor')} {e.get('action')} {e.get('backup_id') or e.get('tenant') or ''} "
            f"{e.get('outcome')}" + (f": {e.get('error')}" if e.get("error") else "") for e in report.audit.entries]
    return "\n".join(out) + "\n"


def render(report: Report, fmt: str) -> str:
    return {"json": to_json, "md": to_markdown, "html": to_html}[fmt](report)
