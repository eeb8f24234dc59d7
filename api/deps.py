"""FastAPI dependencies: the service, the settings, the caller's identity, idempotency
keys, If-Match, pagination and timestamps.

Those that do not block are ``async``: FastAPI runs a plain ``def`` dependency in a
worker thread, a hand-off that costs more than most of them do. A route runs its one
blocking call (the service's command) in a worker thread itself (:func:`in_thread`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, AwareDatetime, BeforeValidator
from starlette.concurrency import run_in_threadpool

from api.auth import InvalidToken, Principal, decode
from commands import idempotency
from commands.service import Shop
from domain.base import Expected
from eventshop.settings import Settings
from eventstore.causes import identify
from projections.engine.pagination import DEFAULT_LIMIT, MAX_LIMIT, Keyset

_bearer = HTTPBearer(auto_error=False, description="JWT signed with EVENTSHOP_JWT_SECRET")

P = ParamSpec("P")
T = TypeVar("T")


def in_thread(call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
    """Run ``call`` (a command of the service, which waits on the database) in a worker
    thread, so that the event loop goes on serving meanwhile.

    The thread runs in a copy of the request's context: the idempotency key and the
    cause of the request's events (eventstore/causes.py) go with it.
    """
    return run_in_threadpool(call, *args, **kwargs)


async def get_shop(request: Request) -> Shop:
    return request.app.state.shop  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The caller, from a valid bearer token; 401 otherwise. The caller becomes the actor
    of the events the request causes."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
    try:
        caller = decode(get_settings(request).secret(), credentials.credentials)
    except InvalidToken as error:
        raise HTTPException(401, str(error), {"WWW-Authenticate": "Bearer"}) from None
    request.state.principal = caller
    identify(caller.sub, caller.roles)
    return caller


async def principal(request: Request, credentials: Credentials) -> Principal:
    """The caller, from a valid bearer token; 401 otherwise."""
    return _authenticate(request, credentials)


def _authorize(
    request: Request, credentials: HTTPAuthorizationCredentials | None, roles: tuple[str, ...]
) -> Principal:
    """The caller, if it holds one of ``roles``: 401 without a valid token, else 403."""
    caller = _authenticate(request, credentials)
    if not caller.has(*roles):
        raise HTTPException(403, f"this needs one of the roles: {', '.join(roles)}")
    return caller


def require(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through only callers holding one of ``roles`` (else 403).

    It checks the token itself rather than depending on :func:`principal`: each
    dependency costs every request FastAPI's resolving it.
    """

    async def check(request: Request, credentials: Credentials) -> Principal:
        return _authorize(request, credentials, roles)

    return check


ShopDep = Annotated[Shop, Depends(get_shop)]
Caller = Annotated[Principal, Depends(principal)]

# One member of an If-Match list: an entity tag "3", a weak one W/"3", or a bare 3.
_ENTITY_TAG = re.compile(r'[ \t]*(?:(W/)?"([0-9]{1,18})"|([0-9]{1,18}))[ \t]*')
# The same, for the OpenAPI document (validated here, so that a bad one is a 400).
_TAG = r'(?:W/)?"[0-9]{1,18}"|[0-9]{1,18}'
IF_MATCH_PATTERN = rf"^[ \t]*(?:\*|(?:{_TAG})(?:[ \t]*,[ \t]*(?:{_TAG}))*)[ \t]*$"

IfMatch = Annotated[
    str | None,
    Header(
        description='Act only on this version of the aggregate: its ETag ("3"). A weak tag'
        ' (W/"3") never matches (RFC 9110 strong comparison); repeated headers are one list.'
        " A malformed value is refused with 400; one the current version does not match"
        " with 412.",
        json_schema_extra={"pattern": IF_MATCH_PATTERN},
    ),
]


def version_named(if_match: str | None) -> Expected:
    """The versions an ``If-Match`` list names, for the service's ``expected_version``:
    None for ``*``; weak tags never match (RFC 9110 strong comparison), so a list of
    them only names no version at all."""
    if if_match is None or if_match.strip(" \t") == "*":
        return None
    strong: set[int] = set()
    for member in if_match.split(","):
        matched = _ENTITY_TAG.fullmatch(member)
        if matched is None:
            raise HTTPException(
                400, f'If-Match must list versions as entity tags, such as "3"; got {if_match!r}'
            )
        weak, quoted, bare = matched.groups()
        if not weak:
            strong.add(int(quoted or bare))
    return strong.pop() if len(strong) == 1 else frozenset(strong)


