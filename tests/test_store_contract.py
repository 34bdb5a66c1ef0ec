"""One contract suite for every Store (local, s3 via moto's server, gcs via the emulator)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dumpsafe.errors import ObjectMissing, StoreError
from dumpsafe.storage.s3 import MAX_PART, MAX_PARTS, MIN_PART, choose_part_size, part_size_at
from stores import (  # noqa: F401  (fixtures)
    TcpProxy,
    create_gcs_bucket,
    create_s3_bucket,
    fake_aws_env,
    free_port,
    gcs_server,
    make_store,
    new_bucket_name,
    s3_server,
    start_moto,
)

KINDS = ["local", "s3", "gcs"]
REMOTE = ["s3", "gcs"]
MiB = 1 << 20


class Boom(Exception):
    pass


def chunks(total: int, size: int = MiB):
    """Deterministic, non-repeating-per-chunk bytes without holding them all."""
    block = os.urandom(size)
    sent, i = 0, 0
    while sent < total:
        n = min(size, total - sent)
        head = i.to_bytes(8, "big")
        yield head + block[8:n] if n > 8 else block[:n]
        sent += n
        i += 1


def write_stream(store, key, total, *, size_hint=None):
    h = hashlib.sha256()
    with store.open_write(key, size_hint=size_hint) as w:
        for c in chunks(total):
            h.update(c)
            w.write(c)
    return h.hexdigest()


def read_sha(store, key):
    h = hashlib.sha256()
    n = 0
    with store.open_read(key) as r:
        while True:
            b = r.read(MiB)
            if not b:
                break
            h.update(b)
            n += len(b)
    return h.hexdigest(), n


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


class PeakRss:
    """Peak RSS growth (bytes) of this process over a block: reset VmHWM, read it after."""

    def __enter__(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.start = _status_kb("VmRSS")
        return self

    def __exit__(self, *exc):
        self.growth = (_status_kb("VmHWM") - self.start) * 1024


# ---- basics -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_stat_and_overwrite(kind, make_store):
    _, store = make_store(kind)
    data = bytes(range(256)) * 100
    store.put_bytes("objects/x/a.bin", data)
    assert store.get_bytes("objects/x/a.bin") == data
    info = store.stat("objects/x/a.bin")
    assert info is not None and info.key == "objects/x/a.bin" and info.size == len(data)
    assert info.modified.tzinfo is not None and info.etag
    store.put_bytes("objects/x/a.bin", b"second")
    assert store.get_bytes("objects/x/a.bin") == b"second"
    store.put_bytes("empty", b"")
    assert store.get_bytes("empty") == b"" and store.stat("empty").size == 0


@pytest.mark.parametrize("kind", KINDS)
def test_missing_object(kind, make_store):
    _, store = make_store(kind)
    assert store.stat("records/nope.json") is None
    assert not store.exists("records/nope.json")
    with pytest.raises(ObjectMissing, match="object records/nope.json is missing"):
        store.get_bytes("records/nope.json")


@pytest.mark.parametrize("kind", KINDS)
def test_list_by_prefix(kind, make_store):
    _, store = make_store(kind)
    for key in ["records/a.json", "records/b.json", "objects/a/db.dump", "objects/b/db.dump", "recordsX"]:
        store.put_bytes(key, key.encode())
    listed = {o.key: o for o in store.list("records/")}
    assert sorted(listed) == ["records/a.json", "records/b.json"]
    assert listed["records/a.json"].size == len(b"records/a.json")
    assert all(o.etag for o in listed.values())
    assert sorted(o.key for o in store.list("objects/a/")) == ["objects/a/db.dump"]
    assert len(list(store.list())) == 5
    assert list(store.list("nothing/")) == []


@pytest.mark.parametrize("kind", KINDS)
def test_delete_is_idempotent(kind, make_store):
    _, store = make_store(kind)
    store.put_bytes("objects/a/db.dump", b"x")
    store.delete("objects/a/db.dump")
    assert store.stat("objects/a/db.dump") is None
    store.delete("objects/a/db.dump")  # already gone: still fine
    store.delete("never/existed")


@pytest.mark.parametrize("kind", KINDS)
def test_unsafe_keys_refused(kind, make_store):
    _, store = make_store(kind)
    for key in ["/abs", "../up", "a/../b", "a//b", ""]:
        with pytest.raises(StoreError, match="unsafe object key"):
            store.put_bytes(key, b"x")


def test_urls(make_store, tmp_path):
    _, s3 = make_store("s3", create=False, bucket="acme-backups")
    assert s3.url("records/x.json") == "s3://acme-backups/pg/records/x.json"
    _, gcs = make_store("gcs", create=False, bucket="acme-backups")
    assert gcs.url("records/x.json") == "gs://acme-backups/pg/records/x.json"
    _, local = make_store("local")
    assert local.url("a").startswith("file:///")


# ---- abort: nothing half-written is ever visible -------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [1000, 40 * MiB], ids=["small", "multipart"])
def test_exception_mid_write_leaves_no_object(kind, size, make_store):
    _, store = make_store(kind, **({"chunk_size_mb": 8} if kind == "gcs" else {}))
    store.put_bytes("objects/old/keep", b"old")
    with pytest.raises(Boom):
        with store.open_write("objects/new/db.dump") as w:
            for c in chunks(size):
                w.write(c)
            raise Boom()
    # an aborted overwrite keeps the committed version
    with pytest.raises(Boom):
        with store.open_write("objects/old/keep") as w:
            for c in chunks(size):
                w.write(c)
            raise Boom()
    assert store.stat("objects/new/db.dump") is None
    assert [o.key for o in store.list()] == ["objects/old/keep"]
    assert store.get_bytes("objects/old/keep") == b"old"
    if kind == "s3":  # the multipart upload was aborted, not left behind
        assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


# ---- large objects, flat memory ------------------------------------------------------------
@pytest.mark.large
@pytest.mark.parametrize("kind", KINDS)
def test_200mb_streams_with_flat_memory(kind, make_store):
    total = 200 * MiB
    _, store = make_store(kind)
    with PeakRss() as up:
        sha = write_stream(store, "objects/big/db.dump", total)
    assert store.stat("objects/big/db.dump").size == total
    with PeakRss() as down:
        got_sha, n = read_sha(store, "objects/big/db.dump")
    assert (got_sha, n) == (sha, total)
    # one part/chunk buffered (8-16 MiB) plus the SDK's copies: far below the object size
    assert up.growth < 64 * MiB, f"upload grew RSS by {up.growth / MiB:.0f} MiB"
    assert down.growth < 64 * MiB, f"download grew RSS by {down.growth / MiB:.0f} MiB"


def test_part_sizes_fit_the_part_limit():
    # unknown size: 5 MiB parts, doubling every 1,000 parts, still room for ~4.9 TiB (S3's
    # largest object is 5 TiB)
    base, steady = choose_part_size(None)
    assert base == MIN_PART
    capacity = sum(part_size_at(i, base, steady) for i in range(MAX_PARTS))
    assert base == 5 * MiB and capacity >= 4.8 * (1 << 40)
    assert part_size_at(500, base, steady) == MIN_PART  # ordinary dumps stay at 5 MiB
    # known 5 TiB: fixed parts sized to fit 9,000 parts, under S3's 5 GiB part limit
    hint = 5 * (1 << 40)
    base, steady = choose_part_size(hint)
    assert base * steady >= hint and base <= MAX_PART and base % MiB == 0
    assert choose_part_size(100 * MiB) == (MIN_PART, 9000)
    assert choose_part_size(None, configured_mb=64)[0] == 64 * MiB


@pytest.mark.parametrize("concurrency", [1, 3])
def test_s3_multipart_parts_in_order(make_store, concurrency):
    _, store = make_store("s3", part_size_mb=9, upload_concurrency=concurrency)
    sha = write_stream(store, "objects/p/db.dump", 50 * MiB + 123)
    head = store.client.head_object(Bucket=store.bucket, Key="pg/objects/p/db.dump", PartNumber=1)
    assert head["ContentLength"] == 9 * MiB
    assert head["PartsCount"] == 6
    assert read_sha(store, "objects/p/db.dump") == (sha, 50 * MiB + 123)


# ---- listing at scale ----------------------------------------------------------------------
def test_s3_list_paginates_past_1000_keys(make_store):
    _, store = make_store("s3")
    keys = [f"records/k{i:05d}.json" for i in range(1105)]
    # seed straight through the client (fast); the listing under test is the store's
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.client.put_object(Bucket=store.bucket, Key="pg/" + k, Body=b"{}"), keys))
    listed = [o.key for o in store.list("records/")]
    assert sorted(listed) == keys


# ---- failures ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", REMOTE)
def test_server_stopped_mid_upload(kind, make_store, request, monkeypatch):
    """The server vanishes mid-stream: StoreError, bounded time, and no object afterwards."""
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        proxy = TcpProxy(server.port)
        _, store = make_store("s3", endpoint_url=proxy.url, max_attempts=2, connect_timeout_s=2, read_timeout_s=5)
    else:
        server = request.getfixturevalue("gcs_server")
        proxy = TcpProxy(server.port)
        bucket = new_bucket_name()
        create_gcs_bucket(bucket)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        _, store = make_store("gcs", bucket=bucket, create=False, chunk_size_mb=8, retry_deadline_s=2, timeout_s=5)
    t0 = time.monotonic()
    with pytest.raises(StoreError) as err:
        with store.open_write("objects/cut/db.dump") as w:
            for c in chunks(200 * MiB):
                w.write(c)
                if proxy.bytes_up > 20 * MiB and not proxy._cut.is_set():
                    proxy.cut()
    assert time.monotonic() - t0 < 60
    assert f"store 'main': cannot reach" in str(err.value)
    assert err.value.transient
    # look behind the (dead) proxy: the server holds no object under that key
    if kind == "s3":
        _, direct = make_store("s3", bucket=store.bucket, create=False)
    else:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        _, direct = make_store("gcs", bucket=bucket, create=False)
    assert direct.stat("objects/cut/db.dump") is None
    assert list(direct.list()) == []


def _behind_proxy(kind, make_store, request, monkeypatch, proxy_kw, **store_kw):
    server = request.getfixturevalue(f"{kind}_server")
    proxy = TcpProxy(server.port, **proxy_kw)
    if kind == "s3":
        bucket = new_bucket_name()
        create_s3_bucket(server.url, bucket)
        _, store = make_store("s3", bucket=bucket, create=False, endpoint_url=proxy.url, **store_kw)
    else:
        bucket = new_bucket_name()
        create_gcs_bucket(bucket)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        _, store = make_store("gcs", bucket=bucket, create=False, **store_kw)
    return proxy, store


RETRY_KW = {"s3": {"max_attempts": 3}, "gcs": {"retry_deadline_s": 8}}
GIVE_UP_KW = {"s3": {"max_attempts": 2}, "gcs": {"retry_deadline_s": 1}}


@pytest.mark.parametrize("kind", REMOTE)
def test_transient_errors_are_retried(kind, make_store, request, monkeypatch):
    proxy, store = _behind_proxy(kind, make_store, request, monkeypatch, {"fail_first": 1}, **RETRY_KW[kind])
    store.put_bytes("records/x.json", b"{}")  # first attempt gets a 503, the retry lands
    assert proxy.connections >= 2
    assert store.get_bytes("records/x.json") == b"{}"


@pytest.mark.parametrize("kind", REMOTE)
def test_persistent_5xx_gives_up_with_one_sentence(kind, make_store, request, monkeypatch):
    proxy, store = _behind_proxy(kind, make_store, request, monkeypatch, {"fail_first": 100}, **GIVE_UP_KW[kind])
    with pytest.raises(StoreError) as e:
        list(store.list("records/"))
    assert re.match(r"store 'main': http://127\.0\.0\.1:\d+ kept failing \(.+\) while listing records/ ", str(e.value))
    assert e.value.transient and proxy.connections >= 2


@pytest.mark.parametrize("kind", REMOTE)
def test_permanent_errors_are_not_retried(kind, make_store, request, monkeypatch):
    proxy, store = _behind_proxy(kind, make_store, request, monkeypatch, {}, **RETRY_KW[kind])
    store.bucket = "no-such-bucket-here"
    if kind == "gcs":
        store._bucket_obj = None
    with pytest.raises(StoreError, match="bucket no-such-bucket-here not found"):
        list(store.list("records/"))
    listing = "list-type=2" if kind == "s3" else "/o?"
    assert len([r for r in proxy.requests if listing in r]) == 1, proxy.requests  # asked once


@pytest.mark.parametrize("kind", REMOTE)
def test_bucket_not_found_sentence(kind, make_store):
    cfg, store = make_store(kind, name="offsite", bucket="acme-backups", create=False)
    expected = "store 'offsite': bucket acme-backups not found (check stores.offsite.bucket)"
    with pytest.raises(StoreError) as e1:
        store.put_bytes("records/x.json", b"{}")
    with pytest.raises(StoreError) as e2:
        list(store.list("records/"))
    with pytest.raises(StoreError) as e3:
        store.get_bytes("records/x.json")
    assert str(e1.value) == str(e2.value) == str(e3.value) == expected
    assert not e1.value.transient


def test_s3_unreachable_endpoint_sentence(make_store, fake_aws_env):
    dead = f"http://127.0.0.1:{free_port()}"
    _, store = make_store("s3", name="offsite", create=False, endpoint_url=dead, max_attempts=2)
    with pytest.raises(StoreError) as e:
        store.put_bytes("records/x.json", b"{}")
    assert str(e.value) == (
        f"store 'offsite': cannot reach {dead} while writing records/x.json "
        "(check stores.offsite.endpoint_url and that the service is up)"
    )
    assert e.value.transient


def test_gcs_unreachable_endpoint_sentence(make_store, monkeypatch, gcs_server):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", dead)
    _, store = make_store("gcs", name="offsite", create=False, retry_deadline_s=1)
    with pytest.raises(StoreError) as e:
        list(store.list("records/"))
    assert str(e.value).startswith(f"store 'offsite': cannot reach {dead} while listing records/ (")
    assert e.value.transient


def test_s3_no_credentials_sentence(make_store, monkeypatch, s3_server):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    _, store = make_store("s3", name="offsite", create=False)
    with pytest.raises(StoreError) as e:
        list(store.list())
    assert str(e.value) == (
        "store 'offsite': no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "AWS_PROFILE, or run with an instance role)"
    )


def test_gcs_no_credentials_sentence(make_store, monkeypatch, tmp_path, gcs_server):
    for k in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata-server probe on a test box
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    _, store = make_store("gcs", name="offsite", create=False)
    with pytest.raises(StoreError) as e:
        list(store.list())
    assert str(e.value) == (
        "store 'offsite': no Google credentials found (set GOOGLE_APPLICATION_CREDENTIALS to a "
        "service-account key file or run 'gcloud auth application-default login')"
    )


@pytest.fixture(scope="module")
def moto_with_auth(fake_aws_env):
    """A second moto server that checks credentials (IAM) after the setup requests."""
    import boto3
    import urllib.request

    server = start_moto()
    try:
        kw = {"endpoint_url": server.url, "region_name": "us-east-1"}
        bucket = new_bucket_name()
        boto3.client("s3", **kw).create_bucket(Bucket=bucket)
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        req = urllib.request.Request(f"{server.url}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(req).read()
        yield server, bucket, key
    finally:
        server.stop()


def test_s3_bad_credentials_and_access_denied_sentences(make_store, monkeypatch, moto_with_auth):
    server, bucket, key = moto_with_auth
    _, store = make_store("s3", name="offsite", bucket=bucket, create=False, endpoint_url=server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "definitely-not-printed-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    with pytest.raises(StoreError) as e:
        store.put_bytes("records/x.json", b"{}")
    msg = str(e.value)
    assert msg.startswith(f"store 'offsite': {server.url} rejected the AWS credentials (")
    assert "definitely-not-printed-secret" not in msg and "AKIAWRONG" not in msg
    # a real user without any policy: denied, not "bad credentials"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    _, store = make_store("s3", name="offsite", bucket=bucket, create=False, endpoint_url=server.url)
    with pytest.raises(StoreError) as e:
        list(store.list())
    assert str(e.value).startswith(f"store 'offsite': access denied to bucket {bucket} while listing / (grant")
    assert key["SecretAccessKey"] not in str(e.value)


def test_s3_sweep_aborts_only_uploads_without_a_live_pending_marker(make_store):
    """Which unfinished upload is dead is decided by our pending markers, never by the
    server's clock (moto reports every upload as initiated in 2010)."""
    from datetime import datetime, timezone

    from dumpsafe.pending import Pending
    from dumpsafe.sweep import sweep

    _, store = make_store("s3")
    c = store.client
    stale = c.create_multipart_upload(Bucket=store.bucket, Key="pg/objects/crashed/db.dump")["UploadId"]
    live = c.create_multipart_upload(Bucket=store.bucket, Key="pg/objects/running/db.dump")["UploadId"]
    outside = c.create_multipart_upload(Bucket=store.bucket, Key="other/x")["UploadId"]
    with Pending(store, "running", "create"):  # a live writer of this host and pid
        rep = sweep(store, datetime.now(timezone.utc))
    assert rep.aborted_uploads == 1
    left = {u["UploadId"] for u in c.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])}
    assert left == {live, outside} and stale not in left


