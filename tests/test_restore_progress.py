"""Restore progress (issue 17): a real restore reports the bytes fed to pg_restore against the
record's total and names each table pg_restore loads (its --verbose output)."""

from __future__ import annotations

from contextlib import contextmanager

from dumpsafe.progress import Ticker
from restore_helpers import databases, enrich


class Recorder:
    """Every task a restore starts: its description, total, bytes advanced and re-descriptions."""

    def __init__(self) -> None:
        self.tasks: list[dict] = []

    @contextmanager
    def task(self, description: str, total: int | None = None):
        t = {"description": description, "total": total, "bytes": 0, "described": []}
        self.tasks.append(t)

        def advance(n: int) -> None:
            t["bytes"] += n

        yield Ticker(advance, t["described"].append)

    def one(self, prefix: str) -> dict:
        found = [t for t in self.tasks if t["description"].startswith(prefix)]
        assert len(found) == 1, self.tasks
        return found[0]


def test_streamed_restore_reports_bytes_fed_and_each_table(env):
    enrich(env.pg, env.db)
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    bid = r.json()[0]["id"]
    svc = env.service()
    rec = svc.get(bid)
    raw = rec.object("database").raw_bytes

    rec_new = Recorder()
    svc.restore(bid, database="progress_copy", mode="new", uploads=False, progress=rec_new)
    assert "progress_copy" in databases(env.pg)
    task = rec_new.one("restore progress_copy")
    assert task["total"] == raw and task["bytes"] == raw  # every byte of the dump went to pg_restore
    assert not [t for t in rec_new.tasks if t["description"].startswith("fetch")]  # streamed, not spooled
    loaded = {d.split(": ", 1)[1] for d in task["described"]}
    assert set(rec.tables) <= loaded, (sorted(rec.tables), task["described"])
    assert all(d.startswith("restore progress_copy: ") for d in task["described"])

    # clean mode restores the live database from a verified spool: tables are still named
    rec_clean = Recorder()
    svc.restore(bid, mode="clean", uploads=False, progress=rec_clean)
    assert rec_clean.one("fetch")["bytes"] == rec.object("database").size_bytes
    loaded = {d.split(": ", 1)[1] for d in rec_clean.one(f"restore {env.db}")["described"]}
    assert set(rec.tables) <= loaded
