"""Hardening fixtures: the real app on a real store, tokens of every kind, a small world.

The idempotency tests run on SQLite and on PostgreSQL; the authorization matrix, the
limits and the metrics do not depend on the store and run on SQLite.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from commands.service import Shop
from eventshop.settings import Settings
from tests.api.conftest import ADDRESS, SECRET, Headers, bearer, reads_own_writes

STAFF = bearer("staff", sub="staff-1")
ALICE = bearer("customer", sub="alice")
BOB = bearer("customer", sub="bob")
AUDITOR = bearer("auditor", sub="audit-1")
ADMIN = bearer("admin", sub="admin-1")
EXPIRED = bearer("customer", sub="alice", ttl=-60)
FORGED = bearer("customer", sub="alice", secret="not-the-shop-secret-0123456789abcdef")
CHECKOUT = {"shipping_address": ADDRESS, "email": "ada@example.org"}


def make_app(url: str, var_dir: Path, **settings: Any) -> FastAPI:
    # An erasure waits out every process's key cache: short in tests.
    settings.setdefault("personal_key_cache_seconds", 0.05)
    return create_app(Settings(database_url=url, jwt_secret=SECRET, var_dir=var_dir, **settings))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_reused_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> FastAPI:
    return make_app(database_url, tmp_path)


@pytest.fixture
def sqlite_app(sqlite_url: str, tmp_path: Path) -> FastAPI:
    return make_app(sqlite_url, tmp_path)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield reads_own_writes(test_client)


@pytest.fixture
def shop(app: FastAPI) -> Shop:
    return app.state.shop  # type: ignore[no-any-return]


_SKU_NUMBERS = itertools.count(1)


class World:
    """Builds, through the API, the things a request needs: a product, carts, orders."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def call(self, method: str, path: str, who: Headers, body: Any = None) -> dict[str, Any]:
        response = self.client.request(method, path, json=body, headers=who)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    def product(self, units: int = 100) -> str:
        # Unique in the process: two Worlds in one test (one freed before the other is
        # made) may share an id(), so it cannot name their products.
        sku = f"P-{next(_SKU_NUMBERS)}"
        self.call("POST", "/api/products", STAFF, {"sku": sku, "name": sku, "price": "2.50"})
        if units:
            self.call("POST", f"/api/stock/{sku}/receipts", STAFF, {"quantity": units})
        return sku

    def cart(self, who: Headers = ALICE, sku: str | None = None) -> tuple[str, str]:
        """An open cart of ``who`` holding one unit of a fresh product: (cart id, sku)."""
        sku = sku or self.product()
        cart_id = str(self.call("POST", "/api/carts", who, {})["id"])
        self.call("POST", f"/api/carts/{cart_id}/items", who, {"sku": sku, "quantity": 1})
        return cart_id, sku

    def order(self, state: str = "placed", who: Headers = ALICE) -> dict[str, Any]:
        """An order of ``who`` in ``state``: placed, paid or shipped."""
        cart_id, _ = self.cart(who)
        order = self.call("POST", f"/api/carts/{cart_id}/checkout", who, CHECKOUT)
        path = f"/api/orders/{order['id']}"
        if state in ("paid", "shipped"):
            payment = {"amount": order["total"], "reference": "PAY-1"}
            order = self.call("POST", f"{path}/payment", who, payment)
        if state == "shipped":
            shipment = {"carrier": "DHL", "tracking_number": "T-1"}
            order = self.call("POST", f"{path}/shipment", STAFF, shipment)
        return order
