"""A damaged record never makes its backup vanish: list, status and index rebuild name it,
get/verify/restore say it is damaged (not "not found") and name 'backup repair', which
brings it back from its copy or rebuilds it from the objects."""

from __future__ import annotations

import json

from conftest import Env

POSITIONS = 30


def _record_path(env: Env, bid: str):
    return env.store_dir / "records" / f"{bid}.json"


def _damaged_line(bid: str) -> str:
    return f"warning: the record of backup {bid} in store 'local' is damaged ("


def test_a_flipped_byte_anywhere_is_reported_by_name_and_repaired(env):
    other = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    path = _record_path(env, bid)
    original = path.read_bytes()
    step = len(original) // POSITIONS
    for i in range(POSITIONS):
        pos = i * step + step // 2
        data = bytearray(original)
        data[pos] ^= 0x01
        path.write_bytes(bytes(data))

        listed = env.cli("backup", "list", "--json")
        assert listed.code == 0
        assert [r["id"] for r in listed.json()] == [other], pos  # --json output stays an array of sound records
        assert [ln for ln in listed.err.splitlines() if bid in ln] == [ln for ln in listed.err.splitlines()]
        assert len(listed.err.splitlines()) == 1 and listed.err.startswith(_damaged_line(bid)), (pos, listed.err)
        assert f"dumpsafe backup repair {bid}" in listed.err

        got = env.cli("backup", "get", bid)
        assert got.code == 1 and "damaged" in got.err and "not found" not in got.err, (pos, got.err)
        assert f"dumpsafe backup repair {bid}" in got.err

        repaired = env.cli("backup", "repair", bid, "--json")
        assert repaired.code == 0, repaired.err
        assert repaired.json()["repaired_from"] == "copy"
        assert path.read_bytes() == original
    assert env.cli("backup", "verify", bid).code == 0


def test_damaged_record_in_verify_restore_status_and_rebuild(env):
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    path = _record_path(env, bid)
    path.write_bytes(path.read_bytes().replace(b'"tenant": "acme"', b'"tenant": "acmf"'))

    for args in (("backup", "verify", bid), ("backup", "restore", bid, "--yes")):
        r = env.cli(*args)
        assert r.code == 1 and "integrity check failed" in r.err and "damaged" in r.err, r.err
        assert f"dumpsafe backup repair {bid}" in r.err
    st = env.cli("status")
    assert _damaged_line(bid) in st.err
    rb = env.cli("index", "rebuild", "--json")
    assert rb.code == 0 and rb.json() == {"local": 0} and _damaged_line(bid) in rb.err


def test_record_and_copy_both_damaged_rebuilt_from_objects(env):
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    rec = env.cli("backup", "get", bid, "--json").json()
    _record_path(env, bid).write_bytes(b"{ truncated")
    (env.store_dir / "objects" / bid / "record.json").unlink()
    r = env.cli("backup", "repair", bid, "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert out["repaired_from"] == "objects"
    rebuilt = out["record"]
    assert rebuilt["objects"] == [{k: v for k, v in o.items() if k != "raw_bytes"} | {"raw_bytes": None}
                                  for o in rec["objects"]]
    assert rebuilt["sha256"] == rec["sha256"] and rebuilt["uploads"] == rec["uploads"]
    assert "tables" in rebuilt["repaired"]["unproven"]
    assert env.cli("backup", "verify", bid).code == 0
    assert [x["id"] for x in env.cli("backup", "list", "--json").json()] == [bid]


def test_top_level_sha256_is_cross_checked_against_the_dump_object(env):
    """An older record without a self-checksum: a changed hex digit of ``sha256`` fails."""
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    path = _record_path(env, bid)
    d = json.loads(path.read_bytes())
    for k in ("record_sha256", "sequence", "clock_behind_s", "repaired"):
        d.pop(k)
    d["record_version"] = 1
    path.write_text(json.dumps(d, indent=2))
    assert env.cli("backup", "verify", bid).code == 0  # an old record still reads
    d["sha256"] = ("0" if d["sha256"][0] != "0" else "1") + d["sha256"][1:]
    path.write_text(json.dumps(d, indent=2))
    for args in (("backup", "verify", bid), ("backup", "restore", bid, "--yes")):
        r = env.cli(*args)
        assert r.code == 1 and "integrity check failed" in r.err, r.err


def test_index_rebuild_sweeps_orphans_and_reports_a_vanished_record(env):
    orphan = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    vanished = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    # objects without record, copy or marker (what an interrupted delete of an older version left)
    (env.store_dir / "objects" / orphan / "record.json").unlink()
    _record_path(env, orphan).unlink()
    _record_path(env, vanished).unlink()  # the record alone is gone; its copy is there
    r = env.cli("index", "rebuild", "--json")
    assert r.code == 0 and r.json() == {"local": 0}
    assert _damaged_line(vanished) + "its record is missing" in r.err, r.err
    assert not (env.store_dir / "objects" / orphan).exists()
    assert (env.store_dir / "objects" / vanished).is_dir()
    rec = env.cli("recover")
    assert f"backup {vanished} in store 'local' has objects and a record copy but no record" in rec.err, rec.err
    assert env.cli("backup", "repair", vanished).code == 0
    assert [x["id"] for x in env.cli("backup", "list", "--json").json()] == [vanished]
    assert env.cli("backup", "verify", vanished).code == 0
