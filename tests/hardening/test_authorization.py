"""Who may do what: every route by every kind of caller, as one table.

The callers: the customer who owns the cart or order (``owner``), another customer
(``other``), staff, an auditor, an admin, and three who are not let in: no token, an
expired token, a token signed with another key. Each cell is the status that caller
must get from that route, on a target built fresh for the cell, so that no success
in one cell changes the answer of another.

A customer must never learn that another customer's cart, order or account exists: the answer
to another's is the answer to a random id, down to the words of the problem.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Message

from api.auth import Principal
from projections.engine import parking
from projections.engine.parking import ParkedEvent
from projections.webhooks import Delivery
from tests.api.conftest import Headers, bearer, reads_own_writes
from tests.hardening.conftest import (
    ADMIN,
    ALICE,
    AUDITOR,
    BOB,
    CHECKOUT,
    EXPIRED,
    FORGED,
    STAFF,
    World,
    make_app,
)

CALLERS: dict[str, Headers] = {
    "owner": ALICE,
    "other": BOB,
    "staff": STAFF,
    "auditor": AUDITOR,
    "admin": ADMIN,
    "no-token": {},
    "expired": EXPIRED,
    "forged": FORGED,
}
SIGNED_IN = ("owner", "other", "staff", "auditor", "admin")
LOCKED_OUT = ("no-token", "expired", "forged")


def only(ok: int, *roles: str) -> dict[str, int]:
    """``roles`` get ``ok``; every other signed-in caller 403; the rest 401."""
    return {r: ok if r in roles else 403 for r in SIGNED_IN} | dict.fromkeys(LOCKED_OUT, 401)


def owners(ok: int, *also: str) -> dict[str, int]:
    """The owner (and ``also``) get ``ok``; another customer 404, as if it did not exist."""
    return only(ok, "owner", *also) | {"other": 404}


def everyone(ok: int = 200) -> dict[str, int]:
    """A route that reads no token at all."""
    return dict.fromkeys(CALLERS, ok)


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    expect: dict[str, int]
    # What the route acts on: built fresh for each cell (see ``Target``).
    target: str = "none"
    body: Callable[[dict[str, Any]], Any] | None = None
    # Server-sent events never end: only the status line is awaited.
    streams: bool = False
    params: dict[str, str] = field(default_factory=dict)


def _new_product(t: dict[str, Any]) -> dict[str, Any]:
    return {"sku": f"NEW-{uuid.uuid4().hex[:8].upper()}", "name": "New", "price": "1.00"}


# Port 9 (discard): nothing listens, and deliveries are parked at the first attempt.
WEBHOOK = {"url": "http://127.0.0.1:9/hooks", "event_types": ["eventshop.order.paid"]}
WEBHOOK_SETTINGS: dict[str, Any] = {
    "webhook_allowed_hosts": ["127.0.0.1"],
    "webhook_attempts": 1,
    "webhook_poll_seconds": 5.0,
}


def _payment(t: dict[str, Any]) -> dict[str, Any]:
    return {"amount": t["total"], "reference": "PAY-2"}


TABLE = [
    Row("GET", "/health/live", everyone()),
    Row("GET", "/health/ready", everyone()),
    Row("GET", "/metrics", everyone()),
    Row("GET", "/openapi.json", everyone()),
    Row("GET", "/api/integration/schemas", everyone()),
    # The admin's password login reads no token; none is configured here (tests/api/test_login.py).
    Row("GET", "/api/auth/login", everyone()),
    Row(
        "POST", "/api/auth/login", everyone(404), body=lambda t: {"username": "a", "password": "b"}
    ),
    Row("GET", "/docs", everyone()),
    Row("GET", "/docs/oauth2-redirect", everyone()),
    Row("GET", "/redoc", everyone()),
    Row("POST", "/api/products", only(201, "staff"), body=_new_product),
    Row("PATCH", "/api/products/{sku}", only(200, "staff"), "product", lambda t: {"name": "N"}),
    Row("GET", "/api/products", only(200, *SIGNED_IN)),
    Row("GET", "/api/products/{sku}", only(200, *SIGNED_IN), "product"),
    Row(
        "POST",
        "/api/stock/{sku}/receipts",
        only(200, "staff"),
        "product",
        lambda t: {"quantity": 1},
    ),
    Row(
        "POST",
        "/api/stock/{sku}/adjustments",
        only(200, "staff"),
        "product",
        lambda t: {"delta": -1, "reason": "count"},
    ),
    Row("GET", "/api/stock", only(200, "staff", "auditor", "admin")),
    Row("GET", "/api/stock/{sku}", only(200, "staff", "auditor", "admin"), "product"),
    Row("POST", "/api/carts", only(201, "owner", "other"), body=lambda t: {}),
    Row(
        "POST",
        "/api/carts/{cart}/items",
        owners(200),
        "cart",
        lambda t: {"sku": t["sku"], "quantity": 1},
    ),
    Row(
        "PUT",
        "/api/carts/{cart}/items/{sku}",
        owners(200),
        "cart",
        lambda t: {"quantity": 3},
    ),
    Row("DELETE", "/api/carts/{cart}/items/{sku}", owners(200), "cart"),
    Row("POST", "/api/carts/{cart}/checkout", owners(201), "cart", lambda t: CHECKOUT),
    Row("GET", "/api/carts/{cart}", owners(200, "staff", "auditor", "admin"), "cart"),
    Row("POST", "/api/orders/{order}/payment", owners(200, "staff"), "placed", _payment),
    Row(
        "POST",
        "/api/orders/{order}/shipment",
        only(200, "staff"),
        "paid",
        lambda t: {"carrier": "DHL", "tracking_number": "T-2"},
    ),
    Row("POST", "/api/orders/{order}/delivery", only(200, "staff"), "shipped", lambda t: {}),
    Row(
        "POST",
        "/api/orders/{order}/cancellation",
        owners(200, "staff"),
        "placed",
        lambda t: {"reason": "changed my mind"},
    ),
    # A customer lists only its own orders; nobody signed in is refused the list.
    Row("GET", "/api/orders", only(200, *SIGNED_IN)),
    Row("GET", "/api/orders/{order}", owners(200, "staff", "auditor", "admin"), "placed"),
    # A customer lists only itself, and reads no other customer.
    Row("GET", "/api/customers", only(200, *SIGNED_IN)),
    Row("GET", "/api/customers/{customer}", owners(200, "staff", "auditor", "admin"), "customer"),
    # Personal data: its customer or an admin (another customer 403: it names whose it asks).
    Row("GET", "/api/customers/{customer}/data", only(200, "owner", "admin"), "customer"),
    Row("POST", "/api/customers/{customer}/erasure", only(200, "admin"), "customer"),
    Row("GET", "/api/reports/sales", only(200, "staff", "admin")),
    Row("GET", "/api/projections", only(200, "admin")),
    Row("POST", "/api/projections/{name}/rebuild", only(202, "admin"), "projection"),
    Row("GET", "/api/projections/{name}/parked", only(200, "admin"), "projection"),
    Row("POST", "/api/projections/{name}/parked/{position}/retry", only(200, "admin"), "parked"),
    Row("POST", "/api/projections/{name}/parked/{position}/skip", only(200, "admin"), "parked"),
    Row("GET", "/api/deliveries", only(200, "admin")),
    Row("GET", "/api/audit/events", only(200, "auditor")),
    Row("GET", "/api/audit/aggregates/{cart}/events", only(200, "auditor"), "cart"),
    Row("GET", "/api/audit/aggregates/{cart}/state", only(200, "auditor"), "cart"),
    Row("GET", "/api/audit/export", only(200, "auditor")),
    Row("GET", "/api/audit/digest", only(200, "auditor")),
    Row("GET", "/api/audit/skus/{sku}", only(200, "auditor"), "product"),
    Row("GET", "/api/audit/live", only(200, "auditor"), streams=True, params={"after": "0"}),
    Row("GET", "/api/audit/verify", only(200, "auditor"), params={"upto": "3"}),
    Row("GET", "/api/audit/receipts", only(200, "auditor")),
    Row("POST", "/api/audit/receipts", only(201, "auditor")),
    Row("GET", "/api/audit/public-key", only(200, *SIGNED_IN)),
    Row("GET", "/api/audit/events/{position}/proof", only(200, "auditor"), "proved"),
    Row("POST", "/api/webhooks", only(201, "admin"), body=lambda t: WEBHOOK),
    Row("GET", "/api/webhooks", only(200, "admin")),
    Row("GET", "/api/webhooks/{webhook}", only(200, "admin"), "webhook"),
    Row("DELETE", "/api/webhooks/{webhook}", only(204, "admin"), "webhook"),
    Row("GET", "/api/webhooks/{webhook}/deliveries", only(200, "admin"), "webhook"),
    Row(
        "POST",
        "/api/webhooks/{webhook}/deliveries/{delivery}/redeliver",
        only(202, "admin"),
        "delivery",
    ),
]

CELLS = [
    pytest.param(row, caller, id=f"{row.method} {row.path} [{caller}]")
    for row, caller in itertools.product(TABLE, CALLERS)
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    folder: Path = tmp_path_factory.mktemp("matrix")
    the_app = make_app(f"sqlite:///{folder / 'shop.db'}", folder, **WEBHOOK_SETTINGS)
    yield the_app
    the_app.state.shop.close()


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield reads_own_writes(test_client)


@pytest.fixture(scope="module")
def world(client: TestClient) -> World:
    return World(client)


def build(world: World, target: str) -> dict[str, Any]:
    """A fresh target of alice's: the ids a path needs and the facts a body needs."""
    if target == "product":
        return {"sku": world.product()}
    if target == "cart":
        cart_id, sku = world.cart()
        return {"cart": cart_id, "sku": sku}
    if target == "projection":
        # A read model no other cell reads, so that its rebuild disturbs none of them.
        return {"name": "customers"}
    if target == "parked":
        return park(world)
    if target == "proved":
        # The newest event, and a receipt covering it (the proof's default receipt).
        position = world.call("POST", "/api/carts", ALICE, {})["position"]
        world.client.app.state.receipts.issue()  # type: ignore[attr-defined]
        return {"position": position}
    if target in ("webhook", "delivery"):
        return webhook(world, delivered=target == "delivery")
    if target == "customer":
        world.order("placed")
        return {"customer": "alice"}
    if target in ("placed", "paid", "shipped"):
        order = world.order(target)
        return {"order": order["id"], "total": order["total"]}
    return {}


