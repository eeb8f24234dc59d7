"""The audit routes over HTTP, the live feed, and who-and-why through the real app."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import mint
from api.routers.audit import live_events
from commands.service import Shop
from eventshop.bootstrap import open_auditor
from eventshop.settings import Settings
from projections.audit.chain import chain_head, read_export
from projections.engine.pagination import MAX_LIMIT
from tests.audit.conftest import History

SECRET = "test-secret-of-the-audit-tests-0123456789"


def bearer(role: str, sub: str = "audit-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(SECRET, sub, [role])}"}


AUDITOR = bearer("auditor")


@pytest.fixture
def app(shop: Shop, audit_url: str, tmp_path: Path) -> FastAPI:
    settings = Settings(database_url=audit_url, jwt_secret=SECRET, var_dir=tmp_path)
    return create_app(settings, shop=shop)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def test_only_auditors_may_read_the_log(client: TestClient, history: History) -> None:
    problem(client.get("/api/audit/events"), 401)
    for role in ("customer", "staff", "admin"):
        problem(client.get("/api/audit/events", headers=bearer(role)), 403)
    assert client.get("/api/audit/events", headers=AUDITOR).status_code == 200


def test_the_log_pages_with_a_cursor_and_filters(client: TestClient, history: History) -> None:
    first = client.get("/api/audit/events", params={"limit": 10}, headers=AUDITOR).json()
    assert [i["position"] for i in first["items"]] == list(range(1, 11))
    rest = client.get(
        "/api/audit/events", params={"cursor": first["next_cursor"]}, headers=AUDITOR
    ).json()
    assert [i["position"] for i in rest["items"]] == list(range(11, 20))
    assert rest["next_cursor"] is None
    item = first["items"][0]
    assert set(item) == {
        "position",
        "aggregate_id",
        "aggregate_type",
        "version",
        "type",
        "timestamp",
        "data",
        "metadata",
    }

    by_type = client.get(
        "/api/audit/events",
        params={"type": "Order.Paid", "aggregate_id": str(history.order_id)},
        headers=AUDITOR,
    ).json()["items"]
    assert [(i["type"], i["data"]["reference"]) for i in by_type] == [("Order.Paid", "PAY-1")]

    window = client.get(
        "/api/audit/events",
        params={"from": first["items"][2]["timestamp"], "to": first["items"][4]["timestamp"]},
        headers=AUDITOR,
    ).json()["items"]
    assert [i["position"] for i in window] == [3, 4]


def test_bad_log_queries_are_problems(client: TestClient, history: History) -> None:
    too_many = problem(
        client.get("/api/audit/events", params={"limit": MAX_LIMIT + 1}, headers=AUDITOR), 422
    )
    assert too_many["errors"][0]["field"] == "limit"
    assert client.get(f"/api/audit/events?limit={MAX_LIMIT}", headers=AUDITOR).status_code == 200
    unknown = problem(client.get("/api/audit/events?type=Nope", headers=AUDITOR), 422)
    assert unknown["errors"][0]["field"] == "type"
    problem(client.get("/api/audit/events?cursor=abc", headers=AUDITOR), 422)
    problem(client.get("/api/audit/digest?upto=9999", headers=AUDITOR), 422)


@pytest.mark.parametrize("moment", ["0.99", "1700000000", "2026-01-01T00:00:00", "yesterday"])
def test_moments_are_iso_8601_with_an_offset_as_elsewhere_in_the_api(
    client: TestClient, history: History, moment: str
) -> None:
    """The same ``Instant`` as every other route: a number is no Unix timestamp, and a
    moment without its UTC offset names none."""
    for name in ("from", "to"):
        refused = problem(
            client.get("/api/audit/events", params={name: moment}, headers=AUDITOR), 422
        )
        assert refused["errors"][0]["field"] == name
    url = f"/api/audit/aggregates/{history.cart_id}/state"
    refused = problem(client.get(url, params={"at": moment}, headers=AUDITOR), 422)
    assert refused["errors"][0]["field"] == "at"


def test_an_aggregates_history_and_its_state_then(client: TestClient, history: History) -> None:
    url = f"/api/audit/aggregates/{history.cart_id}"
    events = client.get(f"{url}/events", headers=AUDITOR).json()
    assert events["aggregate_type"] == "Cart" and events["version"] == 5
    assert [i["type"] for i in events["items"]][:2] == ["Cart.Opened", "Cart.ItemAdded"]
    assert events["items"][1]["metadata"]["actor"] == "alice"

    at_two = client.get(f"{url}/state", params={"version": 2}, headers=AUDITOR).json()
    assert at_two["version"] == 2 and list(at_two["state"]["lines"]) == ["MUG-1"]
    moment = events["items"][2]["timestamp"]
    at_then = client.get(f"{url}/state", params={"at": moment}, headers=AUDITOR).json()
    assert at_then["version"] == 3
    now = client.get(f"{url}/state", headers=AUDITOR).json()
    assert now["version"] == 5 and now["state"]["order_id"] == str(history.order_id)


def test_unknown_aggregates_and_versions_are_not_found(
    client: TestClient, history: History
) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    problem(client.get(f"/api/audit/aggregates/{missing}/events", headers=AUDITOR), 404)
    problem(client.get(f"/api/audit/aggregates/{missing}/state", headers=AUDITOR), 404)
    url = f"/api/audit/aggregates/{history.cart_id}/state"
    problem(client.get(url, params={"version": 6}, headers=AUDITOR), 404)
    problem(client.get(url, params={"at": "2000-01-01T00:00:00Z"}, headers=AUDITOR), 404)
    problem(client.get("/api/audit/aggregates/not-a-uuid/events", headers=AUDITOR), 422)


def test_a_skus_product_and_stock_are_found_by_the_sku(
    client: TestClient, history: History
) -> None:
    found = client.get("/api/audit/skus/MUG-1", headers=AUDITOR)
    assert found.status_code == 200, found.text
    assert found.json() == {
        "sku": "MUG-1",
        "product_id": str(history.product_id),
        "stock_id": str(history.stock_id),
    }
    problem(client.get("/api/audit/skus/NOPE-1", headers=AUDITOR), 404)
    problem(client.get("/api/audit/skus/mug 1", headers=AUDITOR), 422)
    problem(client.get("/api/audit/skus/MUG-1", headers=bearer("staff")), 403)


def test_the_export_streams_ndjson_and_matches_the_digest(
    client: TestClient, history: History
) -> None:
    response = client.get("/api/audit/export", headers=AUDITOR)
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    assert len(lines) == 19
    digest = client.get("/api/audit/digest", headers=AUDITOR).json()
    count, head = chain_head(read_export(lines))
    assert (digest["upto"], digest["events"], digest["head"]) == (19, count, head.hex())
    sliced = client.get("/api/audit/export?after=10&until=12", headers=AUDITOR).text
    assert [json.loads(line)["position"] for line in sliced.splitlines()] == [11, 12]


def test_the_live_feed_delivers_new_events_in_order_and_resumes(shop: Shop) -> None:
    auditor = open_auditor(shop)
    shop.add_product("MUG-1", "Mug", "1.00")  # positions 1 and 2

    async def take(after: int, count: int) -> list[dict[str, str]]:
        feed = live_events(auditor, after, poll_seconds=0.05)
        got = []
        with anyio.fail_after(10):
            async for message in feed:
                got.append(message)
                if len(got) == count:
                    break
        await feed.aclose()
        return got

    async def first_connection() -> list[dict[str, str]]:
        async with anyio.create_task_group() as tasks:
            # Events stored while the feed waits arrive too.
            tasks.start_soon(anyio.to_thread.run_sync, late_writes)
            got = await take(0, 4)
        return got

    def late_writes() -> None:
        time.sleep(0.2)
        shop.receive_stock("MUG-1", 1)
        shop.receive_stock("MUG-1", 2)

    got = anyio.run(first_connection)
    assert [m["id"] for m in got] == ["1", "2", "3", "4"]
    assert [json.loads(m["data"])["type"] for m in got] == [
        "Product.Added",
        "Stock.Created",
        "Stock.Received",
        "Stock.Received",
    ]
    # Reconnecting with the last id seen: only what came after, once each.
    shop.receive_stock("MUG-1", 3)
    shop.change_product("MUG-1", name="Big mug")
    resumed = anyio.run(take, 4, 2)
    assert [(m["id"], json.loads(m["data"])["type"]) for m in resumed] == [
        ("5", "Stock.Received"),
        ("6", "Product.Renamed"),
    ]


@pytest.fixture
def served(app: FastAPI) -> Iterator[str]:
    """The app on a real server (the test client cannot end an endless stream)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def read_feed(
    url: str, count: int, headers: dict[str, str], then: Callable[[], object] = lambda: None
) -> list[tuple[str, str]]:
    """The first ``count`` (id, type) pairs the live feed sends, then hang up.

    ``then`` runs once the feed has answered (so it knows where "now" is).
    """
    got: list[tuple[str, str]] = []
    with httpx.stream("GET", url, headers={**AUDITOR, **headers}, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        then()
        event_id = None
        for line in response.iter_lines():
            if line.startswith("id:"):
                event_id = line.partition(":")[2].strip()
            elif line.startswith("data:") and event_id is not None:
                got.append((event_id, json.loads(line.partition(":")[2])["type"]))
                if len(got) == count:
                    break
    return got


def test_the_live_feed_over_http_resumes_after_last_event_id(shop: Shop, served: str) -> None:
    shop.add_product("MUG-1", "Mug", "1.00")
    url = f"{served}/api/audit/live"
    # Without a start, the feed begins now: only the event stored after connecting.
    assert read_feed(url, 1, {}, lambda: shop.receive_stock("MUG-1", 5)) == [
        ("3", "Stock.Received")
    ]
    shop.change_product("MUG-1", price="2.00")
    assert read_feed(url, 2, {"Last-Event-ID": "2"}) == [
        ("3", "Stock.Received"),
        ("4", "Product.Repriced"),
    ]
    assert read_feed(f"{url}?after=3", 1, {}) == [("4", "Product.Repriced")]


def test_who_and_why_of_an_http_command(client: TestClient) -> None:
    """The request-id middleware and the token check stamp the events a request causes."""
    staff = bearer("staff", sub="staff-7")
    created = client.post(
        "/api/products",
        json={"sku": "MUG-1", "name": "Mug", "price": "1.00"},
        headers={**staff, "X-Request-ID": "req-from-client"},
    )
    assert created.status_code == 201, created.text
    items = client.get("/api/audit/events", headers=AUDITOR).json()["items"]
    assert [i["metadata"] for i in items] == [
        {"actor": "staff-7", "role": "staff", "correlation_id": "req-from-client"}
    ] * 2
