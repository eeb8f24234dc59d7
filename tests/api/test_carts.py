"""The cart routes: open, add, set quantity, remove, check out, read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from commands.service import Shop
from domain.values import MAX_QUANTITY
from tests.api.conftest import ADDRESS, ALICE, AUDITOR, BOB, STAFF, fields_of, on_sqlite, problem_of

AddProduct = Callable[..., dict[str, Any]]
CartWith = Callable[..., str]
CHECKOUT = {"shipping_address": ADDRESS, "email": "ada@example.org"}
NO_SUCH_CART = "00000000-0000-4000-8000-000000000000"


def test_a_customer_opens_a_cart(client: TestClient, shop: Shop) -> None:
    response = client.post("/api/carts", json={}, headers=ALICE)
    assert response.status_code == 201
    body = response.json()
    assert body["customer_id"] == "alice"
    assert (body["status"], body["lines"], body["total"], body["order_id"]) == (
        "open",
        [],
        "0.00",
        None,
    )
    assert (body["version"], body["position"]) == (1, shop.head())
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/api/carts/{body['id']}"


def test_a_cart_opens_without_a_body_too(client: TestClient) -> None:
    assert client.post("/api/carts", headers=ALICE).status_code == 201


@on_sqlite
def test_opening_a_cart_takes_no_fields(client: TestClient, shop: Shop) -> None:
    response = client.post("/api/carts", json={"customer_id": "bob"}, headers=ALICE)
    assert fields_of(problem_of(response, 422)) == {"customer_id"}
    assert shop.head() == 0


@on_sqlite
def test_only_customers_open_carts(client: TestClient) -> None:
    problem_of(client.post("/api/carts", json={}, headers=STAFF), 403)
    problem_of(client.post("/api/carts", json={}), 401)


def test_items_are_added_at_the_catalogue_price(
    client: TestClient, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED", "12.50")
    add_product("PEN", "0.99")
    cart_id = cart_with({})
    client.post(
        f"/api/carts/{cart_id}/items", json={"sku": "MUG-RED", "quantity": 2}, headers=ALICE
    )
    response = client.post(
        f"/api/carts/{cart_id}/items",
        json={"sku": "PEN", "quantity": 3},
        headers={**ALICE, "If-Match": '"2"'},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["lines"] == [
        {"sku": "MUG-RED", "quantity": 2, "unit_price": "12.50", "subtotal": "25.00"},
        {"sku": "PEN", "quantity": 3, "unit_price": "0.99", "subtotal": "2.97"},
    ]
    assert (body["total"], body["version"]) == ("27.97", 3)
    assert response.headers["ETag"] == '"3"'


@on_sqlite
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sku": "MUG-RED", "quantity": 0}, "quantity"),
        ({"sku": "MUG-RED", "quantity": MAX_QUANTITY + 1}, "quantity"),
        ({"sku": "MUG-RED", "quantity": 1.5}, "quantity"),
        ({"sku": "mug", "quantity": 1}, "sku"),
        ({"quantity": 1}, "sku"),
    ],
)
def test_a_bad_item_names_its_field(
    client: TestClient,
    add_product: AddProduct,
    cart_with: CartWith,
    body: dict[str, Any],
    field: str,
) -> None:
    add_product("MUG-RED")
    cart_id = cart_with({})
    response = client.post(f"/api/carts/{cart_id}/items", json=body, headers=ALICE)
    assert fields_of(problem_of(response, 422)) == {field}


def test_a_line_may_not_grow_past_the_limit(
    client: TestClient, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED")
    cart_id = cart_with({"MUG-RED": MAX_QUANTITY})
    response = client.post(
        f"/api/carts/{cart_id}/items", json={"sku": "MUG-RED", "quantity": 1}, headers=ALICE
    )
    assert fields_of(problem_of(response, 422)) == {"quantity"}


def test_adding_an_unknown_product_is_not_found(client: TestClient, cart_with: CartWith) -> None:
    cart_id = cart_with({})
    response = client.post(
        f"/api/carts/{cart_id}/items", json={"sku": "NOPE", "quantity": 1}, headers=ALICE
    )
    assert "NOPE" in problem_of(response, 404)["detail"]


def test_an_unknown_cart_is_not_found(client: TestClient, add_product: AddProduct) -> None:
    add_product("MUG-RED")
    response = client.post(
        f"/api/carts/{NO_SUCH_CART}/items", json={"sku": "MUG-RED", "quantity": 1}, headers=ALICE
    )
    problem_of(response, 404)


@on_sqlite
def test_a_cart_id_must_be_a_uuid(client: TestClient) -> None:
    response = client.get("/api/carts/42", headers=ALICE)
    assert fields_of(problem_of(response, 422)) == {"cart_id"}


def test_another_customers_cart_is_as_if_absent(
    client: TestClient, shop: Shop, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED", units=5)
    cart_id = cart_with({"MUG-RED": 1}, who=ALICE)
    head = shop.head()
    cart = f"/api/carts/{cart_id}"
    answers = [
        client.get(cart, headers=BOB),
        client.post(f"{cart}/items", json={"sku": "MUG-RED", "quantity": 1}, headers=BOB),
        client.put(f"{cart}/items/MUG-RED", json={"quantity": 3}, headers=BOB),
        client.delete(f"{cart}/items/MUG-RED", headers=BOB),
        client.post(f"{cart}/checkout", json=CHECKOUT, headers=BOB),
    ]
    for answer in answers:
        problem = problem_of(answer, 404)
        assert problem["detail"] == f"Cart {cart_id} does not exist"
    assert shop.head() == head


def test_staff_reads_carts_but_does_not_change_them(
    client: TestClient, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED")
    cart_id = cart_with({"MUG-RED": 1})
    for who in (STAFF, AUDITOR):
        assert client.get(f"/api/carts/{cart_id}", headers=who).status_code == 200
    response = client.put(
        f"/api/carts/{cart_id}/items/MUG-RED", json={"quantity": 2}, headers=STAFF
    )
    problem_of(response, 403)


def test_the_owner_reads_the_cart(
    client: TestClient, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED", "12.50")
    cart_id = cart_with({"MUG-RED": 2})
    response = client.get(f"/api/carts/{cart_id}", headers=ALICE)
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["total"], body["version"]) == (cart_id, "25.00", 2)
    assert response.headers["ETag"] == '"2"'
    assert "position" not in body


@on_sqlite
def test_reading_a_cart_needs_a_token(client: TestClient, cart_with: CartWith) -> None:
    problem_of(client.get(f"/api/carts/{cart_with({})}"), 401)


def test_setting_a_quantity(
    client: TestClient, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED", "12.50")
    cart_id = cart_with({"MUG-RED": 2})
    response = client.put(
        f"/api/carts/{cart_id}/items/MUG-RED", json={"quantity": 5}, headers=ALICE
    )
    assert response.status_code == 200
    assert response.json()["lines"][0]["quantity"] == 5
    assert response.json()["total"] == "62.50"


def test_a_quantity_of_zero_removes_the_line(
    client: TestClient, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED")
    cart_id = cart_with({"MUG-RED": 2})
    response = client.put(
        f"/api/carts/{cart_id}/items/MUG-RED", json={"quantity": 0}, headers=ALICE
    )
    assert response.json()["lines"] == []


def test_setting_the_quantity_of_a_missing_line_is_not_found(
    client: TestClient, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED")
    cart_id = cart_with({})
    response = client.put(
        f"/api/carts/{cart_id}/items/MUG-RED", json={"quantity": 1}, headers=ALICE
    )
    problem_of(response, 404)


@on_sqlite
@pytest.mark.parametrize("body", [{"quantity": -1}, {"quantity": "2"}, {}])
def test_a_bad_quantity_is_invalid(
    client: TestClient, add_product: AddProduct, cart_with: CartWith, body: dict[str, Any]
) -> None:
    add_product("MUG-RED")
    cart_id = cart_with({"MUG-RED": 2})
    response = client.put(f"/api/carts/{cart_id}/items/MUG-RED", json=body, headers=ALICE)
    assert fields_of(problem_of(response, 422)) == {"quantity"}


def test_removing_a_line(client: TestClient, add_product: AddProduct, cart_with: CartWith) -> None:
    add_product("MUG-RED")
    add_product("PEN", "1.00")
    cart_id = cart_with({"MUG-RED": 1, "PEN": 2})
    response = client.delete(
        f"/api/carts/{cart_id}/items/MUG-RED", headers={**ALICE, "If-Match": '"3"'}
    )
    assert response.status_code == 200
    body = response.json()
    assert [line["sku"] for line in body["lines"]] == ["PEN"]
    assert (body["total"], body["version"]) == ("2.00", 4)


def test_removing_with_a_stale_version_is_refused(
    client: TestClient, shop: Shop, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED")
    cart_id = cart_with({"MUG-RED": 1})
    head = shop.head()
    response = client.delete(
        f"/api/carts/{cart_id}/items/MUG-RED", headers={**ALICE, "If-Match": '"1"'}
    )
    problem_of(response, 412)
    assert shop.head() == head


def test_removing_a_missing_line_is_not_found(client: TestClient, cart_with: CartWith) -> None:
    problem_of(client.delete(f"/api/carts/{cart_with({})}/items/MUG-RED", headers=ALICE), 404)


def test_checkout_places_the_order_and_reserves_stock(
    client: TestClient, shop: Shop, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED", "12.50", units=5)
    add_product("PEN", "0.99", units=5)
    cart_id = cart_with({"MUG-RED": 2, "PEN": 5})
    response = client.post(
        f"/api/carts/{cart_id}/checkout", json=CHECKOUT, headers={**ALICE, "If-Match": '"3"'}
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert (order["status"], order["total"], order["cart_id"]) == ("placed", "29.95", cart_id)
    assert order["customer_id"] == "alice"
    assert order["shipping_address"] == {**ADDRESS, "line2": ""}
    assert (order["email"], order["payment_reference"], order["refund"]) == (
        "ada@example.org",
        None,
        None,
    )
    assert (order["version"], order["position"]) == (1, shop.head())
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/api/orders/{order['id']}"
    cart = client.get(f"/api/carts/{cart_id}", headers=ALICE).json()
    assert (cart["status"], cart["order_id"]) == ("checked_out", order["id"])
    pens = client.get("/api/stock/PEN", headers=STAFF).json()
    assert (pens["reserved"], pens["available"]) == (5, 0)


def test_a_short_checkout_names_every_short_sku_and_records_nothing(
    client: TestClient, shop: Shop, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED", "12.50", units=1)
    add_product("PEN", "0.99", units=10)
    add_product("CAP", "9.00", units=0)
    cart_id = cart_with({"MUG-RED": 2, "PEN": 3, "CAP": 1})
    head = shop.head()
    response = client.post(f"/api/carts/{cart_id}/checkout", json=CHECKOUT, headers=ALICE)
    problem = problem_of(response, 409)
    assert problem["type"].endswith("/insufficient-stock")
    assert problem["short"] == [
        {"sku": "CAP", "requested": 1, "available": 0},
        {"sku": "MUG-RED", "requested": 2, "available": 1},
    ]
    assert shop.head() == head
    cart = client.get(f"/api/carts/{cart_id}", headers=ALICE).json()
    assert (cart["status"], cart["version"]) == ("open", 4)
    assert client.get("/api/stock/PEN", headers=STAFF).json()["reserved"] == 0


def test_a_checked_out_cart_no_longer_changes(
    client: TestClient, shop: Shop, placed_order: dict[str, Any]
) -> None:
    cart = f"/api/carts/{placed_order['cart_id']}"
    head = shop.head()
    answers = [
        client.post(f"{cart}/items", json={"sku": "MUG-RED", "quantity": 1}, headers=ALICE),
        client.put(f"{cart}/items/MUG-RED", json={"quantity": 1}, headers=ALICE),
        client.delete(f"{cart}/items/MUG-RED", headers=ALICE),
    ]
    for answer in answers:
        problem = problem_of(answer, 409)
        assert problem["type"].endswith("/rule-broken")
        assert problem["current_status"] == "checked_out"
    again = client.post(f"{cart}/checkout", json=CHECKOUT, headers=ALICE)
    assert problem_of(again, 409)["type"].endswith("/rule-broken")
    assert shop.head() == head


def test_an_empty_cart_is_not_checked_out(
    client: TestClient, shop: Shop, cart_with: CartWith
) -> None:
    cart_id = cart_with({})
    head = shop.head()
    response = client.post(f"/api/carts/{cart_id}/checkout", json=CHECKOUT, headers=ALICE)
    assert "empty cart cannot be checked out" in problem_of(response, 409)["detail"]
    assert shop.head() == head


@on_sqlite
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"shipping_address": {**ADDRESS, "country": "gb"}}, "shipping_address.country"),
        ({"shipping_address": {**ADDRESS, "city": ""}}, "shipping_address.city"),
        ({"shipping_address": {**ADDRESS, "city": "   "}}, "shipping_address.city"),
        ({"shipping_address": {**ADDRESS, "planet": "Earth"}}, "shipping_address.planet"),
    ],
)
def test_a_bad_checkout_field_is_named(
    client: TestClient,
    shop: Shop,
    add_product: AddProduct,
    cart_with: CartWith,
    change: dict[str, Any],
    field: str,
) -> None:
    add_product("MUG-RED", units=5)
    cart_id = cart_with({"MUG-RED": 1})
    head = shop.head()
    response = client.post(
        f"/api/carts/{cart_id}/checkout", json={**CHECKOUT, **change}, headers=ALICE
    )
    assert fields_of(problem_of(response, 422)) == {field}
    assert shop.head() == head


def test_a_stale_checkout_is_refused(
    client: TestClient, shop: Shop, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("MUG-RED", units=5)
    cart_id = cart_with({"MUG-RED": 1})
    head = shop.head()
    response = client.post(
        f"/api/carts/{cart_id}/checkout", json=CHECKOUT, headers={**ALICE, "If-Match": '"1"'}
    )
    problem_of(response, 412)
    assert shop.head() == head
