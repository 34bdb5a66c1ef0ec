"""Request counters and latencies for /metrics, in a registry owned by one app."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMetrics:
    """ASGI middleware counting requests by method, route template and status."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter(
            "dumpsafe_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "dumpsafe_http_request_duration_seconds", "HTTP request latency", ["method", "route"], registry=registry
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def _send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        t0 = time.monotonic()
        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            # the route template, not the raw path: IDs must not explode the label space
            name = getattr(route, "path", None) or "unmatched"
            self.requests.labels(scope["method"], name, str(status["code"])).inc()
            self.latency.labels(scope["method"], name).observe(time.monotonic() - t0)
