"""/healthz (liveness, no token) and /metrics (Prometheus text format, a read token).

A tenant token sees only its tenant's series; an admin token also the HTTP counters. A
scrape without a token is allowed only when the config says ``metrics_unauthenticated =
true`` (then it shows what an admin sees).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from dumpsafe import __version__
from dumpsafe.access import GuardedService
from dumpsafe.auth import READ
from dumpsafe.errors import DumpsafeError
from dumpsafe.fronts.api.schemas import errors
from dumpsafe.gate import client_address

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/metrics", summary="Prometheus metrics (a read token; a tenant token sees its tenant)",
            response_class=Response, responses={200: {"content": {"text/plain": {}}}, **errors(403)})
def metrics(request: Request) -> Response:
    app = request.app
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    presented = token if scheme.lower() == "bearer" else None
    if presented is None and getattr(app.state.service.config, "metrics_unauthenticated", False):
        return Response(generate_latest(app.state.registry), media_type=CONTENT_TYPE_LATEST)
    caller = app.state.gate.check(presented, client_address(request.scope))
    caller.require(READ)
    if caller.admin:
        return Response(generate_latest(app.state.registry), media_type=CONTENT_TYPE_LATEST)
    registry = CollectorRegistry(auto_describe=False)
    register_status(registry, GuardedService(app.state.service, caller))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def register_status(registry: CollectorRegistry, source: Any) -> None:
    """Per tenant/database gauges from ``source.status()`` (a service or a guarded one)."""
    from dumpsafe.metrics import StatusCollector

    def rows() -> list[Any]:
        try:
            return source.status()
        except DumpsafeError as e:  # a scrape must not fail because a store is down
            import logging

            logging.getLogger("dumpsafe.api").warning("metrics: status unavailable: %s", e.message)
            return []

    registry.register(StatusCollector(rows))
