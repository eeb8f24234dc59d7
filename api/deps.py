"""FastAPI dependencies: the service, the settings and the caller's identity."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import InvalidToken, Principal, decode
from api.settings import Settings
from commands.metadata import identify
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
    identify(caller.sub, caller.roles)
    return caller


def require(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency that lets through only callers holding one of ``roles`` (else 403)."""

    def check(caller: Principal = Depends(principal)) -> Principal:
        if not caller.has(*roles):
            raise HTTPException(403, f"this needs one of the roles: {', '.join(roles)}")
        return caller

    return check


ShopDep = Annotated[Shop, Depends(get_shop)]
Caller = Annotated[Principal, Depends(principal)]

# If-Match names one version: "3", W/"3" or a bare 3; "*" means "whatever is current".
_IF_MATCH = re.compile(r'\s*(?:(?:W/)?"(\d{1,18})"|(\d{1,18}))\s*')


def expected_version(
    if_match: Annotated[
        str | None,
        Header(
            description='Act only on this version of the aggregate: its ETag ("3"), W/"3" or 3.'
            " A malformed value is refused with 400; a stale one with 412.",
        ),
    ] = None,
) -> int | None:
    """The version an ``If-Match`` header names, for the service's ``expected_version``."""
    if if_match is None or if_match.strip() == "*":
        return None
    matched = _IF_MATCH.fullmatch(if_match)
    if matched is None:
        raise HTTPException(400, f'If-Match must name one version, such as "3"; got {if_match!r}')
    return int(matched.group(1) or matched.group(2))


ExpectedVersion = Annotated[int | None, Depends(expected_version)]


def owner_unless_staff(caller: Principal) -> str | None:
    """Whose orders a change may touch: any for staff, else only the caller's own."""
    return None if caller.has("staff") else caller.sub
