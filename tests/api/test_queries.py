"""The query routes: answered from the read models, fresh on request (min_position)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from eventshop.settings import Settings
from tests.api.conftest import (
    ADDRESS,
    ALICE,
    BOB,
    SECRET,
    STAFF,
    bearer,
    fields_of,
    on_sqlite,
    problem_of,
)

ADMIN = bearer("admin", sub="admin-1")
AddProduct = Callable[..., dict[str, Any]]
CartWith = Callable[..., str]
CHECKOUT = {"shipping_address": ADDRESS, "email": "ada@example.org"}


def check_out(client: TestClient, cart_id: str, who: dict[str, str] = ALICE) -> dict[str, Any]:
    response = client.post(f"/api/carts/{cart_id}/checkout", json=CHECKOUT, headers=who)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_the_catalogue_pages_with_a_cursor(client: TestClient, add_product: AddProduct) -> None:
    for sku, units in (("A-1", 3), ("B-2", 0), ("C-3", 7)):
        add_product(sku, "2.00", units=units)
    first = client.get("/api/products", params={"limit": 2}, headers=ALICE).json()
    assert [(p["sku"], p["available"]) for p in first["items"]] == [("A-1", 3), ("B-2", 0)]
    assert first["next_cursor"]
    rest = client.get(
        "/api/products", params={"limit": 2, "cursor": first["next_cursor"]}, headers=ALICE
    ).json()
    assert [p["sku"] for p in rest["items"]] == ["C-3"]
    assert rest["next_cursor"] is None


@on_sqlite
def test_a_foreign_cursor_or_a_huge_limit_is_refused(client: TestClient) -> None:
    problem_of(client.get("/api/products", params={"limit": 501}, headers=ALICE), 422)
    problem_of(client.get("/api/products", params={"cursor": "bogus"}, headers=ALICE), 422)


def test_low_stock_is_listed_below_a_threshold(client: TestClient, add_product: AddProduct) -> None:
    add_product("LOW-1", units=2)
    add_product("HIGH-1", units=20)
    low = client.get("/api/stock", params={"below": 5}, headers=STAFF).json()
    assert [(s["sku"], s["available"]) for s in low["items"]] == [("LOW-1", 2)]
    everything = client.get("/api/stock", headers=STAFF).json()
    assert {s["sku"] for s in everything["items"]} == {"LOW-1", "HIGH-1"}


def test_staff_see_every_order_and_a_customer_only_its_own(
    client: TestClient, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("TEA", "3.00", units=10)
    alices = check_out(client, cart_with({"TEA": 1}))
    bobs = check_out(client, cart_with({"TEA": 2}, who=BOB), who=BOB)
    every = client.get("/api/orders", headers=STAFF).json()["items"]
    assert [o["id"] for o in every] == [bobs["id"], alices["id"]]  # newest first
    own = client.get("/api/orders", headers=ALICE).json()["items"]
    assert [o["id"] for o in own] == [alices["id"]]
    snooping = client.get("/api/orders", params={"customer_id": "bob"}, headers=ALICE).json()
    assert snooping["items"] == []
    placed = client.get("/api/orders", params={"status": "placed"}, headers=STAFF).json()
    assert len(placed["items"]) == 2
    paid = client.get("/api/orders", params={"status": "paid"}, headers=STAFF).json()
    assert paid["items"] == []


def test_an_order_shows_the_time_of_each_status_change(
    client: TestClient, placed_order: dict[str, Any]
) -> None:
    url = f"/api/orders/{placed_order['id']}"
    client.post(f"{url}/payment", json={"amount": "25.00", "reference": "P-1"}, headers=ALICE)
    client.post(f"{url}/cancellation", json={"reason": "changed my mind"}, headers=ALICE)
    order = client.get(url, headers=ALICE).json()
    assert [h["status"] for h in order["status_history"]] == ["placed", "paid", "cancelled"]
    times = [h["at"] for h in order["status_history"]]
    assert times == sorted(times)
    assert (order["refund"], order["cancel_reason"]) == ("25.00", "changed my mind")


def test_the_sales_report_leaves_cancelled_orders_out(
    client: TestClient, add_product: AddProduct, cart_with: CartWith
) -> None:
    add_product("TEA", "3.00", units=10)
    kept = check_out(client, cart_with({"TEA": 2}))
    gone = check_out(client, cart_with({"TEA": 5}))
    client.post(
        f"/api/orders/{gone['id']}/cancellation", json={"reason": "no"}, headers=ALICE
    ).raise_for_status()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    report = client.get(
        "/api/reports/sales", params={"from": today, "to": today}, headers=STAFF
    ).json()
    assert report["totals"] == {"orders": 1, "units": 2, "revenue": "6.00"}
    assert [s["sku"] for s in report["skus"]] == ["TEA"]
    assert report["days"][0]["day"] == today
    assert kept["total"] == "6.00"
    problem_of(client.get("/api/reports/sales", headers=ALICE), 403)
    problem_of(client.get("/api/reports/sales", params={"from": "2026-02-30"}, headers=STAFF), 422)
    # Per day is the only granularity: asked for, it is the same report; another is refused.
    per_day = {"from": today, "to": today, "granularity": "day"}
    assert client.get("/api/reports/sales", params=per_day, headers=STAFF).json() == report
    weekly = client.get("/api/reports/sales", params={"granularity": "week"}, headers=STAFF)
    assert fields_of(problem_of(weekly, 422)) == {"granularity"}


def test_min_position_answers_with_the_command_just_made(app: Any, add_product: AddProduct) -> None:
    with TestClient(app) as plain:  # no automatic min_position here
        done = plain.post(
            "/api/products", json={"sku": "NEW-1", "name": "New", "price": "1.00"}, headers=STAFF
        ).json()
        response = plain.get(
            "/api/products/NEW-1", params={"min_position": done["position"]}, headers=ALICE
        )
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "New"
        assert int(response.headers["X-Projection-Position"]) >= done["position"]


def test_a_position_past_the_head_was_never_handed_out(client: TestClient) -> None:
    problem = problem_of(
        client.get("/api/products", params={"min_position": 10**9}, headers=ALICE), 422
    )
    assert problem["errors"][0]["field"] == "min_position"


@pytest.fixture
def idle_app(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """An API process whose read models are fed by nobody (its workers are down)."""
    settings = Settings(
        database_url=database_url,
        jwt_secret=SECRET,
        var_dir=tmp_path,
        run_projections=False,
        read_wait_seconds=0.3,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_read_model_that_lags_answers_503_with_retry_after(idle_app: TestClient) -> None:
    done = idle_app.post(
        "/api/products", json={"sku": "LAG-1", "name": "Lag", "price": "1.00"}, headers=STAFF
    ).json()
    response = idle_app.get(
        "/api/products/LAG-1", params={"min_position": done["position"]}, headers=ALICE
    )
    problem_of(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert response.headers["X-Projection-Position"] == "0"


def test_admins_see_every_projection_caught_up(
    client: TestClient, add_product: AddProduct, shop: Any
) -> None:
    add_product("A-1", units=1)
    head = shop.head()
    assert client.app.state.read_side.wait_for(None, head, timeout=10)  # type: ignore[attr-defined]
    items = client.get("/api/projections", headers=ADMIN).json()["items"]
    assert {p["name"] for p in items} >= {"catalogue", "stock", "carts", "orders", "sales"}
    for projection in items:
        assert (projection["position"], projection["head"], projection["lag"]) == (head, head, 0)
    problem_of(client.get("/api/projections", headers=STAFF), 403)