_IF_MATCH_KEY = b"if-match"


def if_match_of(request: Request) -> str | None:
    """Every If-Match header of the request as one list (RFC 9110 5.3), or None."""
    values = [value for name, value in request.scope["headers"] if name == _IF_MATCH_KEY]
    return b", ".join(values).decode("latin-1") if values else None


# --- commands ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """What a command route needs: the service, the caller, and the aggregate version the
    caller expects (``If-Match``; None for any)."""

    shop: Shop
    caller: Principal
    expected_version: Expected = None


def for_command(*roles: str, versioned: bool = True) -> Callable[..., Awaitable[Command]]:
    """The one dependency of a command route (each dependency costs every request FastAPI's
    resolving it): a caller holding one of ``roles`` (401, 403 as :func:`require`) and,
    if ``versioned``, the version its ``If-Match`` names (400 if malformed, checked first).
    """

    async def versioned_command(
        request: Request, credentials: Credentials, if_match: IfMatch = None
    ) -> Command:
        # The parameter documents the header; a repeated one is read whole here.
        version = version_named(if_match_of(request) if if_match is not None else None)
        caller = _authorize(request, credentials, roles)
        return Command(request.app.state.shop, caller, version)

    async def unversioned_command(request: Request, credentials: Credentials) -> Command:
        return Command(request.app.state.shop, _authorize(request, credentials, roles))

    return versioned_command if versioned else unversioned_command


StaffCommand = Annotated[Command, Depends(for_command("staff"))]


# --- idempotency keys ------------------------------------------------------------------

# Methods that change something; a key sent with any other is ignored.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Visible ASCII only: the key is stored, compared and may be logged.
KEY_PATTERN = rf"^[\x21-\x7e]{{1,{idempotency.MAX_KEY_LENGTH}}}$"
_KEY = re.compile(KEY_PATTERN)
KEY_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": idempotency.MAX_KEY_LENGTH,
    "pattern": KEY_PATTERN,
}
KEY_DESCRIPTION = (
    "Any unique string (a UUID, say). A repeat with the same key and body gets the first"
    " answer again and records nothing; the same key with another body is refused (422)."
    " Keys are kept for a day (EVENTSHOP_IDEMPOTENCY_TTL_SECONDS)."
)


def _canonical(body: bytes) -> bytes:
    """The body with JSON formatting (spacing, key order) made irrelevant."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        return body


_KEY_HEADER = idempotency.HEADER.lower().encode("latin-1")


def _header(request: Request, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), as ``request.headers.get`` gives
    it; without the KeyError that lookup raises and catches for a header not sent."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def idempotency_key(request: Request) -> None:
    """Serve an unsafe request under its ``Idempotency-Key`` (commands/idempotency.py).

    Applied to every route of the app; async on purpose: it runs in the request's own
    task, so the key it sets reaches the route and nothing else. The fingerprint covers
    what makes two requests the same one: method, path, query, If-Match and body; the
    caller scopes the key itself.
    """
    key = _header(request, _KEY_HEADER) if request.method in UNSAFE_METHODS else None
    if key is None:
        idempotency.use_key(None)
        return
    if not _KEY.fullmatch(key):
        raise RequestValidationError(
            [
                {
                    "type": "string_pattern_mismatch",
                    "loc": ("header", idempotency.HEADER),
                    "msg": f"must be 1 to {idempotency.MAX_KEY_LENGTH} visible ASCII characters",
                    "input": key,
                }
            ]
        )
    body = await request.body()
    digest = idempotency.fingerprint(
        request.method,
        request.url.path,
        request.url.query,
        if_match_of(request) or "",
        _canonical(body),
    )
    idempotency.use_key(idempotency.IdempotentRequest(key, digest))


# --- query strings -----------------------------------------------------------------------


def _scalar_query_parameters(request: Request) -> set[str]:
    """The query parameters the matched route takes one value of, per its OpenAPI entry."""
    route = request.scope.get("route")
    operation = (
        request.app.openapi()["paths"]
        .get(getattr(route, "path", None), {})
        .get(request.method.lower(), {})
    )
    return {
        parameter["name"]
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query" and not _takes_many(parameter.get("schema", {}))
    }


def _takes_many(schema: dict[str, Any]) -> bool:
    alternatives = [*schema.get("anyOf", []), *schema.get("oneOf", [])]
    return schema.get("type") == "array" or any(_takes_many(s) for s in alternatives)


