"""/openapi.json as a client generator reads it: an operation id per route in one scheme,
statuses as enums, every header the app sends declared, a schema for every answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routers.projections import ProjectionState
from domain.order import STATUSES
from projections.deliveries import ChannelState
from projections.engine.runner import DEGRADED
from projections.engine.worker import State
from projections.integration.jetstream import State as PublisherRunState
from tests.api.conftest import ADDRESS, ALICE, AUDITOR, SECRET, STAFF, bearer, on_sqlite
from tests.conftest import settings_for

# A verb, then what it acts on: addProduct, listAuditEvents, checkOutCart.
VERBS = (
    "add|adjust|cancel|change|check|create|delete|deliver|erase|export|get|issue|list|open|pay"
    "|rebuild|receive|redeliver|remove|retry|set|ship|skip|stream|verify|log"
)
OPERATION_ID = re.compile(rf"^(?:{VERBS})(?:[A-Z][a-z0-9]+)+$")
# Headers the app sends that a client may read.
HEADERS = {
    "ETag",
    "Location",
    "X-Projection-Position",
    "Retry-After",
    "WWW-Authenticate",
    "Content-Disposition",
    "Accept",
    "X-Request-ID",
}
ADMIN = bearer("admin", sub="admin-1")


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


@on_sqlite
def test_every_operation_id_names_a_verb_and_its_object_once(client: TestClient) -> None:
    ids = [op["operationId"] for _, _, op in operations(client.get("/openapi.json").json())]
    assert [i for i in ids if not OPERATION_ID.fullmatch(i)] == []
    assert len(ids) == len(set(ids))
    assert {"addProduct", "getOrder", "listAuditEvents", "checkOutCart"} <= set(ids)


@on_sqlite
def test_statuses_are_named_enums(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["OrderStatus"]["enum"] == list(STATUSES)
    assert schemas["CartStatus"]["enum"] == ["open", "checked_out"]
    assert schemas["DeliveryStatus"]["enum"] == ["delivered", "failing", "parked", "pending"]
    assert "bad receipt" in schemas["VerificationStatus"]["enum"]
    # Every state a feeder reports, and those the read side adds.
    assert {s.value for s in State} | {DEGRADED, "rebuilding", "not_running"} == {
        s.value for s in ProjectionState
    }
    # Every state the JetStream publisher writes, those of a webhook subscription, and
    # not_running for either: no other value can be answered.
    webhook = {"live", "catching_up", "retrying", "degraded", "not_running"}
    channel_states = schemas["ChannelState"]["enum"]
    assert channel_states == [s.value for s in ChannelState]
    assert {s.value for s in PublisherRunState} | webhook == set(channel_states)
    uses = {
        ("OrderDetail", "status"): "OrderStatus",
        ("OrderSummary", "status"): "OrderStatus",
        ("StatusChange", "status"): "OrderStatus",
        ("CartDetail", "status"): "CartStatus",
        ("ProjectionStatus", "state"): "ProjectionState",
        ("RebuildProgress", "phase"): "RebuildPhase",
        ("DeliveryView", "status"): "DeliveryStatus",
        ("VerificationResult", "status"): "VerificationStatus",
        ("ChannelView", "state"): "ChannelState",
    }
    for (model, field), enum in uses.items():
        assert schemas[model]["properties"][field]["$ref"] == f"#/components/schemas/{enum}"
    orders = document["paths"]["/api/orders"]["get"]["parameters"]
    status = next(p for p in orders if p["name"] == "status")
    assert "#/components/schemas/OrderStatus" in str(status["schema"])


@on_sqlite
def test_every_answer_has_a_schema_and_every_stream_its_items(client: TestClient) -> None:
    streams = {"application/x-ndjson", "text/event-stream"}
    for method, path, operation in operations(client.get("/openapi.json").json()):
        for status, response in operation["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            assert response.get("description"), (method, path, status)
            for media_type, content in response["content"].items():
                schema = content.get("schema", {})
                assert schema.get("type") or schema.get("$ref"), (method, path, media_type)
                if media_type in streams:
                    assert content["itemSchema"], (method, path)
                    assert schema["description"], (method, path)


@pytest.fixture
def behind(tmp_path: Path) -> Iterator[TestClient]:
    """An app whose read models are not fed: a query waiting for a position answers 503."""
    settings = settings_for(
        f"sqlite:///{tmp_path / 'behind.db'}",
        var_dir=tmp_path,
        jwt_secret=SECRET,
        run_projections=False,
        read_wait_seconds=0.05,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _operation_of(document: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    for template, methods in document["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in methods:
            return dict(methods[method.lower()])
    return None


@on_sqlite
def test_every_header_sent_is_declared_where_it_is_sent(
    client: TestClient, behind: TestClient
) -> None:
    answers: list[httpx.Response] = []
    for test_client in (client, behind):
        test_client.event_hooks["response"] = [lambda response: answers.append(response)]
    sku = "MUG-1"
    client.post("/api/products", json={"sku": sku, "name": "Mug", "price": "2.50"}, headers=STAFF)
    client.patch(f"/api/products/{sku}", json={"price": "3.00"}, headers=STAFF)
    client.post(f"/api/stock/{sku}/receipts", json={"quantity": 5}, headers=STAFF)
    client.post(f"/api/stock/{sku}/adjustments", json={"delta": -1, "reason": "x"}, headers=STAFF)
    cart = client.post("/api/carts", json={}, headers=ALICE).json()["id"]
    client.post(f"/api/carts/{cart}/items", json={"sku": sku, "quantity": 2}, headers=ALICE)
    client.put(f"/api/carts/{cart}/items/{sku}", json={"quantity": 1}, headers=ALICE)
    checkout = {"shipping_address": ADDRESS, "email": "a@example.org"}
    order = client.post(f"/api/carts/{cart}/checkout", json=checkout, headers=ALICE).json()
    client.post(
        f"/api/orders/{order['id']}/payment",
        json={"amount": order["total"], "reference": "P-1"},
        headers=ALICE,
    )
    client.post(
        f"/api/orders/{order['id']}/shipment",
        json={"carrier": "DHL", "tracking_number": "1"},
        headers=STAFF,
    )
    client.post(f"/api/orders/{order['id']}/delivery", json={}, headers=STAFF)
    for path in (
        "/api/products",
        f"/api/products/{sku}",
        "/api/stock",
        f"/api/stock/{sku}",
        f"/api/carts/{cart}",
        "/api/orders",
        f"/api/orders/{order['id']}",
        "/api/customers",
        "/api/customers/alice",
        "/api/reports/sales",
    ):
        client.get(path, headers=STAFF)
    for path in (
        "/api/audit/events",
        f"/api/audit/aggregates/{order['id']}/events",
        f"/api/audit/aggregates/{order['id']}/state",
        "/api/audit/export",
        "/api/audit/digest",
        "/api/audit/receipts",
        "/api/audit/verify",
        f"/api/audit/skus/{sku}",
        "/api/audit/public-key",
    ):
        client.get(path, headers=AUDITOR)
    client.post("/api/audit/receipts", headers=AUDITOR)
    client.get("/api/projections", headers=ADMIN)
    client.get("/api/projections/orders/parked", headers=ADMIN)
    client.get("/api/integration/schemas")
    client.get("/health/live")
    client.get("/health/ready")
    client.get("/metrics")
    client.get("/api/orders")  # 401
    client.post("/api/products", content=b"sku=A", headers=STAFF)  # 415
    behind.app.state.shop.add_product("CUP-1", "Cup", "1.00")  # type: ignore[attr-defined]
    behind.get("/api/products?min_position=1", headers=STAFF)  # 503, the read model behind

    document = client.get("/openapi.json").json()
    undeclared, seen = [], set()
    for answer in answers:
        operation = _operation_of(document, answer.request.method, answer.request.url.path)
        if operation is None:
            continue  # not an operation of the API (the document itself)
        declared = operation["responses"].get(str(answer.status_code), {}).get("headers", {})
        sent = {name for name in HEADERS if name.lower() in answer.headers}
        seen |= sent
        for name in sorted(sent - declared.keys()):
            where = f"{answer.request.method} {answer.request.url.path}"
            undeclared.append(f"{where} {answer.status_code}: {name}")
    assert undeclared == []
    assert seen == HEADERS  # each of them was met at least once
    statuses = {a.status_code for a in answers}
    assert {200, 201, 401, 415, 503} <= statuses
