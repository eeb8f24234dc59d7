"""POST /api/products, PATCH /api/products/{sku}, GET /api/products/{sku}."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from commands.service import Shop
from domain.values import MAX_PRICE
from tests.api.conftest import ALICE, AUDITOR, STAFF, bearer, fields_of, on_sqlite, problem_of

AddProduct = Callable[..., dict[str, Any]]


def test_staff_adds_a_product(client: TestClient, shop: Shop) -> None:
    response = client.post(
        "/api/products", json={"sku": "MUG-RED", "name": "Red mug", "price": "12.50"}, headers=STAFF
    )
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "sku": "MUG-RED",
        "name": "Red mug",
        "price": "12.50",
        "version": 1,
        "position": shop.head(),
    }
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == "/api/products/MUG-RED"


def test_a_price_without_cents_is_answered_with_two_places(client: TestClient) -> None:
    response = client.post(
        "/api/products", json={"sku": "PEN", "name": "Pen", "price": "3"}, headers=STAFF
    )
    assert response.json()["price"] == "3.00"


def test_a_second_product_with_one_sku_is_refused(
    client: TestClient, shop: Shop, add_product: AddProduct
) -> None:
    add_product("MUG-RED")
    head = shop.head()
    response = client.post(
        "/api/products", json={"sku": "MUG-RED", "name": "Again", "price": "1.00"}, headers=STAFF
    )
    problem = problem_of(response, 409)
    assert problem["type"].endswith("/already-exists")
    assert "MUG-RED" in problem["detail"]
    assert shop.head() == head


@on_sqlite
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sku": "MUG", "name": "Mug", "price": 12.5}, "price"),
        ({"sku": "MUG", "name": "Mug", "price": 12}, "price"),
        ({"sku": "MUG", "name": "Mug", "price": "12.505"}, "price"),
        ({"sku": "MUG", "name": "Mug", "price": "-1.00"}, "price"),
        ({"sku": "MUG", "name": "Mug", "price": "1e3"}, "price"),
        ({"sku": "MUG", "name": "Mug", "price": str(MAX_PRICE + 1)}, "price"),
        ({"sku": "mug", "name": "Mug", "price": "1.00"}, "sku"),
        ({"sku": "-MUG", "name": "Mug", "price": "1.00"}, "sku"),
        ({"sku": "M" * 33, "name": "Mug", "price": "1.00"}, "sku"),
        ({"sku": "MUG", "name": "", "price": "1.00"}, "name"),
        ({"sku": "MUG", "price": "1.00"}, "name"),
        ({"sku": "MUG", "name": "Mug", "price": "1.00", "colour": "red"}, "colour"),
    ],
)
def test_a_bad_field_is_named(
    client: TestClient, shop: Shop, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/products", json=body, headers=STAFF)
    problem = problem_of(response, 422)
    assert fields_of(problem) == {field}
    assert all(error["message"] for error in problem["errors"])
    assert shop.head() == 0


@on_sqlite
def test_every_bad_field_is_named_at_once(client: TestClient) -> None:
    response = client.post("/api/products", json={"sku": "x", "price": 1.5}, headers=STAFF)
    assert fields_of(problem_of(response, 422)) == {"sku", "name", "price"}


@on_sqlite
def test_a_blank_name_is_refused_by_the_domain_with_its_field(client: TestClient) -> None:
    response = client.post(
        "/api/products", json={"sku": "MUG", "name": "   ", "price": "1.00"}, headers=STAFF
    )
    assert fields_of(problem_of(response, 422)) == {"name"}


@on_sqlite
def test_malformed_json_is_a_bad_request(client: TestClient) -> None:
    response = client.post(
        "/api/products",
        content=b'{"sku": "MUG", "name": ',
        headers={**STAFF, "Content-Type": "application/json"},
    )
    problem = problem_of(response, 400)
    assert problem["type"].endswith("/malformed-json")


@on_sqlite
def test_a_body_that_is_not_an_object_is_invalid(client: TestClient) -> None:
    response = client.post("/api/products", json=["MUG"], headers=STAFF)
    problem_of(response, 422)


@on_sqlite
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic c3RhZmY6c3RhZmY="},
        bearer("staff", secret="another-secret-that-is-long-enough-000"),
        bearer("staff", ttl=-60),
    ],
    ids=["none", "garbage", "basic", "wrong-secret", "expired"],
)
def test_a_missing_or_bad_token_is_unauthorized(
    client: TestClient, shop: Shop, headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/products", json={"sku": "MUG", "name": "Mug", "price": "1.00"}, headers=headers
    )
    problem_of(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert shop.head() == 0


@on_sqlite
def test_an_expired_token_says_so(client: TestClient) -> None:
    response = client.get("/api/products/MUG", headers=bearer("staff", ttl=-60))
    assert "expired" in problem_of(response, 401)["detail"]


@on_sqlite
@pytest.mark.parametrize("who", [ALICE, AUDITOR], ids=["customer", "auditor"])
def test_only_staff_adds_products(client: TestClient, shop: Shop, who: dict[str, str]) -> None:
    response = client.post(
        "/api/products", json={"sku": "MUG", "name": "Mug", "price": "1.00"}, headers=who
    )
    assert "staff" in problem_of(response, 403)["detail"]
    assert shop.head() == 0


def test_staff_renames_and_reprices(client: TestClient, add_product: AddProduct) -> None:
    add_product("MUG-RED", "12.50")
    response = client.patch(
        "/api/products/MUG-RED", json={"name": "Crimson mug", "price": "14.00"}, headers=STAFF
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["price"], body["version"]) == ("Crimson mug", "14.00", 3)
    assert response.headers["ETag"] == '"3"'


@on_sqlite
@pytest.mark.parametrize("if_match", ['"1"', "1", "*", '"3", "1"', 'W/"1", "1"'])
def test_if_match_naming_the_current_version_lets_the_change_through(
    client: TestClient, add_product: AddProduct, if_match: str
) -> None:
    add_product("MUG-RED", "12.50")
    response = client.patch(
        "/api/products/MUG-RED", json={"price": "13.00"}, headers={**STAFF, "If-Match": if_match}
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2


def test_a_stale_if_match_is_a_failed_precondition(
    client: TestClient, shop: Shop, add_product: AddProduct
) -> None:
    add_product("MUG-RED", "12.50")
    client.patch("/api/products/MUG-RED", json={"price": "13.00"}, headers=STAFF)
    head = shop.head()
    response = client.patch(
        "/api/products/MUG-RED", json={"price": "14.00"}, headers={**STAFF, "If-Match": '"1"'}
    )
    problem = problem_of(response, 412)
    assert (problem["expected"], problem["actual"]) == (1, 2)
    assert shop.head() == head


# "²" is a digit to str.isdigit(), not to int().
@on_sqlite
@pytest.mark.parametrize(
    "if_match", ['"abc"', '"1",', "W/", '"1', '*, "1"', '"²"'.encode("latin-1")]
)
def test_a_malformed_if_match_is_a_bad_request(
    client: TestClient, add_product: AddProduct, if_match: str | bytes
) -> None:
    add_product("MUG-RED", "12.50")
    response = client.patch(
        "/api/products/MUG-RED", json={"price": "13.00"}, headers={**STAFF, "If-Match": if_match}
    )
    assert "If-Match" in problem_of(response, 400)["detail"]


@on_sqlite
def test_a_change_needs_something_to_change(client: TestClient, add_product: AddProduct) -> None:
    add_product("MUG-RED")
    response = client.patch("/api/products/MUG-RED", json={}, headers=STAFF)
    problem_of(response, 422)


def test_changing_an_unknown_product_is_not_found(client: TestClient) -> None:
    response = client.patch("/api/products/NOPE", json={"name": "x"}, headers=STAFF)
    assert "NOPE" in problem_of(response, 404)["detail"]


@on_sqlite
def test_only_staff_changes_products(client: TestClient, add_product: AddProduct) -> None:
    add_product("MUG-RED")
    response = client.patch("/api/products/MUG-RED", json={"name": "x"}, headers=ALICE)
    problem_of(response, 403)


@pytest.mark.parametrize("who", [ALICE, STAFF, AUDITOR], ids=["customer", "staff", "auditor"])
def test_anyone_with_a_token_reads_a_product(
    client: TestClient, add_product: AddProduct, who: dict[str, str]
) -> None:
    add_product("MUG-RED", "12.50")
    response = client.get("/api/products/MUG-RED", headers=who)
    assert response.status_code == 200
    shown = response.json()
    assert shown == {
        "sku": "MUG-RED",
        "name": "Product MUG-RED",
        "price": "12.50",
        "available": 0,
        "version": 1,
        "added_at": shown["added_at"],
        "updated_at": shown["added_at"],
    }
    assert response.headers["ETag"] == '"1"'
    assert int(response.headers["X-Projection-Position"]) >= 2


@on_sqlite
def test_reading_needs_a_token(client: TestClient, add_product: AddProduct) -> None:
    add_product("MUG-RED")
    problem_of(client.get("/api/products/MUG-RED"), 401)


def test_an_unknown_product_is_not_found(client: TestClient) -> None:
    problem_of(client.get("/api/products/NOPE", headers=ALICE), 404)


@on_sqlite
def test_a_malformed_sku_in_the_path_is_invalid(client: TestClient) -> None:
    problem = problem_of(client.get("/api/products/not_a_sku", headers=ALICE), 422)
    assert fields_of(problem) == {"sku"}
