"""The order routes, and the whole purchase from product to delivery."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from commands.service import Shop
from tests.api.conftest import ADDRESS, ALICE, AUDITOR, BOB, STAFF, bearer, on_sqlite, problem_of

NO_SUCH_ORDER = "00000000-0000-4000-8000-000000000000"
PAY = {"amount": "25.00", "reference": "PSP-1"}
SHIP = {"carrier": "DHL", "tracking_number": "JD0001"}


def stock_of(client: TestClient, sku: str) -> tuple[int, int, int]:
    body = client.get(f"/api/stock/{sku}", headers=STAFF).json()
    return body["on_hand"], body["reserved"], body["available"]


def test_a_whole_purchase(client: TestClient, shop: Shop) -> None:
    """Product, stock, cart, items, checkout, pay, ship, deliver: every step answers
    with the aggregate's version (also its ETag) and a growing log position."""
    positions = []

    def step(response: Any, status: int = 200) -> dict[str, Any]:
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        assert response.headers["ETag"] == f'"{body["version"]}"'
        assert body["position"] == shop.head()
        positions.append(body["position"])
        return body

    customer = bearer("customer", sub="cust-42")
    step(
        client.post(
            "/api/products", json={"sku": "TEA", "name": "Tea", "price": "4.20"}, headers=STAFF
        ),
        201,
    )
    step(client.post("/api/stock/TEA/receipts", json={"quantity": 10}, headers=STAFF))
    cart = step(client.post("/api/carts", json={}, headers=customer), 201)
    cart = step(
        client.post(
            f"/api/carts/{cart['id']}/items", json={"sku": "TEA", "quantity": 2}, headers=customer
        )
    )
    cart = step(
        client.put(
            f"/api/carts/{cart['id']}/items/TEA",
            json={"quantity": 3},
            headers={**customer, "If-Match": f'"{cart["version"]}"'},
        )
    )
    assert cart["total"] == "12.60"
    order = step(
        client.post(
            f"/api/carts/{cart['id']}/checkout",
            json={"shipping_address": ADDRESS, "email": "c@example.org"},
            headers={**customer, "If-Match": f'"{cart["version"]}"'},
        ),
        201,
    )
    assert (order["status"], order["total"], order["version"]) == ("placed", "12.60", 1)
    assert order["lines"] == [
        {"sku": "TEA", "quantity": 3, "unit_price": "4.20", "subtotal": "12.60"}
    ]
    assert stock_of(client, "TEA") == (10, 3, 7)
    url = f"/api/orders/{order['id']}"
    order = step(
        client.post(
            f"{url}/payment",
            json={"amount": "12.60", "reference": "PSP-9"},
            headers={**customer, "If-Match": '"1"'},
        )
    )
    assert (order["status"], order["payment_reference"]) == ("paid", "PSP-9")
    order = step(client.post(f"{url}/shipment", json=SHIP, headers=STAFF))
    assert order["status"] == "shipped"
    assert stock_of(client, "TEA") == (7, 0, 7)
    order = step(client.post(f"{url}/delivery", json={}, headers=STAFF))
    assert (order["status"], order["version"]) == ("delivered", 4)
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    seen = client.get(url, headers=customer)
    assert seen.status_code == 200
    # The read model shows what the command answered, and more (times, history).
    shown = seen.json()
    assert {k: shown[k] for k in order if k != "position"} == {
        k: v for k, v in order.items() if k != "position"
    }
    assert [h["status"] for h in shown["status_history"]] == [
        "placed",
        "paid",
        "shipped",
        "delivered",
    ]


def test_the_owner_and_staff_read_an_order(
    client: TestClient, placed_order: dict[str, Any]
) -> None:
    for who in (ALICE, STAFF, AUDITOR):
        response = client.get(f"/api/orders/{placed_order['id']}", headers=who)
        assert response.status_code == 200
        assert response.json()["id"] == placed_order["id"]
        assert response.headers["ETag"] == '"1"'


def test_an_unknown_order_is_not_found(client: TestClient) -> None:
    problem_of(client.get(f"/api/orders/{NO_SUCH_ORDER}", headers=STAFF), 404)
    problem_of(client.post(f"/api/orders/{NO_SUCH_ORDER}/shipment", json=SHIP, headers=STAFF), 404)


def test_another_customers_order_is_as_if_absent(
    client: TestClient, shop: Shop, placed_order: dict[str, Any]
) -> None:
    url = f"/api/orders/{placed_order['id']}"
    head = shop.head()
    for answer in (
        client.get(url, headers=BOB),
        client.post(f"{url}/payment", json=PAY, headers=BOB),
        client.post(f"{url}/cancellation", json={"reason": "mine now"}, headers=BOB),
    ):
        assert problem_of(answer, 404)["detail"] == f"Order {placed_order['id']} does not exist"
    assert shop.head() == head


def test_staff_may_record_a_payment(client: TestClient, placed_order: dict[str, Any]) -> None:
    response = client.post(f"/api/orders/{placed_order['id']}/payment", json=PAY, headers=STAFF)
    assert response.status_code == 200
    assert response.json()["status"] == "paid"


def test_a_payment_must_match_the_total(
    client: TestClient, shop: Shop, placed_order: dict[str, Any]
) -> None:
    head = shop.head()
    response = client.post(
        f"/api/orders/{placed_order['id']}/payment",
        json={"amount": "20.00", "reference": "PSP-1"},
        headers=ALICE,
    )
    problem = problem_of(response, 409)
    assert (problem["total"], problem["amount"]) == ("25.00", "20.00")
    assert shop.head() == head


