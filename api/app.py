"""The composition root of the HTTP API: settings, store, service, routers, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import Depends, FastAPI

from api import console, docs, edge, errors, observability, problems
from api.deps import (
    KEY_DESCRIPTION,
    KEY_SCHEMA,
    UNSAFE_METHODS,
    every_request,
)
from api.openapi import document, operation_id
from api.routers import (
    audit,
    auth,
    carts,
    customers,
    deliveries,
    health,
    integration,
    metrics,
    orders,
    products,
    projections,
    reports,
    stock,
    webhooks,
)
from commands import idempotency
from commands.service import Shop
from eventshop import collector
from eventshop.bootstrap import (
    open_auditor,
    open_deliveries,
    open_read_side,
    open_shop,
    signing_key,
    trusted_keys,
)
from eventshop.processes import open_processes
from eventshop.settings import Settings
from eventshop.webhooks import open_webhooks
from projections import ReadSide
from projections.audit.issuer import ReceiptIssuer
from projections.audit.receipts import Signer
from projections.engine.waits import PositionWaits

DESCRIPTION = """\
The back end of an online shop, event-sourced: every command appends events to an
event store, and every command answer carries the aggregate's `version` (also its
`ETag`; send it back as `If-Match` to act only on that version) and `position`, the
place of the command's last event in the global log.

Money is a decimal string (`"12.50"`), at most 1000000.00 (also an order's total). Times
are ISO 8601 with a UTC offset (`2026-11-29T12:00:00Z`), never Unix times. Text holds no
control characters (reasons and notes: tab and line feed only). `If-Match` matches by
strong comparison (a weak tag never matches). Errors are RFC 9457 problem details
(`application/problem+json`). Send `Authorization: Bearer <JWT>`; `eventshop token
--role staff` prints one.
"""


def _version() -> str:
    try:
        return version("eventshop")
    except PackageNotFoundError:
        return "0+unknown"


def create_server_app() -> FastAPI:
    """The API as ``eventshop serve`` runs it, one per process: its garbage collector
    tuned for a long-running server (eventshop/collector.py)."""
    collector.tune()
    return create_app(own_process=True)


def create_app(
    settings: Settings | None = None,
    shop: Shop | None = None,
    read_side: ReadSide | None = None,
    *,
    own_process: bool = False,
) -> FastAPI:
    """Build the API; without ``shop`` and ``read_side``, open them on ``settings.database_url``.

    What is opened here is started with the app (the read models are fed in this
    process unless ``run_projections`` is off) and closed when it shuts down; what is
    passed in stays the caller's to start and close. ``own_process``: the app is all
    its process serves, which may then leave what it made at start out of the garbage
    collector's sight (not so in tests, which make many apps in one process).
    """
    settings = settings or Settings()
    owns_shop, owns_read_side = shop is None, read_side is None
    the_shop = shop or open_shop(settings)
    the_read_side = read_side or open_read_side(settings, the_shop)
    auditor = open_auditor(the_shop)
    key = signing_key(settings)
    assert key is not None  # made if missing
    # The writer side signs receipts of the log as it grows (projections/audit/issuer.py).
    issuer = ReceiptIssuer(
        auditor, Signer(key), settings.audit_receipt_events, settings.audit_receipt_seconds
    )
    the_webhooks = open_webhooks(settings, the_read_side)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        processes = None
        if owns_read_side and settings.run_projections:
            the_read_side.start()
            processes = open_processes(settings.database_url, the_shop, the_read_side)
            processes.start()
            the_webhooks.start()
        the_shop.observers.append(issuer)
        issuer.start()
        if own_process:
            collector.settle()
        try:
            yield
        finally:
            the_webhooks.close()
            issuer.close()
            the_shop.observers.remove(issuer)
            if processes is not None:
                processes.stop()
            if owns_read_side:
                the_read_side.close()
            if owns_shop:
                the_shop.close()

    app = FastAPI(
        title="eventshop",
        description=DESCRIPTION,
        version=_version(),
        lifespan=lifespan,
        # Served by api/docs.py, with their assets: FastAPI's own pages load them from a CDN.
        docs_url=None,
        redoc_url=None,
        # Every unsafe request may carry an Idempotency-Key; no query parameter that
        # takes one value may come twice (api/deps.py).
        dependencies=[Depends(every_request)],
        # Operation ids from the routes' names (addProduct), for generated clients.
        generate_unique_id_function=operation_id,
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
            "operation_spans": settings.opentelemetry,
        },
    )
    app.state.shop = the_shop
    app.state.settings = settings
    app.state.read_side = the_read_side
    app.state.position_waits = PositionWaits(the_read_side.runner, limit=settings.read_waiters)
    app.state.auditor = auditor
    app.state.receipts = issuer
    app.state.trusted_keys = trusted_keys(settings)
    app.state.webhooks = the_webhooks
    app.state.logins = auth.Logins.of(settings)
    app.state.deliveries = open_deliveries(settings, the_read_side, the_webhooks)
    errors.install(app)
    request_metrics = observability.install(app, the_shop)
    # The one middleware of ours (request id, body limit, metrics, access log): added
    # last, so that it is the outermost and sees every answer.
    edge.install(app, request_metrics, settings.max_body_bytes)
    routers = (
        health,
        metrics,
        products,
        stock,
        carts,
        orders,
        customers,
        reports,
        audit,
        projections,
        deliveries,
        integration,
        webhooks,
        auth,
    )
    for module in routers:
        app.include_router(module.router)
    app.include_router(audit.public)
    console.install(app)
    app.include_router(problems.router)
    docs.install(app)
    documented = document(
        _with_json_bodies_only(_with_idempotency_key(_with_problem_media_type(app.openapi)))
    )
    app.openapi = documented  # type: ignore[method-assign]
    return app


def _with_problem_media_type(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """FastAPI documents every response as application/json; errors are problem+json."""

    def openapi() -> dict[str, Any]:
        schema = build()
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                # Under the route's own media type too (NDJSON routes): a problem is JSON.
                for media_type in [m for m in content if m != errors.PROBLEM_MEDIA_TYPE]:
                    if status[0] in "45":
                        content[errors.PROBLEM_MEDIA_TYPE] = content.pop(media_type)
        return schema

    return openapi


def _with_json_bodies_only(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Document the 415 of an operation that takes a body, answered by an app-wide
    dependency (api/deps.py) to a body sent as anything but JSON."""
    refused = {
        "description": "the body was not sent as JSON (Content-Type: application/json)",
        "content": {
            errors.PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }

    def openapi() -> dict[str, Any]:
        schema = build()
        for path in schema["paths"].values():
            for operation in path.values():
                if "requestBody" in operation:
                    operation.setdefault("responses", {}).setdefault("415", refused)
        return schema

    return openapi


def _with_idempotency_key(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Document the Idempotency-Key header, read by an app-wide dependency, where it counts."""
    header = {
        "name": idempotency.HEADER,
        "in": "header",
        "required": False,
        "description": KEY_DESCRIPTION,
        "schema": KEY_SCHEMA,
    }

    def openapi() -> dict[str, Any]:
        schema = build()
        for path in schema["paths"].values():
            for method, operation in path.items():
                if method.upper() not in UNSAFE_METHODS:
                    continue
                parameters = operation.setdefault("parameters", [])
                if header not in parameters:
                    parameters.append(header)
        return schema

    return openapi
