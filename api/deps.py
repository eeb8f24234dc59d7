"""FastAPI dependencies: the service, the settings and the caller's identity."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import InvalidToken, Principal, decode
from api.settings import Settings
from commands.service import Shop

_bearer = HTTPBearer(auto_error=False, description="JWT signed with EVENTSHOP_JWT_SECRET")


def get_shop(request: Request) -> Shop:
    return request.app.state.shop  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    settings: Settings = Depends(get_settings),
) -> Principal:
    """The caller, from a valid bearer token; 401 otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
    try:
        caller = decode(settings.secret(), credentials.credentials)
    except InvalidToken as error:
        raise HTTPException(401, str(error), {"WWW-Authenticate": "Bearer"}) from None
    request.state.principal = caller
    return caller


def require(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency that lets through only callers holding one of ``roles`` (else 403)."""

    def check(caller: Principal = Depends(principal)) -> Principal:
        if not caller.has(*roles):
            raise HTTPException(403, f"this needs one of the roles: {', '.join(roles)}")
        return caller

    return check