# ---- local-only housekeeping ---------------------------------------------------------------
def test_local_sweep_removes_dead_writers_temp_files(make_store):
    _, store = make_store("local")
    store.put_bytes("objects/a/db.dump", b"committed")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = store.root / "objects" / "a" / f".db.dump2.tmp-{dead.pid}-abcd1234"
    live = store.root / "objects" / "a" / f".db.dump3.tmp-{os.getpid()}-abcd1234"
    stale.write_bytes(b"half")
    live.write_bytes(b"in progress")
    assert [o.key for o in store.list()] == ["objects/a/db.dump"]  # temp files never listed
    assert store.sweep() == 1
    assert not stale.exists() and live.exists()
    assert store.get_bytes("objects/a/db.dump") == b"committed"


# ---- config of object stores ---------------------------------------------------------------
@pytest.mark.parametrize(
    "section,expected",
    [
        ({"kind": "s3", "bucket": "a b"}, "stores.offsite.bucket: 'a b' is not a valid S3 bucket name"),
        ({"kind": "gcs", "bucket": "Acme_Backups"}, "stores.offsite.bucket: 'Acme_Backups' is not a valid GCS bucket name"),
        ({"kind": "s3", "bucket": "acme", "prefix": "../up"}, "stores.offsite.prefix: prefix '../up' may use"),
        ({"kind": "gcs", "bucket": "acme", "prefix": "a//b"}, "stores.offsite.prefix: prefix 'a//b' may use"),
        ({"kind": "s3", "bucket": "acme", "endpoint_url": "127.0.0.1:9000"}, "stores.offsite.endpoint_url: expected a URL"),
        ({"kind": "s3", "bucket": "acme", "part_size_mb": 6000}, "stores.offsite.part_size_mb: must be at most 5120"),
        ({"kind": "s3", "bucket": "acme", "secret_key": "x"}, "stores.offsite.secret_key: unknown key"),
    ],
)
def test_bad_object_store_config_is_one_sentence(section, expected, tmp_path):
    from dumpsafe.config_load import config_from_dict
    from dumpsafe.errors import ConfigError

    path = tmp_path / "dumpsafe.toml"
    with pytest.raises(ConfigError) as e:
        config_from_dict({"stores": {"offsite": section}}, path)
    assert str(e.value).startswith(f"{path}: {expected}"), str(e.value)
    assert "\n" not in str(e.value)


def test_gcs_upload_hands_its_first_chunk_over_without_a_third_copy(make_store):
    """The first full chunk goes from our buffer to the resumable writer without our copy still
    alive when the writer reads the chunk out to send it (Python's allocations, traced: the
    buffers are Python objects, so this is deterministic where RSS is not). With the whole chunk
    handed over at once four chunks were alive at that moment; now about two are."""
    import tracemalloc

    _, store = make_store("gcs")
    chunk = store.chunk_size
    piece = os.urandom(MiB)
    tracemalloc.start()
    try:
        with store.open_write("objects/big/db.dump") as w:
            for _ in range(3 * chunk // MiB):
                w.write(piece)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.stat("objects/big/db.dump").size == 3 * chunk
    assert peak < 2.75 * chunk, f"writing held {peak / MiB:.1f} MiB at the peak, chunks of {chunk / MiB:.0f} MiB"
