"""Webhooks end to end, on SQLite and PostgreSQL: the real app feeds a receiver on the
loopback address, which checks every signature with the ``standardwebhooks`` library
and every CloudEvent against the contract's JSON Schemas."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from eventshop import bootstrap
from eventshop.webhooks import open_webhooks
from projections.engine.tables import LostOwnership
from projections.integration.events import EVENT_TYPES
from tests.conftest import settings_for
from tests.hardening.conftest import ALICE, STAFF, World
from tests.projections.support import ADDRESS
from tests.webhooks.conftest import (
    ADMIN,
    ATTEMPTS,
    FAST,
    Receiver,
    caught_up,
    contract,
    deliveries,
    events,
    subscribe,
    wait_until,
)

PLACED, PAID = "eventshop.order.placed", "eventshop.order.paid"


def test_a_receiver_gets_every_event_once_in_log_order_signed(
    client: TestClient, receiver: Receiver
) -> None:
    subscription = subscribe(client, receiver.url, *EVENT_TYPES)
    world = World(client)
    shipped = world.order("shipped")
    world.call("POST", f"/api/orders/{shipped['id']}/delivery", STAFF, {})
    placed = world.order("placed")
    world.call("POST", f"/api/orders/{placed['id']}/cancellation", ALICE, {"reason": "no"})
    wait_until(lambda: caught_up(client, subscription))

    received = events(receiver, subscription["secret"])
    assert len(receiver.requests) == len(received) == 6  # each once
    assert [e["type"] for e in received] == [
        PLACED,
        PAID,
        "eventshop.order.shipped",
        "eventshop.order.delivered",
        PLACED,
        "eventshop.order.cancelled",
    ]
    assert [e["subject"] for e in received] == [shipped["id"]] * 4 + [placed["id"]] * 2
    # Every one of the log after the subscription was made, in its order, as the
    # contract (and so the JetStream publisher) gives it.
    source = client.app.state.read_side.runner.source  # type: ignore[attr-defined]
    assert received == contract(source, after=subscription["starts_after"])
    assert [r.headers["webhook-id"] for r in receiver.accepted] == [e["id"] for e in received]
    assert received[-1]["data"] == {"order_id": placed["id"], "refund": None, "currency": "EUR"}
    assert {r.headers["Content-Type"] for r in receiver.accepted} == {
        "application/cloudevents+json"
    }
    listed = deliveries(client, subscription)
    assert [(d["position"], d["status"], d["attempts"]) for d in listed] == [
        (int(e["sequence"]), "delivered", 1) for e in received
    ]


def test_a_failing_receiver_gets_the_delivery_once_it_recovers_in_order(
    client: TestClient, receiver: Receiver
) -> None:
    """500 three times, then 200: the delivery is tried again until it gets through, and
    the next event only after it. (Only the types subscribed to are sent: not shipped.)"""
    receiver.answers = [500, 500, 500]
    subscription = subscribe(client, receiver.url, PLACED, PAID)
    World(client).order("shipped")
    wait_until(lambda: caught_up(client, subscription))

    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert [r.status for r in receiver.requests] == [500, 500, 500, 200, 200]
    assert len(set(ids[:4])) == 1  # one delivery, tried four times
    assert [e["type"] for e in events(receiver, subscription["secret"])] == [PLACED, PAID]
    first, second = deliveries(client, subscription)
    assert (first["status"], first["attempts"], first["last_status"]) == ("delivered", 4, 200)
    assert (second["status"], second["attempts"]) == ("delivered", 1)


def test_a_delivery_is_parked_after_the_last_attempt_and_redelivered_on_request(
    client: TestClient, receiver: Receiver
) -> None:
    receiver.answers = [503] * ATTEMPTS
    subscription = subscribe(client, receiver.url, PLACED, PAID)
    World(client).order("paid")
    wait_until(lambda: caught_up(client, subscription))

    (parked,) = deliveries(client, subscription, status="parked")
    assert (parked["type"], parked["attempts"], parked["last_status"]) == (PLACED, ATTEMPTS, 503)
    assert "503" in parked["last_error"]
    # The subscription went on without it.
    assert [e["type"] for e in events(receiver, subscription["secret"])] == [PAID]

    path = f"/api/webhooks/{subscription['id']}/deliveries/{parked['id']}/redeliver"
    asked = client.post(path, headers=ADMIN)
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] in ("pending", "delivered")
    wait_until(lambda: len(receiver.accepted) == 2)
    wait_until(lambda: not deliveries(client, subscription, status="pending"))

    again = events(receiver, subscription["secret"])[-1]
    assert (again["type"], again["id"]) == (PLACED, parked["id"])
    assert [d["status"] for d in deliveries(client, subscription)] == ["delivered"] * 2
    status = client.get(f"/api/webhooks/{subscription['id']}", headers=ADMIN).json()
    assert status["deliveries"] == {"delivered": 2, "failing": 0, "parked": 0, "pending": 0}


def test_one_deliverer_at_a_time_and_the_position_is_fenced(
    client: TestClient, receiver: Receiver
) -> None:
    """A second deliverer on the same store (as in another worker) stands by: every event
    reaches the receiver once; and a position that moved refuses a stale deliverer."""
    app: Any = client.app
    second = open_webhooks(app.state.settings, app.state.read_side)
    second.start()
    try:
        subscription = subscribe(client, receiver.url, PLACED, PAID)
        World(client).order("paid")
        World(client).order("paid")
        wait_until(lambda: caught_up(client, subscription))
        assert len(receiver.requests) == 4
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 4
    finally:
        second.close()
    store = app.state.webhooks.store
    moved = store.get(subscription["id"]).position
    try:
        store.advance(subscription["id"], moved - 1, moved + 1)
    except LostOwnership:
        pass
    else:
        raise AssertionError("a stale position was accepted")
    assert store.get(subscription["id"]).position == moved


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unsubscribed_url_gets_nothing_more(client: TestClient, receiver: Receiver) -> None:
    subscription = subscribe(client, receiver.url, PLACED)
    path = f"/api/webhooks/{subscription['id']}"
    assert client.delete(path, headers=ADMIN).status_code == 204
    assert client.get(path, headers=ADMIN).status_code == 404
    assert client.get("/api/webhooks", headers=ADMIN).json()["items"] == []
    World(client).order("placed")
    other = subscribe(client, receiver.url, PLACED)  # a witness that delivery goes on
    World(client).order("placed")
    wait_until(lambda: caught_up(client, other))
    assert len(receiver.requests) == 1
    body = json.loads(receiver.requests[0].body)
    assert int(body["sequence"]) > subscription["starts_after"]


def test_eventshop_worker_delivers(sqlite_url: str, tmp_path: Path, receiver: Receiver) -> None:
    """The worker's body (``eventshop worker``) runs the deliverer too."""
    settings = settings_for(sqlite_url, var_dir=tmp_path, **FAST)
    with bootstrap.open_shop(settings) as shop:
        read_side = bootstrap.open_read_side(settings, shop)
        webhooks = open_webhooks(settings, read_side)
        _, secret = webhooks.subscribe(receiver.url, [PLACED])
        webhooks.close()
        read_side.close()
        stop = threading.Event()
        worker = threading.Thread(target=bootstrap.run_worker, args=(settings, shop, stop))
        worker.start()
        try:
            shop.add_product("MUG-1", "Mug", "5.00")
            shop.receive_stock("MUG-1", 1)
            cart = shop.open_cart("ann").aggregate.id
            shop.add_to_cart(cart, "MUG-1", 1)
            order = shop.check_out(cart, ADDRESS, "ann@example.com").aggregate
            wait_until(lambda: len(receiver.accepted) == 1)
        finally:
            stop.set()
            worker.join()
    (event,) = events(receiver, secret)
    assert (event["type"], event["subject"]) == (PLACED, str(order.id))


