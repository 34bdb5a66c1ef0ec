"""How long work reports progress; the CLI renders it with Rich, other fronts stay quiet."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Protocol

Advance = Callable[[int], None]


class Progress(Protocol):
    def task(self, description: str, total: int | None = None) -> "ContextManagerAdvance": ...


class ContextManagerAdvance(Protocol):
    def __enter__(self) -> Advance: ...
    def __exit__(self, *exc: object) -> bool | None: ...


class NullProgress:
    """Reports nothing."""

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Advance]:
        yield lambda n: None


NULL = NullProgress()
