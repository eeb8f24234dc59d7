"""Hostile text and amounts over HTTP, on SQLite and PostgreSQL (issue 14).

A NUL in any text was accepted and stored; on PostgreSQL the read model that met the
event then stopped for everyone ("text fields cannot contain NUL"). Now each is refused
with 422 naming the field, nothing is recorded, and the read models keep answering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from commands.service import Shop
from domain.values import MAX_PRICE
from tests.api.conftest import ADDRESS, ALICE, STAFF, Headers, fields_of, problem_of

NUL = "\u0000"


def _order(client: TestClient, add_product: Callable[..., Any], state: str) -> str:
    """An order of alice's for one mug, placed (or paid), through the API."""
    add_product("MUG-RED", "12.50", units=5)
    cart = client.post("/api/carts", json={}, headers=ALICE).json()["id"]
    client.post(f"/api/carts/{cart}/items", json={"sku": "MUG-RED", "quantity": 1}, headers=ALICE)
    order = client.post(
        f"/api/carts/{cart}/checkout",
        json={"shipping_address": ADDRESS, "email": "ada@example.org"},
        headers=ALICE,
    ).json()
    if state == "paid":
        paid = {"amount": order["total"], "reference": "PSP-1"}
        client.post(f"/api/orders/{order['id']}/payment", json=paid, headers=ALICE)
    return str(order["id"])


# Each reproduction of the issue: what must exist first, then the request (given the id
# of that order or cart), and the field the 422 must name.
Request = tuple[str, str, dict[str, Any], Headers]
CASES: dict[str, tuple[str | None, Callable[[str], Request], str]] = {
    "checkout e-mail": (
        "cart",
        lambda cart: (
            f"/api/carts/{cart}/checkout",
            "POST",
            {"shipping_address": ADDRESS, "email": f"m{NUL}@x.example"},
            ALICE,
        ),
        "email",
    ),
    "payment reference": (
        "placed",
        lambda order: (
            f"/api/orders/{order}/payment",
            "POST",
            {"amount": "12.50", "reference": f"PSP{NUL}1"},
            ALICE,
        ),
        "reference",
    ),
    "cancel reason": (
        "placed",
        lambda order: (f"/api/orders/{order}/cancellation", "POST", {"reason": f"x{NUL}"}, ALICE),
        "reason",
    ),
    "shipment carrier": (
        "paid",
        lambda order: (
            f"/api/orders/{order}/shipment",
            "POST",
            {"carrier": f"DHL{NUL}", "tracking_number": "T-1"},
            STAFF,
        ),
        "carrier",
    ),
    "product name": (
        None,
        lambda _: (
            "/api/products",
            "POST",
            {"sku": "NUL-1", "name": f"Mug{NUL}", "price": "1.00"},
            STAFF,
        ),
        "name",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_nul_in_text_is_refused_and_nothing_is_stored(
    client: TestClient, shop: Shop, add_product: Callable[..., Any], case: str
) -> None:
    needs, request, field = CASES[case]
    target = ""
    if needs == "cart":
        add_product("MUG-RED", "12.50", units=5)
        target = client.post("/api/carts", json={}, headers=ALICE).json()["id"]
        client.post(
            f"/api/carts/{target}/items", json={"sku": "MUG-RED", "quantity": 1}, headers=ALICE
        )
    elif needs is not None:
        target = _order(client, add_product, needs)
    path, method, body, who = request(target)
    head = shop.head()
    response = client.request(method, path, json=body, headers=who)
    assert fields_of(problem_of(response, 422)) == {field}
    assert "control characters" in response.text
    assert shop.head() == head
    # The read models go on answering (they waited for the whole log: reads_own_writes).
    assert client.get("/api/orders", headers=STAFF).status_code == 200
    assert client.get("/api/products", headers=STAFF).status_code == 200


@pytest.mark.parametrize(
    ("path", "field"),
    [("/api/orders?customer_id=a%00b", "customer_id"), ("/api/customers/a%00b", "customer_id")],
)
def test_a_nul_in_a_query_is_a_422_not_a_500(client: TestClient, path: str, field: str) -> None:
    # PostgreSQL refused the NUL in the query's parameter: a 500.
    assert fields_of(problem_of(client.get(path, headers=STAFF), 422)) == {field}


def test_an_order_that_could_never_be_paid_is_not_placed(
    client: TestClient, shop: Shop, add_product: Callable[..., Any]
) -> None:
    add_product("BIG-1", str(MAX_PRICE), units=3)
    cart = client.post("/api/carts", json={}, headers=ALICE).json()["id"]
    client.post(f"/api/carts/{cart}/items", json={"sku": "BIG-1", "quantity": 3}, headers=ALICE)
    head = shop.head()
    checkout = {"shipping_address": ADDRESS, "email": "ada@example.org"}
    response = client.post(f"/api/carts/{cart}/checkout", json=checkout, headers=ALICE)
    problem = problem_of(response, 409)
    assert (problem["total"], problem["max_total"]) == ("3000000.00", str(MAX_PRICE))
    assert shop.head() == head
    # At the cap it is placed, and paid.
    client.put(f"/api/carts/{cart}/items/BIG-1", json={"quantity": 1}, headers=ALICE)
    order = client.post(f"/api/carts/{cart}/checkout", json=checkout, headers=ALICE)
    assert order.status_code == 201, order.text
    pay = {"amount": str(MAX_PRICE), "reference": "PSP-1"}
    paid = client.post(f"/api/orders/{order.json()['id']}/payment", json=pay, headers=ALICE)
    assert paid.status_code == 200, paid.text
