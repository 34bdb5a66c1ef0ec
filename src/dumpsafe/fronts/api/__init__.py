"""The REST front (FastAPI): parse, authorize, call the service, answer JSON."""

from dumpsafe.fronts.api.app import create_app

__all__ = ["create_app"]
