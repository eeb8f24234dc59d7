"""The API under test: the real app on a real store (SQLite file or PostgreSQL schema).

Every API test runs once on each store, but those marked ``@on_sqlite``: what the HTTP
layer decides before the store is asked (validation of bodies, paths, queries and
headers, tokens and roles, routes, limits) is the same on every store. Requests go
through FastAPI's TestClient, so they pass the same middleware, auth and error mapping
as in production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import mint
from commands.service import Shop
from eventshop.settings import Settings

SECRET = "test-secret-of-the-api-tests-0123456789"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical Row",
    "city": "London",
    "postal_code": "N1 7AA",
    "country": "GB",
}

Headers = dict[str, str]


def bearer(*roles: str, sub: str = "someone", ttl: int = 3600, secret: str = SECRET) -> Headers:
    """Authorization headers with a token minted as ``eventshop token`` would."""
    return {"Authorization": f"Bearer {mint(secret, sub, list(roles), ttl)}"}


STAFF = bearer("staff", sub="staff-1")
ALICE = bearer("customer", sub="alice")
BOB = bearer("customer", sub="bob")
AUDITOR = bearer("auditor", sub="audit-1")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_reused_url"
    return str(request.getfixturevalue(fixture))


on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""For a test of what the HTTP layer decides before the store is asked: on SQLite only."""


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> FastAPI:
    return create_app(Settings(database_url=database_url, jwt_secret=SECRET, var_dir=tmp_path))


def reads_own_writes(client: TestClient) -> TestClient:
    """Make every query wait until the read models hold everything written so far.

    That is what a client application does with the ``position`` of its last command
    (``?min_position=N``); here the log head stands for it, so that a test can read
    right after it writes.
    """
    shop: Shop = client.app.state.shop  # type: ignore[attr-defined]

    def add_min_position(request: httpx.Request) -> None:
        queried = request.url.params
        path = request.url.path
        if (
            request.method == "GET"
            and path.startswith(QUERY_PREFIXES)
            and ("min_position" not in queried)
        ):
            request.url = request.url.copy_merge_params({"min_position": shop.head()})

    client.event_hooks = {"request": [add_min_position], "response": []}
    return client


QUERY_PREFIXES = (
    "/api/products",
    "/api/stock",
    "/api/carts",
    "/api/orders",
    "/api/customers",
    "/api/reports",
)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield reads_own_writes(test_client)


@pytest.fixture
def shop(app: FastAPI) -> Shop:
    """The app's own service, to check what was (not) recorded."""
    return app.state.shop  # type: ignore[no-any-return]


def problem_of(response: Any, status: int) -> dict[str, Any]:
    """The problem details of an error response, after checking its status and shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance"} <= body.keys()
    return body


def fields_of(problem: dict[str, Any]) -> set[str]:
    return {error["field"] for error in problem["errors"]}


@pytest.fixture
def add_product(client: TestClient) -> Callable[..., dict[str, Any]]:
    """Add a product and receive ``units`` of it; returns the product's answer."""

    def add(sku: str = "MUG-RED", price: str = "12.50", units: int = 0) -> dict[str, Any]:
        response = client.post(
            "/api/products",
            json={"sku": sku, "name": f"Product {sku}", "price": price},
            headers=STAFF,
        )
        assert response.status_code == 201, response.text
        if units:
            received = client.post(
                f"/api/stock/{sku}/receipts", json={"quantity": units}, headers=STAFF
            )
            assert received.status_code == 200, received.text
        return dict(response.json())

    return add


@pytest.fixture
def cart_with(client: TestClient) -> Callable[..., str]:
    """Open a cart for ``who`` holding ``items`` (sku -> quantity); returns its id."""

    def make(items: dict[str, int], who: Headers = ALICE) -> str:
        opened = client.post("/api/carts", json={}, headers=who)
        assert opened.status_code == 201, opened.text
        cart_id = str(opened.json()["id"])
        for sku, quantity in items.items():
            added = client.post(
                f"/api/carts/{cart_id}/items", json={"sku": sku, "quantity": quantity}, headers=who
            )
            assert added.status_code == 200, added.text
        return cart_id

    return make


@pytest.fixture
def placed_order(
    client: TestClient,
    add_product: Callable[..., dict[str, Any]],
    cart_with: Callable[..., str],
) -> dict[str, Any]:
    """An order of 2 MUG-RED at 12.50 placed by alice (10 units received)."""
    add_product("MUG-RED", "12.50", units=10)
    cart_id = cart_with({"MUG-RED": 2})
    response = client.post(
        f"/api/carts/{cart_id}/checkout",
        json={"shipping_address": ADDRESS, "email": "ada@example.org"},
        headers=ALICE,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())
