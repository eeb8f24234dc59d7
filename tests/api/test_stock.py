"""POST /api/stock/{sku}/receipts, POST /api/stock/{sku}/adjustments, GET /api/stock/{sku}."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from commands.service import Shop
from domain.values import MAX_QUANTITY
from tests.api.conftest import ALICE, AUDITOR, STAFF, fields_of, on_sqlite, problem_of

AddProduct = Callable[..., dict[str, Any]]


def test_staff_receives_goods(client: TestClient, shop: Shop, add_product: AddProduct) -> None:
    add_product("MUG-RED")
    response = client.post(
        "/api/stock/MUG-RED/receipts", json={"quantity": 7, "note": "PO-1"}, headers=STAFF
    )
    assert response.status_code == 200
    assert response.json() == {
        "sku": "MUG-RED",
        "on_hand": 7,
        "reserved": 0,
        "available": 7,
        "version": 2,
        "position": shop.head(),
    }
    assert response.headers["ETag"] == '"2"'


@on_sqlite
@pytest.mark.parametrize("quantity", [0, -1, MAX_QUANTITY + 1, "3", 2.5, True, None])
def test_a_received_quantity_must_be_a_bounded_whole_number(
    client: TestClient, shop: Shop, add_product: AddProduct, quantity: Any
) -> None:
    add_product("MUG-RED")
    head = shop.head()
    response = client.post(
        "/api/stock/MUG-RED/receipts", json={"quantity": quantity}, headers=STAFF
    )
    assert fields_of(problem_of(response, 422)) == {"quantity"}
    assert shop.head() == head


def test_receiving_an_unknown_sku_is_not_found(client: TestClient) -> None:
    response = client.post("/api/stock/NOPE/receipts", json={"quantity": 1}, headers=STAFF)
    problem_of(response, 404)


@on_sqlite
def test_only_staff_receives_goods(client: TestClient, add_product: AddProduct) -> None:
    add_product("MUG-RED")
    response = client.post("/api/stock/MUG-RED/receipts", json={"quantity": 1}, headers=ALICE)
    problem_of(response, 403)


def test_a_stale_if_match_on_a_receipt_is_refused(
    client: TestClient, add_product: AddProduct
) -> None:
    add_product("MUG-RED", units=5)  # stock version 2
    response = client.post(
        "/api/stock/MUG-RED/receipts", json={"quantity": 1}, headers={**STAFF, "If-Match": '"1"'}
    )
    problem_of(response, 412)


def test_staff_corrects_a_count(client: TestClient, add_product: AddProduct) -> None:
    add_product("MUG-RED", units=10)
    response = client.post(
        "/api/stock/MUG-RED/adjustments",
        json={"delta": -3, "reason": "broken in the warehouse"},
        headers={**STAFF, "If-Match": '"2"'},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["on_hand"], body["available"], body["version"]) == (7, 7, 3)


def test_on_hand_may_not_fall_below_what_is_reserved(
    client: TestClient, shop: Shop, placed_order: dict[str, Any]
) -> None:
    # placed_order reserved 2 of the 10 MUG-RED.
    head = shop.head()
    response = client.post(
        "/api/stock/MUG-RED/adjustments", json={"delta": -9, "reason": "count"}, headers=STAFF
    )
    problem = problem_of(response, 409)
    assert (problem["on_hand"], problem["reserved"]) == (10, 2)
    assert shop.head() == head


@on_sqlite
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"delta": 0, "reason": "count"}, "delta"),
        ({"delta": MAX_QUANTITY + 1, "reason": "count"}, "delta"),
        ({"delta": 1}, "reason"),
        ({"delta": 1, "reason": "count", "by": "me"}, "by"),
    ],
)
def test_a_bad_adjustment_names_its_field(
    client: TestClient, add_product: AddProduct, body: dict[str, Any], field: str
) -> None:
    add_product("MUG-RED", units=5)
    response = client.post("/api/stock/MUG-RED/adjustments", json=body, headers=STAFF)
    assert fields_of(problem_of(response, 422)) == {field}


@on_sqlite
def test_only_staff_corrects_counts(client: TestClient, add_product: AddProduct) -> None:
    add_product("MUG-RED", units=5)
    response = client.post(
        "/api/stock/MUG-RED/adjustments", json={"delta": 1, "reason": "x"}, headers=AUDITOR
    )
    problem_of(response, 403)


@pytest.mark.parametrize("who", [STAFF, AUDITOR], ids=["staff", "auditor"])
def test_staff_and_auditors_read_stock(
    client: TestClient, placed_order: dict[str, Any], who: dict[str, str]
) -> None:
    response = client.get("/api/stock/MUG-RED", headers=who)
    assert response.status_code == 200
    body = response.json()
    assert (body["on_hand"], body["reserved"], body["available"]) == (10, 2, 8)
    assert response.headers["ETag"] == f'"{body["version"]}"'
    assert "position" not in body


@on_sqlite
def test_customers_do_not_read_stock(client: TestClient, add_product: AddProduct) -> None:
    add_product("MUG-RED")
    problem_of(client.get("/api/stock/MUG-RED", headers=ALICE), 403)


def test_unknown_stock_is_not_found(client: TestClient) -> None:
    problem_of(client.get("/api/stock/NOPE", headers=STAFF), 404)


def test_shipping_takes_reserved_units_out_of_stock(
    client: TestClient, placed_order: dict[str, Any]
) -> None:
    order = f"/api/orders/{placed_order['id']}"
    paid = client.post(
        f"{order}/payment", json={"amount": "25.00", "reference": "p"}, headers=ALICE
    )
    assert paid.status_code == 200, paid.text
    shipped = client.post(
        f"{order}/shipment", json={"carrier": "DHL", "tracking_number": "1"}, headers=STAFF
    )
    assert shipped.status_code == 200, shipped.text
    body = client.get("/api/stock/MUG-RED", headers=STAFF).json()
    assert (body["on_hand"], body["reserved"], body["available"]) == (8, 0, 8)
