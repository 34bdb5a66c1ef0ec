"""The dashboard at ``/``: one static page and its script, served without a token.

The page holds no data: after sign-in its script calls the same REST API (/v1/...) with
the token from sessionStorage (never in a URL, a cookie or a log), so every tenant and
scope rule is the API's own, and a refused action shows the API's sentence."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).parent / "static"
# no inline script, nothing from another origin, no framing
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}
FILES = {"app.js": "text/javascript", "app.css": "text/css"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/ui/{name}")
def asset(name: str) -> FileResponse:
    if name not in FILES:
        from dumpsafe.errors import NotFoundError

        raise NotFoundError(f"no such dashboard file: {name}")
    return FileResponse(STATIC / name, media_type=FILES[name], headers=HEADERS)
