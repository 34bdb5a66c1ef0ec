"""Backup IDs: unique within a second, file-name safe, unambiguous, validated."""

from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from dumpsafe.errors import UsageError
from dumpsafe.models import ID_RE, encode_db, new_backup_id, validate_backup_id

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
tenant_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)
# PostgreSQL names are at most 63 bytes (NAMEDATALEN - 1) and never contain NUL
db_names = st.text(min_size=1, max_size=63).filter(lambda s: "\x00" not in s and len(s.encode()) <= 63)


@given(tenant_names, db_names)
def test_id_roundtrips_and_is_filename_safe(tenant, db):
    bid = new_backup_id(tenant, db, WHEN)
    m = ID_RE.match(bid)
    assert m and m.group("tenant") == tenant and m.group("db") == encode_db(db)
    assert "/" not in bid and not bid.startswith(".") and validate_backup_id(bid) == bid


@given(tenant_names, db_names, tenant_names, db_names)
def test_tenant_database_split_is_unambiguous(t1, d1, t2, d2):
    a = new_backup_id(t1, d1, WHEN).rsplit(".", 2)[0]
    b = new_backup_id(t2, d2, WHEN).rsplit(".", 2)[0]
    assert (a == b) == ((t1, d1) == (t2, d2))


def test_dash_names_do_not_collide():
    a = new_backup_id("a-b", "c", WHEN).rsplit(".", 2)[0]
    b = new_backup_id("a", "b-c", WHEN).rsplit(".", 2)[0]
    assert a != b


def test_unique_within_one_second():
    ids = {new_backup_id("acme", "app", WHEN) for _ in range(5000)}
    assert len(ids) == 5000


@pytest.mark.parametrize("bad", ["../../etc/passwd", "acme.app", "", "acme/app.20260101T000000Z.abcdefgh", "a" * 500])
def test_bad_ids_rejected(bad):
    with pytest.raises(UsageError, match="is not a backup ID"):
        validate_backup_id(bad)
