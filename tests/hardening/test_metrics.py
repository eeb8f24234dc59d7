"""GET /metrics: requests by route and status, latency, commands by outcome, retries, the
log head and each read model's position, lag and throughput (on SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from commands.service import Shop
from tests.hardening.conftest import ALICE, STAFF, make_app

PRODUCT = {"sku": "M-1", "name": "Mug", "price": "1.00"}


@pytest.fixture
def app(sqlite_url: str, tmp_path: Path) -> FastAPI:
    return make_app(sqlite_url, tmp_path)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by name and sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_template_and_status(client: TestClient) -> None:
    for sku in ("A-1", "B-2", "C-3"):
        client.get(f"/api/products/{sku}", headers=STAFF)
    client.get("/api/products/NOT VALID", headers=STAFF)
    client.get("/nothing/here/123")
    client.get("/nothing/here/456")
    samples = scrape(client)
    route = "/api/products/{sku}"
    total = "eventshop_http_requests_total"
    assert sample(samples, total, method="GET", route=route, status="404") == 3
    assert sample(samples, total, method="GET", route=route, status="422") == 1
    # Unknown paths share one label: they cannot blow up the number of series.
    assert sample(samples, total, method="GET", route="unmatched", status="404") == 2
    assert not any("nothing" in str(key) for key in samples)
    latency = "eventshop_http_request_duration_seconds_count"
    assert sample(samples, latency, method="GET", route=route) == 4
    assert sample(samples, "eventshop_http_request_duration_seconds_bucket",
                  method="GET", route=route, le="+Inf") == 4  # fmt: skip


def test_commands_are_counted_by_outcome(client: TestClient, app: FastAPI) -> None:
    client.post("/api/products", json=PRODUCT, headers=STAFF)  # ok
    client.post("/api/products", json=PRODUCT, headers=STAFF)  # refused: exists
    stale = {**STAFF, "If-Match": '"9"'}
    client.patch("/api/products/M-1", json={"name": "Cup"}, headers=stale)  # conflict: 412
    keyed = {**ALICE, "Idempotency-Key": "once"}
    client.post("/api/carts", json={}, headers=keyed)  # ok
    client.post("/api/carts", json={}, headers=keyed)  # replayed
    samples = scrape(client)
    commands = "eventshop_commands_total"
    assert sample(samples, commands, command="add_product", outcome="ok") == 1
    assert sample(samples, commands, command="add_product", outcome="refused") == 1
    assert sample(samples, commands, command="change_product", outcome="conflict") == 1
    assert sample(samples, commands, command="open_cart", outcome="ok") == 1
    assert sample(samples, commands, command="open_cart", outcome="replayed") == 1


def test_concurrency_retries_are_counted(client: TestClient, app: FastAPI) -> None:
    shop: Shop = app.state.shop
    client.post("/api/products", json=PRODUCT, headers=STAFF)
    load = shop.stock
    rivals = iter([True])

    def stale_once(sku: str) -> Any:
        # The first load is overtaken by a rival's write before the command saves.
        stock = load(sku)
        if next(rivals, False):
            rival = load(sku)
            rival.receive(1, "rival")
            shop.save(rival)
        return stock

    shop.stock = stale_once  # type: ignore[method-assign, assignment]
    try:
        response = client.post("/api/stock/M-1/receipts", json={"quantity": 2}, headers=STAFF)
    finally:
        del shop.stock
    assert response.status_code == 200 and response.json()["on_hand"] == 3
    samples = scrape(client)
    assert sample(samples, "eventshop_command_retries_total", command="receive_stock") == 1
    assert sample(samples, "eventshop_commands_total", command="receive_stock", outcome="ok") == 1


def test_the_log_head_and_projection_progress_are_gauges(
    client: TestClient, app: FastAPI
) -> None:
    shop: Shop = app.state.shop
    read_side = app.state.read_side
    client.post("/api/products", json=PRODUCT, headers=STAFF)
    client.post("/api/stock/M-1/receipts", json={"quantity": 5}, headers=STAFF)
    head = shop.head()
    assert read_side.wait_for(None, head, timeout=10)
    samples = scrape(client)
    assert sample(samples, "eventshop_event_log_head") == head
    for name in read_side.names:
        assert sample(samples, "eventshop_projection_position", projection=name) == head
        assert sample(samples, "eventshop_projection_lag_events", projection=name) == 0
        assert sample(samples, "eventshop_projection_events_per_second", projection=name) >= 0


def test_a_failing_source_does_not_fail_the_scrape(client: TestClient, app: FastAPI) -> None:
    app.state.shop.close()  # the store no longer answers
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "eventshop_http_requests_total" in response.text
    assert "eventshop_event_log_head" not in response.text
