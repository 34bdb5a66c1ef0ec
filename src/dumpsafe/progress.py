"""How long work reports progress; the CLI renders it with Rich, other fronts stay quiet.

A task yields an ``Advance``: call it with a byte count. A front that can show more also
gives it a ``describe(text)`` method (the restore names the table pg_restore is loading);
``describe`` below calls it when present, so a plain function stays a valid Advance.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Protocol

Advance = Callable[[int], None]


class Progress(Protocol):
    def task(self, description: str, total: int | None = None) -> "ContextManagerAdvance": ...


class ContextManagerAdvance(Protocol):
    def __enter__(self) -> Advance: ...
    def __exit__(self, *exc: object) -> bool | None: ...


class Ticker:
    """An Advance that can also re-describe its task."""

    def __init__(self, advance: Advance, describe: Callable[[str], None]):
        self._advance, self.describe = advance, describe

    def __call__(self, n: int) -> None:
        self._advance(n)


def describe(advance: Advance, text: str) -> None:
    """Re-describe the task behind ``advance`` (nothing when its front cannot)."""
    fn = getattr(advance, "describe", None)
    if fn is not None:
        fn(text)


class NullProgress:
    """Reports nothing."""

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Advance]:
        yield lambda n: None


NULL = NullProgress()