def test_tables_made_before_the_translator_state_are_upgraded(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A subscription stored without translator state derives it from the start of the
    log, sending nothing it had reached; deliveries get a column for their body."""
    settings = settings_for(sqlite_url, var_dir=tmp_path, **FAST)
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
        db.execute(
            "CREATE TABLE webhook_subscriptions (id TEXT PRIMARY KEY, url TEXT NOT NULL,"
            " event_types TEXT NOT NULL, secret TEXT NOT NULL, position BIGINT NOT NULL,"
            " created_at TEXT NOT NULL, created_by TEXT)"
        )
        db.execute(
            "CREATE TABLE webhook_deliveries (subscription_id TEXT NOT NULL, id TEXT NOT NULL,"
            " position BIGINT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,"
            " attempts INTEGER NOT NULL, last_status INTEGER, last_error TEXT,"
            " updated_at TEXT NOT NULL, PRIMARY KEY (subscription_id, id))"
        )
        db.execute(
            "INSERT INTO webhook_subscriptions VALUES ('s-1', 'http://127.0.0.1/', '[]',"
            " 'whsec_x', 7, '2026-11-29T12:00:00Z', NULL)"
        )
    with bootstrap.open_shop(settings) as shop:
        read_side = bootstrap.open_read_side(settings, shop)
        webhooks = open_webhooks(settings, read_side)
        try:
            upgraded = webhooks.store.get("s-1")
            assert (upgraded.position, upgraded.starts_after) == (0, 7)
            assert webhooks.store.pending("s-1") == []  # the body column is there
        finally:
            webhooks.close()
            read_side.close()
