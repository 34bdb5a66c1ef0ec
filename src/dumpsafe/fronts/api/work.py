"""Long work (dump, restore, drill, prune) runs in worker threads under its own limit.

It never runs on the event loop, and never takes all of the thread pool that quick requests
(list, get, status) share: beyond the limit, long requests queue while reads keep flowing.
A client that hangs up does not cancel a started job: the thread runs to its end, and the
service commits a backup's record last, so nothing half-done is ever visible.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import anyio.to_thread
from fastapi import Request

T = TypeVar("T")


def limiter_for(service: Any) -> anyio.CapacityLimiter:
    return anyio.CapacityLimiter(max(1, getattr(service.config, "max_parallel", 2)))


async def long_work(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=request.app.state.long_work)
