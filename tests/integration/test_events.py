"""Integration events (issue 17, item 2): the mapping from domain events to CloudEvents,
checked against the JSON Schemas in the repository (each schema's example is the golden
event of a fixed history), and served at GET /api/integration/schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routers import integration
from domain.stock import Stock
from projections.integration.events import (
    TYPE_PREFIX,
    TYPES,
    IntegrationEvent,
    Thresholds,
    Translator,
    dataschema,
    schemas,
)
from tests.integration.scenario import FIRST, SECOND, SKU, STOCK, history

SCHEMAS = Path(__file__).resolve().parents[2] / "projections" / "integration" / "schemas"


def translated(events: list[Any], translator: Translator | None = None) -> list[IntegrationEvent]:
    translator = translator or Translator()
    found = (translator.translate(position, e) for position, e in enumerate(events, 1))
    return [event for event in found if event is not None]


def valid(cloudevent: dict[str, Any]) -> None:
    jsonschema_rs.validate(schemas()[cloudevent["type"]], cloudevent)


def test_the_schema_folder_holds_one_schema_per_type_named_by_its_dataschema() -> None:
    assert sorted(p.stem for p in SCHEMAS.glob("*.json")) == sorted(TYPES)
    for name in TYPES:
        schema = json.loads((SCHEMAS / f"{name}.json").read_text())
        jsonschema_rs.meta.validate(schema)
        assert schema["$id"] == dataschema(name)
        assert schema["properties"]["type"] == {"const": TYPE_PREFIX + name}


def test_a_history_gives_the_golden_events_of_the_schemas_in_log_order() -> None:
    events = [event.cloudevent() for event in translated(history())]
    assert [e["type"] for e in events] == [
        TYPE_PREFIX + name
        for name in (
            "order.placed",
            "stock.low",  # 10 - 6 = 4 available, below 5
            "order.paid",
            "order.shipped",
            "order.delivered",
            "order.placed",
            "stock.depleted",  # the last 4 reserved
            "order.paid",
            "order.cancelled",
        )
    ]
    assert [e["subject"] for e in events] == [
        str(FIRST),
        SKU,
        *[str(FIRST)] * 3,
        str(SECOND),
        SKU,
        *[str(SECOND)] * 2,
    ]
    golden: dict[str, dict[str, Any]] = {}
    for event in events:
        valid(event)
        golden.setdefault(event["type"], event)
    for type_, schema in schemas().items():
        assert golden[type_] == schema["examples"][0], type_
        valid(schema["examples"][0])
    sequences = [e["sequence"] for e in events]
    assert sequences == sorted(sequences) and len({e["id"] for e in events}) == len(events)


def test_no_personal_data_and_no_free_text_leaves_the_shop() -> None:
    sent = json.dumps([e.cloudevent() for e in translated(history())])
    for private in ("alice", "Alice", "Main St", "Berlin", "10115", "PAY-1", "called to cancel"):
        assert private not in sent


def test_the_schemas_refuse_what_the_contract_does_not_hold() -> None:
    placed = json.loads(json.dumps(schemas()["eventshop.order.placed"]["examples"][0]))
    placed["data"]["email"] = "alice@example.com"
    with pytest.raises(jsonschema_rs.ValidationError):
        valid(placed)
    cancelled = json.loads(json.dumps(schemas()["eventshop.order.cancelled"]["examples"][0]))
    cancelled["data"]["refund"] = None  # never paid: nothing owed
    valid(cancelled)
    cancelled["data"]["refund"] = "50"
    with pytest.raises(jsonschema_rs.ValidationError):
        valid(cancelled)


def test_stock_low_and_depleted_are_sent_when_the_level_crosses_and_again_after_a_restock() -> None:
    created, received, *_ = history()

    def moved(cls: type, version: int, **state: Any) -> Any:
        return cls(
            originator_id=STOCK, originator_version=version, timestamp=received.timestamp, **state
        )

    def reserved(version: int, units: int) -> Any:
        return moved(Stock.Reserved, version, order_id=str(FIRST), quantity=units)

    events = [
        created,
        received,  # 10 available
        reserved(3, 2),  # 8: not below the SKU's threshold of 8
        reserved(4, 1),  # 7: low
        reserved(5, 1),  # 6: still low, not sent again
        moved(Stock.Received, 6, quantity=5, note=""),  # 11
        moved(Stock.Adjusted, 7, delta=-4, reason="count"),  # 7: low again
        moved(Stock.Adjusted, 8, delta=-7, reason="count"),  # 0: depleted (not low)
    ]
    thresholds = Thresholds(default=5, per_sku={SKU: 8})
    sent = [(e.name, dict(e.data)) for e in translated(events, Translator(thresholds))]
    assert sent == [
        ("stock.low", {"sku": SKU, "available": 7, "threshold": 8}),
        ("stock.low", {"sku": SKU, "available": 7, "threshold": 8}),
        ("stock.depleted", {"sku": SKU}),
    ]
    assert [e.name for e in translated(events, Translator(Thresholds(default=0)))] == [
        "stock.depleted"
    ]


def test_the_state_a_publisher_stores_translates_the_rest_as_one_translator_would() -> None:
    events = history()
    whole = translated(events)
    first = Translator()
    head = [first.translate(p, e) for p, e in enumerate(events[:6], 1)]
    stocks, orders = first.changes()
    resumed = Translator(
        stocks={k: v for k, v in stocks.items() if v is not None},
        orders={k: v for k, v in orders.items() if v is not None},
    )
    tail = [resumed.translate(p, e) for p, e in enumerate(events[6:], 7)]
    assert [e for e in head + tail if e is not None] == whole


def test_the_schemas_are_served_to_anyone() -> None:
    # The route alone: that the shop's app routes it, to anyone, is the authorization
    # matrix's (tests/hardening/test_authorization.py).
    app = FastAPI()
    app.include_router(integration.router)
    client = TestClient(app)
    answer = client.get("/api/integration/schemas")
    assert answer.status_code == 200
    assert answer.json() == schemas()
    assert sorted(answer.json()) == sorted(TYPE_PREFIX + name for name in TYPES)