def park(world: World) -> dict[str, Any]:
    """A fresh parked event: a new cart's, parked by hand for the sales read model, which
    has no handler for it (so a retry writes no rows) and no other cell's parked events."""
    position = world.call("POST", "/api/carts", ALICE, {})["position"]
    read_side = world.client.app.state.read_side  # type: ignore[attr-defined]
    sales = read_side.projection("sales")
    (event,) = read_side.runner.source.read(position - 1, 1, stop=position)
    with sales.view.writing() as cursor:
        parking.write(sales.view, cursor, "sales", [ParkedEvent.of(event, "parked by a test")])
    return {"name": "sales", "position": position}


def webhook(world: World, delivered: bool) -> dict[str, Any]:
    """A fresh subscription (and a parked delivery of it, recorded by hand)."""
    webhooks = world.client.app.state.webhooks  # type: ignore[attr-defined]
    subscription, _ = webhooks.subscribe(WEBHOOK["url"], WEBHOOK["event_types"])
    target = {"webhook": subscription.id}
    if delivered:
        delivery = Delivery(str(uuid.uuid4()), 1, "eventshop.order.paid", "parked", 1)
        webhooks.store.note(subscription.id, subscription.position, delivery)
        target["delivery"] = delivery.id
    return target


def first_status(app: FastAPI, method: str, path: str, query: str, headers: Headers) -> int:
    """The status a streaming route starts its answer with, through the whole ASGI app."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    statuses: list[int] = []

    async def run() -> None:
        started = anyio.Event()
        sent_request = False

        async def receive() -> Message:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
                started.set()

        async with anyio.create_task_group() as group:
            group.start_soon(app, scope, receive, send)
            with anyio.fail_after(10):
                await started.wait()
            group.cancel_scope.cancel()

    anyio.run(run)
    return statuses[0]


@pytest.mark.parametrize(("row", "caller"), CELLS)
def test_the_matrix(row: Row, caller: str, app: FastAPI, client: TestClient, world: World) -> None:
    target = build(world, row.target)
    path = row.path.format(**target)
    headers = CALLERS[caller]
    if row.streams:
        query = "&".join(f"{k}={v}" for k, v in row.params.items())
        status = first_status(app, row.method, path, query, headers)
    else:
        body = row.body(target) if row.body else None
        response = client.request(row.method, path, json=body, params=row.params, headers=headers)
        status = response.status_code
        if status >= 400:
            assert response.headers["content-type"] == "application/problem+json"
        if status == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert status == row.expect[caller]


def test_the_matrix_covers_every_route(app: FastAPI) -> None:
    """A route added without a row here fails this test: decide who may call it."""
    routed = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    routed |= {("GET", p) for p in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")}
    tabled = {
        (
            row.method,
            row.path.replace("{cart}", "{cart_id}")
            .replace("{order}", "{order_id}")
            .replace("{customer}", "{customer_id}")
            .replace("{webhook}", "{subscription_id}")
            .replace("{delivery}", "{delivery_id}"),
        )
        for row in TABLE
    }
    # The audit routes name their path parameter aggregate_id.
    tabled = {
        (m, p.replace("aggregates/{cart_id}", "aggregates/{aggregate_id}")) for m, p in tabled
    }
    assert routed == tabled


# --- the one ownership rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "reads", "acts"),
    [
        (["customer"], "me", "me"),
        (["staff"], None, None),
        (["auditor"], None, "me"),
        (["admin"], None, "me"),
        (["customer", "staff"], None, None),
        (["customer", "auditor"], None, "me"),
        (["customer", "admin"], None, "me"),
        ([], "me", "me"),
    ],
)
def test_who_reaches_every_customers_things(
    roles: list[str], reads: str | None, acts: str | None
) -> None:
    """Staff, auditors and admins read every customer's carts, orders and account; only
    staff act on another customer's order; everyone else is confined to its own."""
    caller = Principal("me", frozenset(roles))
    assert (caller.confined_to("read"), caller.confined_to("act")) == (reads, acts)


