"""The streaming pipeline: one pass, correct hashes, memory flat."""

import hashlib
import io
import os

import zstandard

from dumpsafe.pipeline import hash_stream, pack_stream, unpack_stream


class Generated:
    """A reader producing `total` pseudo-random-ish bytes without holding them."""

    def __init__(self, total: int):
        self.left = total
        self.block = os.urandom(1 << 16) + b"x" * (1 << 16)

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = min(n if n > 0 else 1 << 20, self.left)
        out = (self.block * (n // len(self.block) + 1))[:n]
        self.left -= n
        return out


class NullSink:
    def __init__(self):
        self.sha = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.sha.update(b)
        self.n += len(b)
        return len(b)


def _hwm_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def test_pack_unpack_roundtrip_and_hashes():
    data = os.urandom(3_000_000) + b"a" * 5_000_000
    sink = io.BytesIO()
    advanced = []
    res = pack_stream(io.BytesIO(data), sink, advanced.append)
    stored = sink.getvalue()
    assert res.raw_bytes == len(data) == sum(advanced)
    assert res.stored_bytes == len(stored) < len(data)
    assert res.sha256 == hashlib.sha256(stored).hexdigest()
    out = io.BytesIO()
    hashed = unpack_stream(io.BytesIO(stored), out)
    assert out.getvalue() == data and hashed.hexdigest == res.sha256
    assert hash_stream(io.BytesIO(stored)) == (res.sha256, len(stored))


def test_encrypted_roundtrip_needs_the_identity():
    import pyrage
    from pyrage import x25519

    ident, other = x25519.Identity.generate(), x25519.Identity.generate()
    data = os.urandom(1_000_000) + b"z" * 3_000_000
    sink = io.BytesIO()
    res = pack_stream(io.BytesIO(data), sink, recipients=[ident.to_public()])
    stored = sink.getvalue()
    assert stored.startswith(b"age-encryption.org/v1") and res.sha256 == hashlib.sha256(stored).hexdigest()
    assert b"z" * 1000 not in stored
    out = io.BytesIO()
    assert unpack_stream(io.BytesIO(stored), out, identities=[ident]).hexdigest == res.sha256
    assert out.getvalue() == data
    try:
        unpack_stream(io.BytesIO(stored), io.BytesIO(), identities=[other])
    except pyrage.DecryptError:
        pass
    else:
        raise AssertionError("a wrong identity decrypted the stream")


def test_encrypted_memory_stays_flat():
    from pyrage import x25519

    _reset_hwm()
    base = _hwm_kib()
    sink = NullSink()
    res = pack_stream(Generated(256 << 20), sink, recipients=[x25519.Identity.generate().to_public()])
    grew_mib = (_hwm_kib() - base) / 1024
    assert res.raw_bytes == 256 << 20 and sink.n == res.stored_bytes
    assert grew_mib < 96, f"peak RSS grew {grew_mib:.0f} MiB for a 256 MiB encrypted stream"


def test_memory_stays_flat_for_512_mib():
    _reset_hwm()
    base = _hwm_kib()
    sink = NullSink()
    res = pack_stream(Generated(512 << 20), sink)
    grew_mib = (_hwm_kib() - base) / 1024
    assert res.raw_bytes == 512 << 20 and sink.n == res.stored_bytes
    assert grew_mib < 96, f"peak RSS grew {grew_mib:.0f} MiB for a 512 MiB stream"
