"""Compress, (encrypt,) hash and count while streaming: one pass, bounded memory.

Write side:  source --read--> zstd (multi-threaded) --> HashingWriter --> store writer
Read side:   store reader --> HashingReader --> zstd decompressor --> sink
The hash is updated inside write()/read(), so checking costs no second pass.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable

import zstandard

from dumpsafe.storage.base import Reader, Writer

CHUNK = 1 << 20
ZSTD_LEVEL = 3
ZSTD_THREADS = -1  # one worker per core

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


class HashingReader:
    """Read from ``source`` while counting and hashing what passes."""

    def __init__(self, source: Reader, advance: Advance | None = None):
        self._source = source
        self._sha = hashlib.sha256()
        self.count = 0
        self._advance = advance

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n)
        if data:
            self._sha.update(data)
            self.count += len(data)
            if self._advance:
                self._advance(len(data))
        return data

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
            self.count += len(data)
            if self._advance:
                self._advance(len(data))
        return data


@dataclass(frozen=True)
class PackResult:
    raw_bytes: int
    stored_bytes: int
    sha256: str


def _compressor() -> zstandard.ZstdCompressor:
    threads = ZSTD_THREADS if ZSTD_THREADS >= 0 else (os.cpu_count() or 1)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=threads)


def pack_stream(source: Reader, sink: Writer, advance: Advance | None = None) -> PackResult:
    """Compress everything ``source`` yields into ``sink``; return sizes and the stored SHA-256."""
    hashed = HashingWriter(sink)
    counted = CountingReader(source, advance)
    _compressor().copy_stream(counted, hashed, read_size=CHUNK, write_size=CHUNK)
    return PackResult(counted.count, hashed.count, hashed.hexdigest)


class PackWriter:
    """A writer that compresses what is written to it (for producers that push, like tarfile)."""

    def __init__(self, sink: Writer, advance: Advance | None = None):
        self._hashed = HashingWriter(sink)
        self._zw = _compressor().stream_writer(self._hashed, write_size=CHUNK, closefd=False)
        self._advance = advance
        self.raw_bytes = 0

    def write(self, data: bytes) -> int:
        self.raw_bytes += len(data)
        if self._advance:
            self._advance(len(data))
        return self._zw.write(data)

    def close(self) -> PackResult:
        self._zw.close()
        return PackResult(self.raw_bytes, self._hashed.count, self._hashed.hexdigest)


def unpack_stream(source: Reader, sink: Writer, advance: Advance | None = None) -> HashingReader:
    """Decompress ``source`` into ``sink``; the returned reader holds the stored bytes' hash."""
    hashed = HashingReader(source, advance)
    zstandard.ZstdDecompressor().copy_stream(hashed, sink, read_size=CHUNK, write_size=CHUNK)
    return hashed


def hash_stream(source: Reader, advance: Advance | None = None) -> tuple[str, int]:
    """SHA-256 and size of everything ``source`` yields."""
    hashed = HashingReader(source, advance)
    while hashed.read(CHUNK):
        pass
    return hashed.hexdigest, hashed.count
