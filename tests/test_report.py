"""The evidence report (issue 15) over a seeded history with known numbers: one failed
scheduled run, one gap over max_age, three drills with known RTOs. The HTML parses and
holds no external URL; the JSON matches its documented schema (docs/report.schema.json)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import jsonschema
import pytest

from dumpsafe.history import HistoryEvent
from dumpsafe.catalog import Catalog
from dumpsafe.report_model import json_schema
from dumpsafe.report_render import to_html, to_json, to_markdown
from dumpsafe.models import utcnow
from recordfactory import make_record

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "report.schema.json"
VOID = {"meta", "br", "hr", "img", "input", "link", "circle", "line", "rect", "polyline"}
RTOS = [12.0, 30.0, 18.0]


class Strict(HTMLParser):
    """Parses the whole document and fails on any unbalanced tag; collects text by class."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str]] = []
        self.text: dict[str, list[str]] = {}
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.attrs += attrs
        if tag not in VOID:
            self.stack.append((tag, dict(attrs).get("class") or ""))

    def handle_startendtag(self, tag, attrs):
        self.attrs += attrs

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.stack and self.stack[-1][0] == tag, f"unbalanced </{tag}> inside {self.stack[-3:]}"
        self.stack.pop()

    def handle_data(self, data):
        for _, cls in self.stack[-1:]:
            if cls:
                self.text.setdefault(cls, []).append(data.strip())


@pytest.fixture
def seeded(env):
    """Backups every day but a three-day hole, six scheduled runs (one failed), three drills."""
    env.write_config(tenant_extra='max_age = "26h"\nschedule = "0 0 2 * * *"\nmax_drill_age = "8d"')
    svc = env.service()
    now = utcnow().replace(microsecond=0)
    day = lambda n: now - timedelta(days=7 - n, hours=10)  # noqa: E731  day 7 is 10h before now
    made = [1, 2, 3, 6, 7]
    recs = {n: make_record(day(n), tenant="acme", database=env.db, size_bytes=1000 * n) for n in made}
    cat = Catalog(svc.store("local"), None)
    for n in (6, 7):  # two still exist; the others were pruned (only their history remains)
        cat.put(recs[n].model_copy(update={"duration_s": 2.0 + n}))
    h = svc.history
    for n in made:
        h.append(HistoryEvent(at=day(n), kind="backup", outcome="ok", tenant="acme", database=env.db,
                              backup_id=recs[n].id, size_bytes=1000 * n, duration_s=2.0 + n, actor="scheduler"))
    for n in (1, 2, 3, 4, 6, 7):
        ok = n != 4
        h.append(HistoryEvent(at=day(n), kind="scheduled_backup", outcome="ok" if ok else "failed", tenant="acme",
                              actor="scheduler", backup_ids=[recs[n].id] if ok else [],
                              detail=None if ok else "connection to 127.0.0.1 refused"))
    for n, rto in zip((2, 6, 7), RTOS):
        h.append(HistoryEvent(at=day(n) + timedelta(hours=1), kind="drill", outcome="passed", tenant="acme",
                              database=env.db, backup_id=recs[n].id, rto_s=rto, duration_s=rto + 1,
                              detail="every row count matches", data={"rto_s": rto, "tables": 3, "differences": []}))
    h.append(HistoryEvent(at=day(7), kind="integrity", outcome="passed", tenant="acme", database=env.db, backup_id=recs[7].id))
    return svc, now, recs


