"""A poison event over HTTP: the projection is ``degraded`` with a count (in its status and
in /metrics), the admin lists the parked event, a retry before the fix answers 409 and
writes nothing, after the fix 200 once and then 404 (on SQLite; the engine's tests run
both databases)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.utils import get_topic
from fastapi.testclient import TestClient

from domain.order import Order
from projections.readmodels.sales import Sales
from tests.api.conftest import reads_own_writes
from tests.hardening.conftest import ADMIN, BOB, STAFF, World, make_app
from tests.hardening.test_metrics import sample, scrape

PLACED = get_topic(Order.Placed)


@pytest.fixture
def client(sqlite_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_app(sqlite_url, tmp_path)) as test_client:
        yield reads_own_writes(test_client)


def sales(client: TestClient) -> dict[str, Any]:
    items = client.get("/api/projections", headers=ADMIN).json()["items"]
    return dict(next(item for item in items if item["name"] == "sales"))


def test_park_degraded_retry_after_the_fix_live_over_http(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = Sales.handlers[PLACED]

    def poisoned(model: Any, tx: Any, event: Any) -> None:
        if event.customer_id == "bob":
            raise ValueError("sales cannot handle bob")
        handler(model, tx, event)

    monkeypatch.setitem(Sales.handlers, PLACED, poisoned)
    world = World(client)
    order = world.order("placed", who=BOB)
    world.order("placed")  # alice's, after it: applied
    report = client.get("/api/reports/sales", headers=STAFF).json()  # waits for the head
    assert report["totals"]["orders"] == 1
    assert (sales(client)["state"], sales(client)["parked"]) == ("degraded", 1)
    assert sample(scrape(client), "eventshop_projection_parked_events", projection="sales") == 1

    listed = client.get("/api/projections/sales/parked", headers=ADMIN)
    assert listed.status_code == 200
    (parked,) = listed.json()["items"]
    assert (parked["type"], parked["aggregate_id"]) == ("Order.Placed", order["id"])
    assert parked["error"] == "ValueError: sales cannot handle bob"
    retry = f"/api/projections/sales/parked/{parked['position']}/retry"

    refused = client.post(retry, headers=ADMIN)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert "still fails" in refused.json()["detail"]

    monkeypatch.undo()  # the fix is deployed
    done = client.post(retry, headers=ADMIN)
    assert done.status_code == 200
    assert (done.json()["outcome"], done.json()["parked"]) == ("applied", 0)
    assert client.post(retry, headers=ADMIN).status_code == 404  # exactly once
    assert client.get("/api/reports/sales", headers=STAFF).json()["totals"]["orders"] == 2
    assert (sales(client)["state"], sales(client)["parked"]) == ("live", 0)
    assert sample(scrape(client), "eventshop_projection_parked_events", projection="sales") == 0
