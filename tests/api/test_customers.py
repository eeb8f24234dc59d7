"""The customer routes: what each customer ordered and spent, and who may see it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import (
    ADDRESS,
    ALICE,
    AUDITOR,
    BOB,
    STAFF,
    Headers,
    bearer,
    fields_of,
    on_sqlite,
    problem_of,
)

ADMIN = bearer("admin", sub="admin-1")
CAROL = bearer("customer", sub="carol")
CHECKOUT = {"shipping_address": ADDRESS, "email": "ada@example.org"}
AddProduct = Callable[..., dict[str, Any]]
CartWith = Callable[..., str]


@pytest.fixture
def order_of(
    client: TestClient, add_product: AddProduct, cart_with: CartWith
) -> Callable[..., dict[str, Any]]:
    """Place an order of ``units`` TEA at 3.00 for ``who``; returns the order."""
    add_product("TEA", "3.00", units=100)

    def place(who: Headers = ALICE, units: int = 1) -> dict[str, Any]:
        cart_id = cart_with({"TEA": units}, who=who)
        response = client.post(f"/api/carts/{cart_id}/checkout", json=CHECKOUT, headers=who)
        assert response.status_code == 201, response.text
        return dict(response.json())

    return place


def act(client: TestClient, order: dict[str, Any], step: str, body: dict[str, Any]) -> None:
    response = client.post(f"/api/orders/{order['id']}/{step}", json=body, headers=STAFF)
    assert response.status_code == 200, response.text


def pay(client: TestClient, order: dict[str, Any]) -> None:
    act(client, order, "payment", {"amount": order["total"], "reference": "P-1"})


def test_a_customer_s_orders_spend_and_last_order(
    client: TestClient, order_of: Callable[..., dict[str, Any]]
) -> None:
    delivered, refunded, cancelled, unpaid = (order_of(units=n) for n in (1, 2, 4, 8))
    pay(client, delivered)
    act(client, delivered, "shipment", {"carrier": "DHL", "tracking_number": "T-1"})
    act(client, delivered, "delivery", {})
    pay(client, refunded)
    act(client, refunded, "cancellation", {"reason": "refund me"})
    act(client, cancelled, "cancellation", {"reason": "never mind"})

    response = client.get("/api/customers/alice", headers=STAFF)
    assert response.status_code == 200, response.text
    assert "X-Projection-Position" in response.headers
    alice = response.json()
    assert (alice["customer_id"], alice["orders"], alice["cancelled"]) == ("alice", 4, 2)
    # Spent: the delivered order only; the paid one was refunded when it was cancelled.
    assert (alice["spent"], alice["awaiting_payment"]) == ("3.00", "24.00")
    listed = client.get("/api/orders", params={"customer_id": "alice"}, headers=STAFF).json()
    newest = listed["items"][0]
    assert alice["last_order"] == {
        "id": unpaid["id"],
        "placed_at": newest["placed_at"],
        "status": "placed",
    }
    assert alice["first_order_at"] == listed["items"][-1]["placed_at"]
    assert [(o["id"], o["status"], o["total"], o["units"]) for o in alice["recent_orders"]] == [
        (o["id"], o["status"], o["total"], o["units"]) for o in listed["items"]
    ]
    assert alice["all_orders"] == "/api/orders?customer_id=alice"
    assert client.get(alice["all_orders"], headers=STAFF).json() == listed


def test_customers_are_listed_by_id_a_page_at_a_time(
    client: TestClient, order_of: Callable[..., dict[str, Any]]
) -> None:
    for who in (CAROL, ALICE, BOB, ALICE):
        order_of(who)
    first = client.get("/api/customers", params={"limit": 2}, headers=STAFF).json()
    assert [(c["customer_id"], c["orders"]) for c in first["items"]] == [("alice", 2), ("bob", 1)]
    rest = client.get(
        "/api/customers", params={"limit": 2, "cursor": first["next_cursor"]}, headers=STAFF
    ).json()
    assert [c["customer_id"] for c in rest["items"]] == ["carol"]
    assert rest["next_cursor"] is None
    detail = client.get("/api/customers/alice", headers=STAFF).json()
    assert first["items"][0] == {
        key: value for key, value in detail.items() if key not in ("recent_orders", "all_orders")
    }
    for params in ({"limit": 0}, {"limit": 501}, {"cursor": "bogus"}):
        problem = problem_of(client.get("/api/customers", params=params, headers=STAFF), 422)
        assert fields_of(problem) == set(params)
    # A cursor of another list is not one of this list's.
    orders = client.get("/api/orders", params={"limit": 1}, headers=STAFF).json()
    foreign = {"cursor": orders["next_cursor"]}
    problem_of(client.get("/api/customers", params=foreign, headers=STAFF), 422)


def test_a_customer_sees_itself_and_no_other(
    client: TestClient, order_of: Callable[..., dict[str, Any]]
) -> None:
    order_of(ALICE)
    order_of(BOB)
    own = client.get("/api/customers", headers=ALICE).json()
    assert [c["customer_id"] for c in own["items"]] == ["alice"]
    assert client.get("/api/customers/alice", headers=ALICE).json()["orders"] == 1
    # Another customer's account answers as one that does not exist, word for word.
    theirs = problem_of(client.get("/api/customers/bob", headers=ALICE), 404)
    nobody = problem_of(client.get("/api/customers/nobody", headers=ALICE), 404)
    assert theirs["detail"].replace("bob", "?") == nobody["detail"].replace("nobody", "?")
    # A customer who never ordered still sees itself; to anyone else it is unknown.
    carol = client.get("/api/customers/carol", headers=CAROL).json()
    assert (carol["orders"], carol["spent"], carol["last_order"]) == (0, "0.00", None)
    assert carol["recent_orders"] == []
    assert client.get("/api/customers", headers=CAROL).json()["items"] == []
    problem_of(client.get("/api/customers/carol", headers=STAFF), 404)


@pytest.mark.parametrize("reader", [STAFF, AUDITOR, ADMIN], ids=["staff", "auditor", "admin"])
def test_staff_auditors_and_admins_read_every_customer(
    client: TestClient, order_of: Callable[..., dict[str, Any]], reader: Headers
) -> None:
    order_of(ALICE)
    order_of(BOB)
    listed = client.get("/api/customers", headers=reader).json()
    assert [c["customer_id"] for c in listed["items"]] == ["alice", "bob"]
    assert client.get("/api/customers/bob", headers=reader).json()["orders"] == 1


@on_sqlite
def test_customers_need_a_token(client: TestClient) -> None:
    problem_of(client.get("/api/customers"), 401)
    problem_of(client.get("/api/customers/alice"), 401)
    too_long = "x" * 101
    problem = problem_of(client.get(f"/api/customers/{too_long}", headers=STAFF), 422)
    assert fields_of(problem) == {"customer_id"}