@on_sqlite
@pytest.mark.parametrize(
    "body",
    [
        {"amount": 25.0, "reference": "x"},
        {"amount": "25.00"},
        {"amount": "25,00", "reference": "x"},
    ],
)
def test_a_bad_payment_is_invalid(
    client: TestClient, placed_order: dict[str, Any], body: dict[str, Any]
) -> None:
    response = client.post(f"/api/orders/{placed_order['id']}/payment", json=body, headers=ALICE)
    problem_of(response, 422)


def test_paying_twice_is_refused(client: TestClient, placed_order: dict[str, Any]) -> None:
    url = f"/api/orders/{placed_order['id']}/payment"
    assert client.post(url, json=PAY, headers=ALICE).status_code == 200
    problem = problem_of(client.post(url, json=PAY, headers=ALICE), 409)
    assert problem["current_status"] == "paid"


def test_a_stale_payment_is_refused(client: TestClient, placed_order: dict[str, Any]) -> None:
    response = client.post(
        f"/api/orders/{placed_order['id']}/payment", json=PAY, headers={**ALICE, "If-Match": '"7"'}
    )
    problem_of(response, 412)


def test_only_staff_ships_and_delivers(client: TestClient, placed_order: dict[str, Any]) -> None:
    url = f"/api/orders/{placed_order['id']}"
    client.post(f"{url}/payment", json=PAY, headers=ALICE)
    problem_of(client.post(f"{url}/shipment", json=SHIP, headers=ALICE), 403)
    assert client.post(f"{url}/shipment", json=SHIP, headers=STAFF).status_code == 200
    problem_of(client.post(f"{url}/delivery", json={}, headers=ALICE), 403)
    problem_of(client.post(f"{url}/delivery", headers=AUDITOR), 403)


def test_an_unpaid_order_is_not_shipped(
    client: TestClient, shop: Shop, placed_order: dict[str, Any]
) -> None:
    head = shop.head()
    response = client.post(f"/api/orders/{placed_order['id']}/shipment", json=SHIP, headers=STAFF)
    problem = problem_of(response, 409)
    assert problem["current_status"] == "placed"
    assert shop.head() == head
    assert stock_of(client, "MUG-RED") == (10, 2, 8)


@on_sqlite
def test_a_shipment_names_carrier_and_tracking(
    client: TestClient, placed_order: dict[str, Any]
) -> None:
    response = client.post(
        f"/api/orders/{placed_order['id']}/shipment", json={"carrier": "DHL"}, headers=STAFF
    )
    assert {e["field"] for e in problem_of(response, 422)["errors"]} == {"tracking_number"}


def test_an_unshipped_order_is_not_delivered(
    client: TestClient, placed_order: dict[str, Any]
) -> None:
    response = client.post(f"/api/orders/{placed_order['id']}/delivery", json={}, headers=STAFF)
    problem_of(response, 409)


@on_sqlite
def test_delivery_takes_no_fields(client: TestClient, placed_order: dict[str, Any]) -> None:
    response = client.post(
        f"/api/orders/{placed_order['id']}/delivery", json={"when": "now"}, headers=STAFF
    )
    problem_of(response, 422)


def test_cancelling_releases_the_reserved_stock(
    client: TestClient, shop: Shop, placed_order: dict[str, Any]
) -> None:
    assert stock_of(client, "MUG-RED") == (10, 2, 8)
    response = client.post(
        f"/api/orders/{placed_order['id']}/cancellation",
        json={"reason": "changed my mind"},
        headers={**ALICE, "If-Match": '"1"'},
    )
    assert response.status_code == 200
    order = response.json()
    assert (order["status"], order["refund"], order["version"]) == ("cancelled", None, 2)
    assert order["position"] == shop.head()
    assert stock_of(client, "MUG-RED") == (10, 0, 10)


def test_cancelling_a_paid_order_records_a_refund(
    client: TestClient, placed_order: dict[str, Any]
) -> None:
    url = f"/api/orders/{placed_order['id']}"
    client.post(f"{url}/payment", json=PAY, headers=ALICE)
    response = client.post(f"{url}/cancellation", json={"reason": "out of stock"}, headers=STAFF)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["refund"]) == ("cancelled", "25.00")
    assert stock_of(client, "MUG-RED") == (10, 0, 10)


def test_a_shipped_order_is_not_cancelled(
    client: TestClient, shop: Shop, placed_order: dict[str, Any]
) -> None:
    url = f"/api/orders/{placed_order['id']}"
    client.post(f"{url}/payment", json=PAY, headers=ALICE)
    client.post(f"{url}/shipment", json=SHIP, headers=STAFF)
    head = shop.head()
    response = client.post(f"{url}/cancellation", json={"reason": "too late"}, headers=ALICE)
    assert problem_of(response, 409)["current_status"] == "shipped"
    assert shop.head() == head


@on_sqlite
def test_a_cancellation_needs_a_reason(client: TestClient, placed_order: dict[str, Any]) -> None:
    response = client.post(f"/api/orders/{placed_order['id']}/cancellation", json={}, headers=ALICE)
    assert {e["field"] for e in problem_of(response, 422)["errors"]} == {"reason"}


@on_sqlite
def test_auditors_change_nothing(client: TestClient, placed_order: dict[str, Any]) -> None:
    url = f"/api/orders/{placed_order['id']}"
    problem_of(client.post(f"{url}/payment", json=PAY, headers=AUDITOR), 403)
    problem_of(client.post(f"{url}/cancellation", json={"reason": "x"}, headers=AUDITOR), 403)
