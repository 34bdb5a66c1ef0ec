"""fetch.head: a reader that fails on an intact object's head is reported as an unreadable
archive (after the whole object was checked and found intact), never as a crash."""

from __future__ import annotations

import pytest

from dumpsafe import fetch
from dumpsafe.errors import RestoreFailed


def test_a_failing_head_reader_on_an_intact_object_is_an_unreadable_archive(env):
    svc = env.service()
    rec = svc.create("acme", uploads=False)[0]
    ref = rec.object("database")

    def reader(read):
        read(64)
        raise ValueError("not what pg_restore expected\nsecond line")

    with pytest.raises(RestoreFailed) as e:
        fetch.head(svc.store(rec.store), rec, ref, reader)
    assert e.value.message == (f"backup {rec.id}: {ref.key} is not a readable archive (not what pg_restore expected)")