def test_an_auditor_who_is_also_a_customer_reads_others_but_changes_only_its_own(
    client: TestClient, world: World
) -> None:
    both = bearer("customer", "auditor", sub="alice")
    order = world.order("placed", who=BOB)
    path = f"/api/orders/{order['id']}"
    assert client.get(path, headers=both).status_code == 200
    cancel = client.post(f"{path}/cancellation", json={"reason": "not mine"}, headers=both)
    assert cancel.status_code == 404
    assert client.get(path, headers=BOB).json()["status"] == "placed"


# --- another customer's cart, order or account is indistinguishable from none at all ----------

OWNED = [row for row in TABLE if row.expect["other"] == 404 != row.expect["owner"]]


@pytest.mark.parametrize("if_match", [None, '"1"'], ids=["plain", "stale-if-match"])
@pytest.mark.parametrize("row", OWNED, ids=[f"{r.method} {r.path}" for r in OWNED])
def test_another_customers_cart_or_order_looks_absent(
    row: Row, if_match: str | None, client: TestClient, world: World
) -> None:
    target = build(world, row.target)
    ghost = {**target, "cart": str(uuid.uuid4()), "order": str(uuid.uuid4())}
    ghost["customer"] = f"ghost-{uuid.uuid4().hex[:8]}"
    body = row.body(target) if row.body else None
    # A stale If-Match must not make the real one answer 412 where a ghost answers 404.
    headers = BOB | ({"If-Match": if_match} if if_match else {})
    theirs = client.request(row.method, row.path.format(**target), json=body, headers=headers)
    absent = client.request(row.method, row.path.format(**ghost), json=body, headers=headers)
    assert theirs.status_code == absent.status_code == 404

    def seen(response: Any, real_id: str) -> tuple[Any, ...]:
        problem = {k: str(v).replace(real_id, "<id>") for k, v in response.json().items()}
        headers = sorted(set(response.headers) - {"x-request-id", "content-length"})
        return problem, headers

    kind = next(k for k in ("cart", "order", "customer") if k in target)
    real_id, ghost_id = target[kind], ghost[kind]
    assert seen(theirs, real_id) == seen(absent, ghost_id)
