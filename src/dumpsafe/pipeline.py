"""Compress, encrypt, hash and count while streaming: one pass, bounded memory.

Write side:  source --read--> zstd (multi-threaded) [--> age] --> HashingWriter --> store writer
Read side:   store reader --> HashingReader [--> age] --> zstd decompressor --> sink
The hash covers the stored bytes and is updated inside write()/read(): no second pass.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable

import pyrage
import zstandard

from dumpsafe.storage.base import Reader, Writer

CHUNK = 1 << 20
# Level 2, not 3: on the 1 GB benchmark dump level 3 cost 3.4-3.9 CPU-s and gave 223 MiB,
# level 2 2.1-2.2 CPU-s and 212 MiB (pg_dump -Fc gzip: 244 MiB); on a tar of the Python
# stdlib level 2 is still smaller than gzip -6 (0.289 vs 0.292), level 1 is not (0.311).
# On two cores those CPU-seconds are taken from pg_dump's server backend (bench/RESULTS.md).
ZSTD_LEVEL = 2
ZSTD_THREADS = -1  # one worker per core
# Each zstd worker holds its job's input and output: at level 2 the default job is 4 MiB and
# the workers' buffers came to +18 MiB of peak RSS; 2 MiB jobs take +7 MiB for the same ratio
# and ~5 % more compression CPU (measured on 800 MiB of dump-like rows), which the backup
# never waits on (pg_dump is the slower side).
ZSTD_JOB_SIZE = 2 << 20

Advance = Callable[[int], None]


class HashingWriter:
    """Pass bytes through to ``sink`` while counting and hashing them."""

    def __init__(self, sink: Writer):
        self._sink = sink
        self._sha = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self.count += len(data)
        self._sink.write(data)
        return len(data)

    def flush(self) -> None:  # zstandard's stream_writer calls flush on the inner writer
        pass

    @property
    def hexdigest(self) -> str:
        return self._sha.hexdigest()


class CountingReader:
    """Count (and report) bytes read from a source."""

    def __init__(self, source: Reader, advance: Advance | None = None):
        self._source = source
        self.count = 0
        self._advance = advance

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n)
        if data:
            self._seen(data)
        return data

    def _seen(self, data: bytes) -> None:
        self.count += len(data)
        if self._advance:
            self._advance(len(data))


class HashingReader(CountingReader):
    """Read from ``source`` while counting and hashing what passes."""

    def __init__(self, source: Reader, advance: Advance | None = None):
        super().__init__(source, advance)
        self._sha = hashlib.sha256()

    def _seen(self, data: bytes) -> None:
        self._sha.update(data)
        super()._seen(data)

    @property
    def hexdigest(self) -> str:
        return self._sha.hexdigest()


@dataclass(frozen=True)
class PackResult:
    raw_bytes: int
    stored_bytes: int
    sha256: str


def _compressor() -> zstandard.ZstdCompressor:
    threads = ZSTD_THREADS if ZSTD_THREADS >= 0 else (os.cpu_count() or 1)
    if threads < 1:
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    params = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, threads=threads, job_size=ZSTD_JOB_SIZE)
    return zstandard.ZstdCompressor(compression_params=params)


def pack_stream(
    source: Reader, sink: Writer, advance: Advance | None = None, recipients: list[Any] | None = None
) -> PackResult:
    """Compress (and, given age recipients, encrypt) ``source`` into ``sink``.

    Returns the raw size, the stored size and the SHA-256 of the stored bytes.
    """
    hashed = HashingWriter(sink)
    counted = CountingReader(source, advance)
    if recipients:
        compressed = _compressor().stream_reader(counted, read_size=CHUNK)
        pyrage.encrypt_io(compressed, hashed, recipients)
    else:
        _compressor().copy_stream(counted, hashed, read_size=CHUNK, write_size=CHUNK)
    return PackResult(counted.count, hashed.count, hashed.hexdigest)


def unpack_stream(
    source: Reader, sink: Writer, advance: Advance | None = None, identities: list[Any] | None = None
) -> HashingReader:
    """Decrypt (given identities) and decompress ``source`` into ``sink``.

    The returned reader holds the SHA-256 and size of the stored bytes that passed.
    """
    hashed = HashingReader(source, advance)
    if identities:
        with zstandard.ZstdDecompressor().stream_writer(sink, write_size=CHUNK, closefd=False) as zw:
            pyrage.decrypt_io(hashed, zw, identities)
    else:
        zstandard.ZstdDecompressor().copy_stream(hashed, sink, read_size=CHUNK, write_size=CHUNK)
    return hashed


def hash_stream(source: Reader, advance: Advance | None = None) -> tuple[str, int]:
    """SHA-256 and size of everything ``source`` yields."""
    hashed = HashingReader(source, advance)
    while hashed.read(CHUNK):
        pass
    return hashed.hexdigest, hashed.count
