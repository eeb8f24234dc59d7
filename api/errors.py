"""Every error the API answers with, as RFC 9457 problem details, mapped in one place.

Domain errors are mapped by class, request validation and HTTP errors by kind, and
anything unexpected becomes a 500 that says nothing of our internals (the traceback
goes to the log, under the request id the client was given). The middleware in front
of the app (api/edge.py) gives every response an ``X-Request-ID`` and refuses bodies
larger than ``max_body_bytes`` with 413 (:func:`too_large`).
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import eventsourcing.persistence as es
import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from api.problems import type_uri
from domain.errors import (
    AlreadyExists,
    Busy,
    ConcurrencyConflict,
    DomainError,
    InsufficientStock,
    InvalidValue,
    NotFound,
    RuleBroken,
    StaleVersion,
)
from eventstore.database import is_transient

log = logging.getLogger("eventshop.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPES = "http://127.0.0.1:8000/problems/"
"""Where the problem types are, as an example: each server names its own address."""
REQUEST_ID_HEADER = "X-Request-ID"

# The most specific class wins (looked up along the error's MRO).
DOMAIN_STATUS: dict[type[DomainError], int] = {
    InvalidValue: 422,
    NotFound: 404,
    AlreadyExists: 409,
    InsufficientStock: 409,
    RuleBroken: 409,
    StaleVersion: 412,
    ConcurrencyConflict: 409,
    Busy: 503,
    DomainError: 409,
}
_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "errors"})


class FieldError(BaseModel):
    field: str = Field(description="where the bad value is: a body path such as 'price'")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, for people and for programs."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=[f"{PROBLEM_TYPES}insufficient-stock"])
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] | None = Field(
        default=None, description="each field that failed validation (422)"
    )


def problem(
    request: Request,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    kind: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem+json response; ``kind`` names the problem type (else the status does),
    whose page the app serves (api/problems.py)."""
    body = {
        "type": type_uri(request, kind, status),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **jsonable_encoder(extensions),
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def domain_status(error: DomainError) -> int:
    return next(DOMAIN_STATUS[k] for k in type(error).__mro__ if k in DOMAIN_STATUS)


async def domain_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DomainError)
    # The error's facts (which SKU, which state) become extension members; a fact
    # whose name is taken by the standard members is renamed rather than dropped.
    facts = {(f"current_{k}" if k in _STANDARD_MEMBERS else k): v for k, v in error.info.items()}
    if isinstance(error, InvalidValue):
        facts = {"errors": [{"field": error.field, "message": error.detail}]}
    return problem(
        request,
        domain_status(error),
        error.detail,
        title=error.title,
        kind=_kebab(type(error).__name__),
        # Busy: the same command may be sent again, in a moment.
        headers={"Retry-After": "1"} if isinstance(error, Busy) else None,
        **facts,
    )


def _field(location: tuple[Any, ...]) -> str:
    where, *path = location
    return ".".join(str(part) for part in path) or str(where)


async def validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = error.errors()
    broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if broken is not None:
        reason = broken.get("ctx", {}).get("error", "malformed")
        where = broken["loc"][-1]
        return problem(
            request,
            400,
            f"The body is not valid JSON: {reason}"
            + (f" (at character {where})" if isinstance(where, int) else ""),
            title="Malformed JSON",
            kind="malformed-json",
        )
    fields = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in errors]
    named = ", ".join(dict.fromkeys(f["field"] for f in fields))
    return problem(
        request,
        422,
        f"Invalid input: {named}",
        title="Invalid input",
        kind="invalid-input",
        errors=fields,
    )


async def http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    status = error.status_code
    if status == 413:
        # Starlette's limiter, which counted a streamed body, raised this one.
        return too_large(request, request.scope.get(MAX_BODY_SIZE_SCOPE_KEY))
    detail = str(error.detail)
    if detail == HTTPStatus(status).phrase:
        detail = f"{request.method} {request.url.path}: {detail.lower()}"
    headers = error.headers
    if status == 405 and (allowed := _allowed_methods(request)):
        # Starlette names the methods of the first route whose path matched; a path
        # served by several routes (GET and PATCH /api/products/{sku}) allows them all.
        headers = {**(headers or {}), "Allow": allowed}
    return problem(request, status, detail, headers=headers)


@functools.cache
def _path_pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)))


def _allowed_methods(request: Request) -> str | None:
    """The methods the API's document lists for the request's path (None: not in it)."""
    path = request.url.path
    allowed = {
        method.upper()
        for template, operations in request.app.openapi()["paths"].items()
        if _path_pattern(template).fullmatch(path)
        for method in operations
    }
    return ", ".join(sorted(allowed)) or None


def too_large(request: Request, max_bytes: int | None) -> JSONResponse:
    limit = f"{max_bytes} bytes" if max_bytes is not None else "the limit"
    return problem(
        request,
        413,
        f"The body is larger than {limit}",
        title="Content Too Large",
        kind="body-too-large",
    )


async def unavailable(request: Request, error: Exception) -> JSONResponse:
    """The database did not answer in time (down, unreachable, or busy past the waits of
    the settings): 503, to be tried again; nothing the request did was acknowledged."""
    if not is_transient(error):
        return await unexpected_error(request, error)
    log.warning("%s %s: the database did not answer: %s", request.method, request.url.path, error)
    return problem(
        request,
        503,
        "The database did not answer in time; try again shortly",
        title="Database unavailable",
        kind="database-unavailable",
        headers={"Retry-After": "1"},
    )


async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    log.error(
        "unexpected error in %s %s [request %s]",
        request.method,
        request.url.path,
        request_id,
        exc_info=error,
        # Logged outside the request's context (see below): name its id explicitly.
        extra={"request_id": request_id},
    )
    # This response is sent outside the request-id middleware, so it sets the header.
    return problem(
        request,
        500,
        f"An unexpected error occurred; quote request id {request_id} when reporting it",
        headers={REQUEST_ID_HEADER: request_id},
    )


def install(app: FastAPI) -> None:
    """Register the one error mapping on ``app``."""
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    database = (es.OperationalError, es.InterfaceError, psycopg.OperationalError, sqlite3.Error)
    for failure in database:
        app.add_exception_handler(failure, unavailable)
    app.add_exception_handler(Exception, unexpected_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that may answer these problems (for /openapi.json)."""
    return {
        status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses
    }


CHANGE_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 412, 413, 422, 503)
"""What a command on an existing cart or order may answer besides its result (503: busy,
or the database did not answer)."""
