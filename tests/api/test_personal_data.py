"""Personal data over HTTP: a customer's data export (GDPR Art. 15/20), its erasure
(Art. 17), who may ask for either, and that no answer shows erased data afterwards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from commands.service import Shop
from domain.personal import ERASED
from eventshop.settings import Settings
from tests.api.conftest import ALICE, AUDITOR, BOB, SECRET, STAFF, Headers, bearer, problem_of
from tests.personal.support import (
    ALICE_ADDRESS,
    ALICE_EMAIL,
    BOB_ADDRESS,
    BOB_EMAIL,
    alice_needles,
    text_traces,
)

ADMIN = bearer("admin", sub="admin-1")


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> FastAPI:
    # An erasure waits out every process's key cache: short here.
    settings = Settings(
        database_url=database_url,
        jwt_secret=SECRET,
        var_dir=tmp_path,
        personal_key_cache_seconds=0.05,
    )
    return create_app(settings)


@pytest.fixture
def orders(
    client: TestClient, add_product: Callable[..., dict[str, Any]], cart_with: Callable[..., str]
) -> dict[str, str]:
    """An order each of alice and bob: their ids by customer."""
    add_product("TEA", "3.00", units=10)
    placed = {}
    for who, headers, address, email in (
        ("alice", ALICE, ALICE_ADDRESS, ALICE_EMAIL),
        ("bob", BOB, BOB_ADDRESS, BOB_EMAIL),
    ):
        cart_id = cart_with({"TEA": 1}, who=headers)
        body = {"shipping_address": address.as_dict(), "email": email}
        response = client.post(f"/api/carts/{cart_id}/checkout", json=body, headers=headers)
        assert response.status_code == 201, response.text
        placed[who] = response.json()["id"]
    return placed


def data_of(client: TestClient, customer: str, headers: Headers) -> dict[str, Any]:
    response = client.get(f"/api/customers/{customer}/data", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def answers(client: TestClient, orders: dict[str, str]) -> dict[str, str]:
    """The text of every answer that could show alice's order."""
    order = orders["alice"]
    paths = {
        f"/api/orders/{order}": ALICE,
        "/api/orders?customer_id=alice": STAFF,
        "/api/customers/alice": STAFF,
        f"/api/audit/aggregates/{order}/events": AUDITOR,
        f"/api/audit/aggregates/{order}/state?version=1": AUDITOR,
        "/api/audit/events": AUDITOR,
        "/api/audit/export": AUDITOR,
        "/api/customers/alice/data": ADMIN,
    }
    texts = {}
    for path, headers in paths.items():
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text)
        texts[path] = response.text
    return texts


def test_a_customer_gets_its_data_then_sees_it_erased(
    client: TestClient, shop: Shop, orders: dict[str, str]
) -> None:
    before = data_of(client, "alice", ALICE)
    assert before["erased"] is False and before["still_plain"] == []
    [order] = before["orders"]
    assert order["order_id"] == orders["alice"]
    assert order["email"] == ALICE_EMAIL
    assert order["shipping_address"] == {**ALICE_ADDRESS.as_dict()}
    assert data_of(client, "alice", ADMIN) == before
    assert any(text_traces(text, [ALICE_EMAIL]) for text in answers(client, orders).values())

    erased = client.post("/api/customers/alice/erasure", headers=ADMIN)
    assert erased.status_code == 200, erased.text
    assert erased.json() == {
        "customer_id": "alice",
        "already_erased": False,
        "erasures": 1,
        "still_plain": [],
        "position": shop.head(),
    }

    after = data_of(client, "alice", ALICE)
    assert after["erased"] is True and after["erasures"] == 1
    assert after["orders"][0]["email"] == ERASED
    assert set(after["orders"][0]["shipping_address"].values()) == {ERASED}
    for path, text in answers(client, orders).items():
        assert text_traces(text, alice_needles()) == [], path
    # Bob's data is intact.
    assert data_of(client, "bob", BOB)["orders"][0]["email"] == BOB_EMAIL
    export = client.get("/api/audit/export", headers=AUDITOR).text
    assert text_traces(export, [BOB_EMAIL, BOB_ADDRESS.line1]) == [BOB_EMAIL, BOB_ADDRESS.line1]


def test_erasing_twice_answers_the_same_and_records_nothing(
    client: TestClient, shop: Shop, orders: dict[str, str]
) -> None:
    first = client.post("/api/customers/alice/erasure", headers=ADMIN)
    assert first.status_code == 200, first.text
    head = shop.head()
    again = client.post("/api/customers/alice/erasure", headers=ADMIN)
    assert again.status_code == 200, again.text
    assert again.json()["already_erased"] is True
    assert again.json()["erasures"] == 1
    assert shop.head() == head


def test_an_unknown_customer_is_404(client: TestClient, shop: Shop) -> None:
    head = shop.head()
    problem = problem_of(client.post("/api/customers/nobody/erasure", headers=ADMIN), 404)
    assert problem["type"].endswith("/problems/not-found")
    assert shop.head() == head
    problem_of(client.get("/api/customers/nobody/data", headers=ADMIN), 404)
    # A customer who never ordered sees that nothing is held about it.
    nothing = data_of(client, "carol", bearer("customer", sub="carol"))
    assert (nothing["orders"], nothing["erased"]) == ([], False)


@pytest.mark.parametrize("who", [BOB, STAFF, AUDITOR], ids=["other-customer", "staff", "auditor"])
def test_only_the_customer_or_an_admin_gets_its_data(
    client: TestClient, orders: dict[str, str], who: Headers
) -> None:
    problem = problem_of(client.get("/api/customers/alice/data", headers=who), 403)
    assert problem["type"].endswith("/problems/forbidden")
    assert ALICE_EMAIL not in str(problem)


@pytest.mark.parametrize("who", [ALICE, STAFF, AUDITOR], ids=["customer", "staff", "auditor"])
def test_only_an_admin_erases(
    client: TestClient, shop: Shop, orders: dict[str, str], who: Headers
) -> None:
    head = shop.head()
    problem_of(client.post("/api/customers/alice/erasure", headers=who), 403)
    assert shop.head() == head
    assert data_of(client, "alice", ALICE)["orders"][0]["email"] == ALICE_EMAIL
