"""Retention policy: table-driven cases worked out by hand, then hypothesis properties."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dumpsafe.config import RetentionPolicy
from dumpsafe.config_load import config_from_dict
from dumpsafe.errors import ConfigError
from dumpsafe.retention import plan, to_remove
from recordfactory import make_record

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def _kept(decisions) -> dict[str, tuple[str, ...]]:
    """created_at (as given) -> reasons, for the kept ones."""
    return {d.created_at.strftime("%Y-%m-%dT%H:%M"): d.reasons for d in decisions if d.keep}


# Each case: policy, backups (UTC unless an offset is given), {kept backup: reasons}.
CASES = {
    "last keeps the N newest": (
        dict(last=3),
        ["2026-05-01T02:00Z", "2026-05-02T02:00Z", "2026-05-03T02:00Z", "2026-05-04T02:00Z", "2026-05-05T02:00Z"],
        {
            "2026-05-05T02:00": ("newest", "last"),
            "2026-05-04T02:00": ("last",),
            "2026-05-03T02:00": ("last",),
        },
    ),
    "daily keeps the newest of each day": (
        dict(daily=3),
        [
            "2026-05-01T01:00Z", "2026-05-01T13:00Z", "2026-05-02T05:00Z",
            "2026-05-03T02:00Z", "2026-05-03T22:00Z", "2026-05-04T10:00Z",
        ],
        {
            "2026-05-04T10:00": ("newest", "daily"),
            "2026-05-03T22:00": ("daily",),
            "2026-05-02T05:00": ("daily",),
        },
    ),
    "days without a backup do not count": (
        dict(daily=2),
        ["2026-01-01T00:00Z", "2026-01-05T00:00Z", "2026-01-10T00:00Z"],
        {"2026-01-10T00:00": ("newest", "daily"), "2026-01-05T00:00": ("daily",)},
    ),
    # 2026-01-01 is a Thursday: ISO week 2026-W01 runs Mon 2025-12-29 .. Sun 2026-01-04.
    "weekly uses ISO weeks across the year boundary": (
        dict(weekly=3),
        ["2025-12-28T12:00Z", "2025-12-29T12:00Z", "2026-01-04T12:00Z", "2026-01-05T12:00Z"],
        {
            "2026-01-05T12:00": ("newest", "weekly"),
            "2026-01-04T12:00": ("weekly",),
            "2025-12-28T12:00": ("weekly",),
        },
    ),
    "hourly": (
        dict(hourly=2),
        ["2026-05-01T10:05Z", "2026-05-01T10:55Z", "2026-05-01T11:10Z", "2026-05-01T11:40Z"],
        {"2026-05-01T11:40": ("newest", "hourly"), "2026-05-01T10:55": ("hourly",)},
    ),
    "monthly and yearly": (
        dict(monthly=2, yearly=3),
        ["2023-07-01T00:00Z", "2024-03-01T00:00Z", "2024-12-31T23:00Z", "2025-11-15T00:00Z", "2025-12-01T00:00Z", "2025-12-20T00:00Z"],
        {
            "2025-12-20T00:00": ("newest", "monthly", "yearly"),
            "2025-11-15T00:00": ("monthly",),
            "2024-12-31T23:00": ("yearly",),
            "2023-07-01T00:00": ("yearly",),
        },
    ),
    # 2026-03-02T01:30+02:00 is 2026-03-01T23:30Z: it belongs to March 1st, not the 2nd.
    "days are UTC days whatever the offset": (
        dict(daily=2),
        ["2026-03-01T12:00Z", "2026-03-02T01:30+02:00", "2026-03-02T10:00Z"],
        {"2026-03-02T10:00": ("newest", "daily"), "2026-03-01T23:30": ("daily",)},
    ),
    "within keeps everything younger than the duration": (
        dict(last=1, within="2d"),
        ["2026-05-29T11:00Z", "2026-05-30T13:00Z", "2026-05-31T09:00Z", "2026-06-01T09:00Z"],
        {
            "2026-06-01T09:00": ("newest", "last", "within"),
            "2026-05-31T09:00": ("within",),
            "2026-05-30T13:00": ("within",),
        },
    ),
    "rules are a union and every reason is listed": (
        dict(last=2, daily=2, weekly=2),
        ["2026-05-10T08:00Z", "2026-05-17T08:00Z", "2026-05-18T08:00Z", "2026-05-18T09:00Z"],
        {
            "2026-05-18T09:00": ("newest", "last", "daily", "weekly"),
            "2026-05-18T08:00": ("last",),
            "2026-05-17T08:00": ("daily", "weekly"),
        },
    ),
}


@pytest.mark.parametrize("policy, backups, expected", CASES.values(), ids=CASES.keys())
def test_policy_table(policy, backups, expected):
    records = [make_record(b) for b in backups]
    decisions = plan(records, RetentionPolicy(**policy), NOW)
    assert len(decisions) == len(records)
    assert _kept(decisions) == expected
    for d in decisions:
        assert d.keep == bool(d.reasons)
        assert d.action == ("keep" if d.keep else "remove")


def test_pinned_backup_is_kept_whatever_its_age():
    old = make_record("2020-01-01T00:00Z", pinned=True)
    others = [make_record(f"2026-05-0{i}T00:00Z") for i in range(1, 5)]
    decisions = {d.id: d for d in plan([old, *others], RetentionPolicy(last=1), NOW)}
    assert decisions[old.id].keep and decisions[old.id].reasons == ("pinned",)
    assert sum(d.keep for d in decisions.values()) == 2


def test_keep_verified_counts_only_passed_drills():
    drilled_old = make_record("2026-04-01T00:00Z", drill="passed")
    drilled_new = make_record("2026-04-10T00:00Z", drill="passed")
    failed = make_record("2026-04-20T00:00Z", drill="failed")
    checksum_only = make_record("2026-04-25T00:00Z", drill="passed", verification_kind="integrity")
    latest = make_record("2026-05-01T00:00Z")
    decisions = {d.id: d for d in plan([drilled_old, drilled_new, failed, checksum_only, latest], RetentionPolicy(last=1, keep_verified=1), NOW)}
    assert decisions[drilled_new.id].reasons == ("keep_verified",)
    assert not decisions[drilled_old.id].keep
    assert not decisions[failed.id].keep
    assert not decisions[checksum_only.id].keep
    assert decisions[latest.id].reasons == ("newest", "last")


def test_groups_are_per_tenant_database_and_store():
    recs = [
        make_record("2026-05-01T00:00Z", tenant="a-b", database="c"),
        make_record("2026-05-02T00:00Z", tenant="a-b", database="c"),
        make_record("2026-05-01T00:00Z", tenant="a", database="b-c"),
        make_record("2026-04-01T00:00Z", tenant="a", database="b-c", store="offsite"),
        make_record("2026-05-03T00:00Z", tenant="a", database="other"),
    ]
    decisions = plan(recs, RetentionPolicy(last=1), NOW)
    kept = {(d.store, d.tenant, d.database, d.created_at.day) for d in decisions if d.keep}
    assert kept == {
        ("local", "a-b", "c", 2),
        ("local", "a", "b-c", 1),
        ("offsite", "a", "b-c", 1),
        ("local", "a", "other", 3),
    }
    assert [d.created_at.day for d in to_remove(decisions)] == [1]


def test_newest_is_kept_even_when_no_rule_reaches_it():
    # within=1h keeps nothing from last month, yet the newest backup must survive
    recs = [make_record("2026-05-01T00:00Z"), make_record("2026-05-02T00:00Z")]
    decisions = plan(recs, RetentionPolicy(within="1h"), NOW)
    assert [(d.created_at.day, d.reasons) for d in decisions] == [(2, ("newest",)), (1, ())]


def test_decision_json_is_plain():
    (d,) = plan([make_record("2026-05-01T00:00Z")], RetentionPolicy(last=1), NOW)
    assert d.to_json_dict() == {
        "id": d.id,
        "tenant": "acme",
        "database": "app",
        "store": "local",
        "created_at": "2026-05-01T00:00:00.000000Z",
        "action": "keep",
        "reasons": ["newest", "last"],
    }


def test_a_policy_that_keeps_nothing_is_a_config_error(tmp_path: Path):
    path = tmp_path / "dumpsafe.toml"
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"tenants": {"acme": {"retention": {"keep_verified": 3}}}}, path)
    assert str(exc.value).startswith(f"{path}: tenants.acme.retention: a retention policy that keeps nothing")
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"retention": {"within": "soon"}}, path)
    assert "retention.within" in str(exc.value) and "duration" in str(exc.value)


# ---- properties ------------------------------------------------------------------------------

_times = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2026, 6, 1), timezones=st.just(timezone.utc)
)
_records = st.lists(
    st.builds(
        make_record,
        _times,
        tenant=st.sampled_from(["a", "b"]),
        database=st.sampled_from(["x", "y"]),
        pinned=st.booleans(),
        drill=st.sampled_from([None, "passed", "failed"]),
    ),
    max_size=40,
)
def _safe_policies():
    # RetentionPolicy refuses a policy that keeps nothing; build only valid ones
    return st.tuples(
        st.integers(1, 4), st.integers(0, 4), st.integers(0, 4), st.integers(0, 3), st.integers(0, 3), st.integers(0, 2), st.integers(0, 2)
    ).map(lambda t: RetentionPolicy(last=t[0], hourly=t[1], daily=t[2], weekly=t[3], monthly=t[4], yearly=t[5], keep_verified=t[6]))


_policy = st.one_of(_safe_policies(), st.builds(RetentionPolicy, daily=st.integers(1, 3), within=st.sampled_from(["1d", "30d"])))


@settings(max_examples=150, deadline=None)
@given(records=_records, policy=_policy)
def test_never_removes_the_newest_or_a_pinned_backup(records, policy):
    decisions = plan(records, policy, NOW)
    assert sorted(d.id for d in decisions) == sorted(r.id for r in records)
    by_id = {d.id: d for d in decisions}
    newest: dict[tuple[str, str, str], object] = {}
    for r in records:
        key = (r.store, r.tenant, r.database)
        if key not in newest or (r.created_at, r.id) > (newest[key].created_at, newest[key].id):
            newest[key] = r
        if r.pinned:
            assert by_id[r.id].keep
    for r in newest.values():
        assert by_id[r.id].keep and "newest" in by_id[r.id].reasons


@settings(max_examples=150, deadline=None)
@given(records=_records, policy=_policy)
def test_applying_the_plan_twice_removes_nothing_more(records, policy):
    kept_ids = {d.id for d in plan(records, policy, NOW) if d.keep}
    kept = [r for r in records if r.id in kept_ids]
    assert to_remove(plan(kept, policy, NOW)) == []


@settings(max_examples=150, deadline=None)
@given(records=_records, policy=_policy, extra=_records.filter(bool).map(lambda rs: rs[0]))
def test_adding_a_backup_never_unkeeps_a_pinned_one(records, policy, extra):
    before = {d.id for d in plan(records, policy, NOW) if d.keep}
    after = {d.id for d in plan([*records, extra], policy, NOW) if d.keep}
    for r in records:
        if r.pinned:
            assert r.id in before and r.id in after


@settings(max_examples=100, deadline=None)
@given(records=_records, policy=_policy)
def test_a_backup_older_than_all_others_changes_no_other_decision(records, policy):
    old = make_record(datetime(2022, 1, 1, tzinfo=timezone.utc), tenant="a", database="x")
    before = {d.id: d for d in plan(records, policy, NOW)}
    after = {d.id: d for d in plan([*records, old], policy, NOW)}
    assert {k: v for k, v in after.items() if k != old.id} == before


@settings(max_examples=100, deadline=None)
@given(records=_records, policy=_policy)
def test_kept_count_is_bounded_by_the_rules(records, policy):
    decisions = plan(records, policy, NOW)
    cutoff = NOW - timedelta(days={None: 0, "1d": 1, "30d": 30}[policy.within]) if policy.within else None
    groups: dict[tuple[str, str, str], list] = {}
    for d in decisions:
        groups.setdefault((d.store, d.tenant, d.database), []).append(d)
    by_id = {r.id: r for r in records}
    budget = policy.last + policy.hourly + policy.daily + policy.weekly + policy.monthly + policy.yearly + policy.keep_verified + 1
    for group in groups.values():
        pinned = sum(by_id[d.id].pinned for d in group)
        recent = sum(cutoff is not None and d.created_at >= cutoff for d in group)
        assert sum(d.keep for d in group) <= budget + pinned + recent
