"""The HTTP edge against hostile requests (issue 14): no 500 from any query parameter,
bounded headers, strict If-Match, no duplicate JSON keys, one time format.

None of it depends on the store: the app runs on SQLite (the NUL reproductions that
reach PostgreSQL are in tests/api/test_text_input.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routers.audit import stream_audit_events
from commands.service import Shop
from tests.api.conftest import bearer, fields_of, problem_of
from tests.hardening.conftest import ALICE, AUDITOR, STAFF, World, make_app

MAX_HEADER_BYTES = 16 * 1024  # the limit, in all header names and values


# One app for the module: every request here is refused before a read model is asked
# (so they need not run), or is a command on a cart of its own test. A fresh app per test
# cost each test more than the test itself.
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    folder = tmp_path_factory.mktemp("edges")
    return make_app(f"sqlite:///{folder / 'shop.db'}", folder, run_projections=False)


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def shop(app: FastAPI) -> Shop:
    return app.state.shop  # type: ignore[no-any-return]


# --- no 500 from a query parameter -------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        # Moments that parse, but overflowed when turned into UTC.
        ("/api/orders?placed_to=0001-01-01T00:00:00%2B14:00", "placed_to"),
        ("/api/orders?placed_from=9999-12-31T23:59:59-01:00", "placed_from"),
        ("/api/audit/events?from=0001-01-01T00:00:00%2B14:00", "from"),
        ("/api/orders?customer_id=a%00b", "customer_id"),
        ("/api/customers/a%00b", "customer_id"),
        ("/api/audit/events?type=Cart%00", "type"),
        # "²" is a digit to str.isdigit(), not to int().
        ("/api/audit/events?cursor=%C2%B2", "cursor"),
    ],
)
def test_a_hostile_query_parameter_is_a_422_naming_it(
    client: TestClient, path: str, field: str
) -> None:
    who = AUDITOR if path.startswith("/api/audit") else STAFF
    assert fields_of(problem_of(client.get(path, headers=who), 422)) == {field}


def test_a_last_event_id_of_unicode_digits_starts_the_feed_from_now(app: FastAPI) -> None:
    # "²".isdigit() held, and int("²") raised: a 500 before the stream began.
    assert stream_audit_events(app.state.auditor, None, "\u00b2").status_code == 200


def test_a_token_whose_subject_holds_a_control_character_is_refused(client: TestClient) -> None:
    # The subject is a customer's id: it would reach queries and events like any text.
    problem = problem_of(client.get("/api/orders", headers=bearer("customer", sub="a\x00b")), 401)
    assert "control characters" in problem["detail"]


@pytest.mark.parametrize(
    "query",
    [
        "/api/orders?placed_from=1700000000",
        "/api/orders?placed_to=1700000000.5",
        "/api/audit/events?from=1700000000",
        "/api/audit/events?to=0",
        "/api/audit/aggregates/00000000-0000-4000-8000-000000000000/state?at=1700000000",
        "/api/reports/sales?from=1700000000",
    ],
)
def test_every_time_parameter_takes_iso_8601_only(client: TestClient, query: str) -> None:
    who = AUDITOR if query.startswith("/api/audit") else STAFF
    name = query.split("?")[1].split("=")[0]
    assert fields_of(problem_of(client.get(query, headers=who), 422)) == {name}


# --- headers -----------------------------------------------------------------------------


def test_headers_over_the_limit_are_a_431_before_the_token_is_read(client: TestClient) -> None:
    # The 10.6 MB token was decoded like any other; one of 17 KiB stands for it.
    token = "x" * (MAX_HEADER_BYTES + 1024)
    response = client.post("/api/carts", json={}, headers={"Authorization": f"Bearer {token}"})
    problem = problem_of(response, 431)
    assert problem["title"] == "Request Header Fields Too Large"
    assert response.headers["X-Request-ID"]
    # Many headers count together.
    many = {f"X-Pad-{i}": "p" * 1000 for i in range(17)}
    problem_of(client.get("/api/products", headers={**STAFF, **many}), 431)
    # Just under the limit is served.
    fits = {"X-Pad": "p" * (MAX_HEADER_BYTES - 2048)}
    assert client.get("/api/products", headers={**STAFF, **fits}).status_code == 200


# --- If-Match ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(client: TestClient) -> World:
    return World(client)


@pytest.fixture
def cart(world: World) -> tuple[str, str]:
    """An open cart of alice's holding one unit of a SKU (version 2): (cart id, SKU)."""
    return world.cart()


def _set_quantity(client: TestClient, cart: tuple[str, str], *if_match: str) -> Any:
    """Set the cart's line to 2 units, sending each If-Match as a header of its own."""
    headers = [*ALICE.items(), *(("If-Match", value) for value in if_match)]
    cart_id, sku = cart
    return client.put(f"/api/carts/{cart_id}/items/{sku}", json={"quantity": 2}, headers=headers)


def test_a_weak_etag_never_satisfies_if_match(
    client: TestClient, shop: Shop, cart: tuple[str, str]
) -> None:
    head = shop.head()
    problem = problem_of(_set_quantity(client, cart, 'W/"2"'), 412)
    assert (problem["expected"], problem["actual"]) == ([], 2)
    assert shop.head() == head
    assert _set_quantity(client, cart, 'W/"2", "2"').status_code == 200


@pytest.mark.parametrize(
    ("if_match", "status"),
    [
        # Only the first header was read: "1" was stale, and "2" was never looked at.
        (('"1"', '"2"'), 200),
        (('"2"', '"1"'), 200),
        (('"1"', 'W/"2"'), 412),
        (('"1"', "nonsense"), 400),
    ],
)
def test_repeated_if_match_headers_are_one_list(
    client: TestClient, cart: tuple[str, str], if_match: tuple[str, ...], status: int
) -> None:
    assert _set_quantity(client, cart, *if_match).status_code == status


# --- bodies ------------------------------------------------------------------------------


def test_a_json_body_with_a_key_given_twice_is_refused(
    client: TestClient, shop: Shop, world: World, cart: tuple[str, str]
) -> None:
    # "quantity": 1 then 1000 added 1,000 units.
    sku = world.product()
    head = shop.head()
    body = f'{{"sku": "{sku}", "quantity": 1, "quantity": 1000}}'
    response = client.post(
        f"/api/carts/{cart[0]}/items",
        content=body,
        headers={**ALICE, "Content-Type": "application/json"},
    )
    problem = problem_of(response, 400)
    assert "'quantity' is given twice" in problem["detail"]
    assert shop.head() == head
    # Nested objects too.
    nested = '{"shipping_address": {"name": "A", "name": "B"}, "email": "a@b.example"}'
    response = client.post(
        f"/api/carts/{cart[0]}/checkout",
        content=nested,
        headers={**ALICE, "Content-Type": "application/json"},
    )
    assert "'name' is given twice" in problem_of(response, 400)["detail"]