async def one_value_per_query_parameter(request: Request) -> None:
    """Refuse ``?after=1&after=2`` where a route takes one ``after`` (422), rather than
    silently using the last one. Applied to every route of the app.

    Found by fuzzing: such a request was answered as if the other values were not there.
    """
    if not request.scope.get("query_string"):
        return
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = {name for name, count in counts.items() if count > 1}
    if not repeated:
        return
    given_twice = sorted(repeated & _scalar_query_parameters(request))
    if given_twice:
        raise RequestValidationError(
            [
                {
                    "type": "too_many_values",
                    "loc": ("query", name),
                    "msg": "give this parameter once",
                    "input": request.query_params.getlist(name),
                }
                for name in given_twice
            ]
        )


# --- bodies ------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


async def no_duplicate_keys(request: Request) -> None:
    """Refuse a JSON body that gives one key twice (400), rather than silently take the
    last value (``"quantity": 1`` then ``1000`` added 1,000 units). Applied to every route;
    FastAPI has parsed the body already (a malformed one was answered 400 before)."""
    if request.method not in UNSAFE_METHODS:
        return
    body = await request.body()
    if not body:
        return
    try:
        json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKey as duplicate:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body",),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": f"the key {str(duplicate)!r} is given twice in one object"},
                }
            ]
        ) from None
    except ValueError:
        return  # not JSON: the body's own validation answers


_CONTENT_TYPE = b"content-type"
# application/json, or any JSON-based type (application/problem+json …), with parameters.
_JSON_MEDIA_TYPE = re.compile(r"application/(?:[\w.-]+\+)?json[ \t]*(?:;|$)", re.IGNORECASE)


async def json_bodies_only(request: Request) -> None:
    """Refuse a body sent without a JSON Content-Type with 415, saying what to send:
    FastAPI reads such a body as no JSON at all and refused it with a 422 about "a valid
    dictionary" (``curl -d`` sends form encoding). An empty body needs no type."""
    if request.method not in UNSAFE_METHODS:
        return
    declared = _header(request, _CONTENT_TYPE)
    if declared is not None and _JSON_MEDIA_TYPE.match(declared.strip()):
        return
    if not await request.body():
        return  # nothing sent, nothing to misread
    sent = "none was sent" if declared is None else f"not {declared!r}"
    raise HTTPException(
        415,
        f"the body must be JSON: send Content-Type: application/json ({sent})",
        {"Accept": "application/json"},
    )


async def every_request(request: Request) -> None:
    """The app's one dependency of every route: :func:`idempotency_key`,
    :func:`one_value_per_query_parameter`, :func:`json_bodies_only` and
    :func:`no_duplicate_keys` (one dependency rather than four: FastAPI's resolving each
    costs every request)."""
    await idempotency_key(request)
    await one_value_per_query_parameter(request)
    await json_bodies_only(request)
    await no_duplicate_keys(request)


# --- lists -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageParams:
    """What a list route was asked for: how many items, after which cursor."""

    limit: int
    cursor: str | None

    def keyset(self, kind: str, size: int) -> Keyset:
        """The page of list ``kind`` sorted by a key of ``size`` values (422 if the cursor
        is not one that list handed out)."""
        return Keyset.parse(kind, self.limit, self.cursor, size)


async def page_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"items per page, at most {MAX_LIMIT}")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            max_length=1024,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="the `next_cursor` of the page before; opaque",
        ),
    ] = None,
) -> PageParams:
    """The shared ``limit`` and ``cursor`` of every list (over-long or foreign: 422)."""
    return PageParams(limit, cursor)


Page = Annotated[PageParams, Depends(page_params)]

_ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


def _iso_only(value: Any) -> Any:
    # pydantic alone would also read a number ("0.99") as a Unix timestamp.
    if isinstance(value, str) and not _ISO_MOMENT.match(value):
        raise ValueError("must be an ISO 8601 date and time with its UTC offset")
    return value


def _within_utc(value: datetime) -> datetime:
    # 0001-01-01T00:00:00+14:00 parses, but is before the first moment Python can hold
    # in UTC, and every read model compares moments in UTC.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must fall between 0001-01-01 and 9999-12-31 in UTC") from None
    return value


# A moment in a query (``placed_from``, ``from``...): ISO 8601 with its UTC offset; a
# naive one names no moment and is refused (422), and so is a Unix timestamp.
Instant = Annotated[AwareDatetime, BeforeValidator(_iso_only), AfterValidator(_within_utc)]