def test_report_numbers_equal_the_seeded_history(env, seeded):
    svc, now, recs = seeded
    rep = svc.report("acme", since="30d", until=now)
    [t] = rep.tenants
    assert (t.schedule.scheduled_runs, t.schedule.scheduled_ok, t.schedule.scheduled_failed) == (6, 5, 1)
    assert t.schedule.success_rate == round(5 / 6, 4) and t.schedule.expected_runs == 30
    assert [f.detail for f in t.scheduled_failures] == ["connection to 127.0.0.1 refused"]
    [d] = t.databases
    assert d.backups_in_window == 5
    [gap] = d.gaps
    assert (gap.start, gap.end, gap.seconds, gap.open) == (recs[3].created_at, recs[6].created_at, 3 * 86400.0, False)
    assert [x.rto_s for x in d.drills] == RTOS and d.drills[0].result["differences"] == []
    assert (d.rto.count, d.rto.min_s, d.rto.median_s, d.rto.max_s) == (3, 12.0, 18.0, 30.0)
    assert d.integrity.passed == 1 and d.encryption.total == 2 and d.encryption.encrypted == 0
    assert [b.id for b in d.backups] == [recs[7].id, recs[6].id] and not any(b.meets_3_2_1 for b in d.backups)
    assert [s for _, s in d.sizes] == [1000, 2000, 3000, 6000, 7000]

    html = to_html(rep)
    p = Strict()
    p.feed(html)
    p.close()
    assert p.stack == [], p.stack
    assert not re.search(r"(?i)\b(?:https?:)?//[a-z0-9]", html), "the report must hold no external URL"
    assert not [a for a in p.attrs if a[0] in ("src", "href")] and "url(" not in html
    txt = lambda cls: " ".join(p.text[cls]).strip()  # noqa: E731
    assert txt("backups-in-window") == "5" and txt("gaps") == "1" and txt("failures") == "0" and txt("drills") == "3"
    assert (txt("rto-min"), txt("rto-median"), txt("rto-max")) == ("12.0s", "18.0s", "30.0s")
    assert txt("success-rate") == "83.3%" and txt("scheduled-runs") == "6 (5 ok, 1 failed)"
    assert html.count("<svg") == 3 and "connection to 127.0.0.1 refused" in html

    md = to_markdown(rep)
    assert "RTO min/median/max 12.0s / 18.0s / 30.0s" in md and "Gaps longer than max_age (1d 2h): 1" in md


def test_report_json_matches_its_documented_schema(env, seeded):
    schema = json.loads(SCHEMA.read_text())
    assert schema == json_schema(), "docs/report.schema.json is stale: regenerate it from report_model.json_schema()"
    svc, now, _ = seeded
    doc = json.loads(to_json(svc.report(since="30d", until=now)))
    jsonschema.validate(doc, schema)
    assert doc["schema_version"] == 1 and doc["audit"]["chain_ok"] is True


def test_report_cli_writes_each_format(env, seeded, tmp_path):
    for fmt in ("html", "md", "json"):
        out = tmp_path / f"r.{fmt}"
        r = env.cli("report", "acme", "--since", "30d", "--format", fmt, "--output", str(out))
        assert r.code == 0, r.err
        assert out.stat().st_size > 500
    assert json.loads((tmp_path / "r.json").read_text())["tenants"][0]["databases"][0]["rto"]["median_s"] == 18.0
    r = env.cli("report", "--since", "soon")
    assert r.code == 2 and "--since 'soon' is neither a duration" in r.err
    assert env.cli("report", "nobody").code != 0


def test_report_over_rest_is_tenant_scoped(served):
    def get(who, **params):
        return httpx.get(served.url + "/v1/report", params=params, headers=served.headers(who), timeout=60)

    r = get("read")
    assert r.status_code == 200 and [t["tenant"] for t in r.json()["tenants"]] == ["acme"]
    assert all(e.get("tenant") == "acme" for e in r.json()["audit"]["entries"])
    assert get("read", tenant="beta").status_code == 404
    assert get("none").status_code == 401
    assert sorted(t["tenant"] for t in get("admin").json()["tenants"]) == ["acme", "beta"]
    h = get("read", format="html")
    assert h.status_code == 200 and h.headers["content-type"].startswith("text/html") and "Tenant acme" in h.text
    assert "Tenant beta" not in h.text


def test_report_and_history_over_mcp_follow_the_token_rules(served):
    from test_mcp import error_text, over_http, payload

    acme_id = served.service.create("acme", uploads=False)[0].id
    beta_id = served.service.list("beta")[0].id
    served.service.verify(acme_id)

    async def go():
        async with over_http(served, "read") as c:
            rep = payload(await c.call_tool("report", {"since": "1d"}))
            hist = payload(await c.call_tool("backup_history", {"backup_id": acme_id}))
            other = await c.call_tool("backup_history", {"backup_id": beta_id})
            foreign = await c.call_tool("report", {"tenant": "beta"})
        return rep, hist, other, foreign

    import anyio

    rep, hist, other, foreign = anyio.run(go)
    assert [t["tenant"] for t in rep["tenants"]] == ["acme"] and rep["schema_version"] == 1
    assert [(e["kind"], e["outcome"]) for e in hist] == [("backup", "ok"), ("integrity", "passed")]
    assert "not found" in error_text(other) and "unknown tenant 'beta'" in error_text(foreign)
