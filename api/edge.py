"""The one middleware in front of the app: request id, header and body limits, metrics,
access log.

Pure ASGI, and one layer where there were three: every layer costs each request a
call, a wrapper of ``send`` and one more frame per message it passes on. For each
HTTP request, in this order:

1. **request id**: the client's ``X-Request-ID`` if it is sane, else a new one. It
   tags the response, is kept in ``scope["state"]["request_id"]`` (where
   :func:`api.errors.unexpected_error` finds it), and is the correlation id of the
   events the request causes (:mod:`eventstore.causes`; the caller is filled in once
   the token is checked, :func:`api.deps.principal`);
2. **header limit**: headers of more than ``MAX_HEADER_BYTES`` in all (names and
   values) are refused with 431 before anything reads them (a token, say);
3. **body limit**: a declared ``Content-Length`` over ``max_body_bytes`` is refused
   with 413 before the app runs. A body of unknown length (``Transfer-Encoding``, or no
   valid ``Content-Length``) is counted as it streams by Starlette's limiter, which
   raises a 413 ``HTTPException`` from the read, so that :func:`api.errors.http_error`
   answers. A body with a valid declared length within the limit needs no counting:
   the server reads exactly that many bytes;
4. **metrics and access log** (:mod:`api.observability`): every request is counted and
   timed by route template, and leaves one access-log line, whatever answered it (the
   431 or 413 above, the app, or a 500: an error escaping the app is counted as a 500).
"""

from __future__ import annotations

import re
import time
import uuid

from fastapi import FastAPI, Request, Response
from starlette.datastructures import MutableHeaders
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import REQUEST_ID_HEADER, problem, too_large
from api.observability import UNMATCHED, Metrics, access_log
from eventstore.causes import caused_by

# What a client may send as its own request id: short, and safe to log and echo.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
MAX_HEADER_BYTES = 16 * 1024
"""The most bytes of header names and values one request may send (431 above)."""


class Edge:
    """Request id, body limit, metrics and access log: see the module's docstring."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.counted = RequestBodyLimitMiddleware(app, max_body_size=max_body_bytes)
        self.metrics = metrics
        self.max_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # One pass over the headers; the first of each, as Headers.get would find it.
        given: bytes | None = None
        declared: bytes | None = None
        streamed = False
        header_bytes = 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
            if name == _REQUEST_ID_KEY:
                given = value if given is None else given
            elif name == b"content-length":
                declared = value if declared is None else declared
            elif name == b"transfer-encoding":
                streamed = True
        request_id = given.decode("latin-1") if given else ""
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_edge(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        length = declared.decode("latin-1") if declared is not None else ""
        try:
            with caused_by(correlation_id=request_id):
                if header_bytes > MAX_HEADER_BYTES:
                    await headers_too_large(Request(scope))(scope, receive, send_edge)
                elif length.isdigit() and int(length) > self.max_bytes:
                    await too_large(Request(scope), self.max_bytes)(scope, receive, send_edge)
                elif length.isdigit() and not streamed:
                    await self.app(scope, receive, send_edge)
                else:
                    await self.counted(scope, receive, send_edge)
        finally:
            self._answered(scope, status, time.perf_counter() - start, request_id)

    def _answered(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        # The router leaves the matched route in the scope (also on a 405).
        route = getattr(scope.get("route"), "path", None) or UNMATCHED
        method = scope["method"]
        path = scope["path"]
        self.metrics.request_answered(method, route, status, seconds)
        access_log.info(
            "%s %s %s",
            method,
            path,
            status,
            extra={
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "request_id": request_id,
            },
        )


def headers_too_large(request: Request) -> Response:
    return problem(
        request,
        431,
        f"The request's headers are larger than {MAX_HEADER_BYTES} bytes in total",
        kind="headers-too-large",
    )


def install(app: FastAPI, metrics: Metrics, max_body_bytes: int) -> None:
    """Put the edge in front of ``app``; add it after any other middleware (outermost)."""
    app.add_middleware(Edge, metrics=metrics, max_body_bytes=max_body_bytes)
