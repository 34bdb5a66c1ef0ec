"""FastAPI dependencies: the service, the caller behind the bearer token, the guarded service.

A token is read only from the Authorization header (never from a query string), through
the app's Gate (per-address backoff, refusals audited).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dumpsafe.access import GuardedService
from dumpsafe.auth import Caller
from dumpsafe.gate import client_address

bearer = HTTPBearer(auto_error=False, description="A token from 'dumpsafe token create'.")


def get_caller(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
    return request.app.state.gate.check(cred.credentials if cred else None, client_address(request.scope))


def get_guarded(request: Request, caller: Annotated[Caller, Depends(get_caller)]) -> GuardedService:
    return GuardedService(request.app.state.service, caller)


Guarded = Annotated[GuardedService, Depends(get_guarded)]
CallerDep = Annotated[Caller, Depends(get_caller)]
