"""Idempotency-Key over HTTP, on SQLite and PostgreSQL: a repeat is answered, not re-run.

What must hold: a repeat with the same key and body gets the first answer (status,
body, ETag, Location) and records nothing; another body under the key is refused
(422) and records nothing; two concurrent requests with one key execute once and
both get that answer; a refused command stores no key; keys expire.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from commands.idempotency import IdempotencyKeyReused, IdempotencyKeys, idempotent
from commands.service import Shop
from eventstore.causes import caused_by
from tests.api.conftest import fields_of, on_sqlite, problem_of
from tests.conftest import open_shop
from tests.hardening.conftest import ALICE, BOB, CHECKOUT, STAFF, World, make_app

KEY = "Idempotency-Key"


def keyed(who: dict[str, str], key: str) -> dict[str, str]:
    return {**who, KEY: key}


def answer(response: httpx.Response) -> tuple[int, Any, str | None, str | None]:
    """What a client sees of a command's answer, apart from the request id."""
    return (
        response.status_code,
        response.json(),
        response.headers.get("ETag"),
        response.headers.get("Location"),
    )


@pytest.fixture
def world(client: TestClient) -> World:
    return World(client)


def _add_product(world: World) -> tuple[str, str, dict[str, Any]]:
    return "POST", "/api/products", {"sku": "KEYED-1", "name": "Mug", "price": "3.00"}


def _open_cart(world: World) -> tuple[str, str, dict[str, Any]]:
    return "POST", "/api/carts", {}


def _add_item(world: World) -> tuple[str, str, dict[str, Any]]:
    cart_id, sku = world.cart()
    return "POST", f"/api/carts/{cart_id}/items", {"sku": sku, "quantity": 2}


def _check_out(world: World) -> tuple[str, str, dict[str, Any]]:
    cart_id, _ = world.cart()
    return "POST", f"/api/carts/{cart_id}/checkout", CHECKOUT


def _pay(world: World) -> tuple[str, str, dict[str, Any]]:
    order = world.order()
    return (
        "POST",
        f"/api/orders/{order['id']}/payment",
        {"amount": order["total"], "reference": "R"},
    )


def _set_quantity(world: World) -> tuple[str, str, dict[str, Any]]:
    cart_id, sku = world.cart()
    return "PUT", f"/api/carts/{cart_id}/items/{sku}", {"quantity": 5}


Setup = Callable[[World], tuple[str, str, dict[str, Any]]]


@pytest.mark.parametrize(
    ("setup", "who"),
    [
        (_add_product, STAFF),
        (_open_cart, ALICE),
        (_add_item, ALICE),
        (_check_out, ALICE),
        (_pay, ALICE),
        (_set_quantity, ALICE),
    ],
    ids=["add-product", "open-cart", "add-item", "check-out", "pay", "set-quantity"],
)
def test_a_repeat_gets_the_first_answer_and_records_nothing(
    client: TestClient, world: World, shop: Shop, setup: Setup, who: dict[str, str]
) -> None:
    method, path, body = setup(world)
    first = client.request(method, path, json=body, headers=keyed(who, "k-1"))
    assert first.status_code in (200, 201), first.text
    head = shop.head()
    assert first.json()["position"] == head
    # Another change meanwhile: the repeat must still show the state the first made.
    world.product()
    head = shop.head()
    for _ in range(2):
        again = client.request(method, path, json=body, headers=keyed(who, "k-1"))
        assert answer(again) == answer(first)
    assert shop.head() == head


def test_without_a_key_a_repeat_is_a_new_command(client: TestClient, shop: Shop) -> None:
    first = client.post("/api/carts", json={}, headers=ALICE)
    second = client.post("/api/carts", json={}, headers=ALICE)
    assert first.json()["id"] != second.json()["id"]
    assert shop.head() == 2


def test_json_spacing_and_key_order_do_not_make_another_request(
    client: TestClient, shop: Shop
) -> None:
    headers = {**keyed(STAFF, "k-format"), "Content-Type": "application/json"}
    first = client.post(
        "/api/products", content=b'{"sku":"A-1","name":"A","price":"1.00"}', headers=headers
    )
    head = shop.head()
    again = client.post(
        "/api/products",
        content=b'{ "price": "1.00",\n  "name": "A", "sku": "A-1" }',
        headers=headers,
    )
    assert answer(again) == answer(first)
    assert shop.head() == head


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"),
    [
        ("POST", "/api/carts/{cart}/items", {"sku": "{sku}", "quantity": 3}, {}),
        ("POST", "/api/carts/{cart}/items", {"sku": "{sku}", "quantity": 1}, {"If-Match": '"2"'}),
        ("PUT", "/api/carts/{cart}/items/{sku}", {"quantity": 1}, {}),
        ("POST", "/api/carts", {}, {}),
    ],
    ids=["other-body", "other-if-match", "other-route", "other-path"],
)
def test_the_same_key_for_another_request_is_refused(
    client: TestClient,
    world: World,
    shop: Shop,
    method: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> None:
    cart_id, sku = world.cart()
    first = client.post(
        f"/api/carts/{cart_id}/items",
        json={"sku": sku, "quantity": 1},
        headers=keyed(ALICE, "k-2"),
    )
    assert first.status_code == 200, first.text
    head = shop.head()
    fill = {"cart": cart_id, "sku": sku}
    other = {k: v.format(**fill) if isinstance(v, str) else v for k, v in body.items()}
    response = client.request(
        method, path.format(**fill), json=other, headers={**keyed(ALICE, "k-2"), **headers}
    )
    problem = problem_of(response, 422)
    assert fields_of(problem) == {KEY}
    assert problem["type"].endswith("/idempotency-key-reused")
    assert shop.head() == head


def test_keys_belong_to_their_caller(client: TestClient, shop: Shop) -> None:
    alices = client.post("/api/carts", json={}, headers=keyed(ALICE, "k-shared"))
    bobs = client.post("/api/carts", json={}, headers=keyed(BOB, "k-shared"))
    # Bob neither replays Alice's answer nor learns that she used the key.
    assert bobs.status_code == 201
    assert bobs.json()["customer_id"] == "bob" != alices.json()["customer_id"]
    assert shop.head() == 2


def test_a_refused_command_keeps_no_key(client: TestClient, world: World, shop: Shop) -> None:
    cart_id, sku = world.cart(sku=world.product(units=0))
    path = f"/api/carts/{cart_id}/checkout"
    refused = client.post(path, json=CHECKOUT, headers=keyed(ALICE, "k-3"))
    assert problem_of(refused, 409)["type"].endswith("/insufficient-stock")
    world.call("POST", f"/api/stock/{sku}/receipts", STAFF, {"quantity": 1})
    head = shop.head()
    # Now it is allowed, and the key is free: it executes rather than replaying a refusal.
    done = client.post(path, json=CHECKOUT, headers=keyed(ALICE, "k-3"))
    assert done.status_code == 201, done.text
    assert shop.head() == head + 3


@on_sqlite
def test_a_malformed_key_is_refused(client: TestClient, shop: Shop) -> None:
    for bad in ("two words", "x" * 256, ""):
        problem = problem_of(client.post("/api/carts", json={}, headers=keyed(ALICE, bad)), 422)
        assert fields_of(problem) == {KEY}
    assert shop.head() == 0


@on_sqlite
def test_a_key_on_a_safe_request_is_ignored(client: TestClient, world: World) -> None:
    sku = world.product()
    response = client.get(f"/api/products/{sku}", headers=keyed(STAFF, "two words"))
    assert response.status_code == 200


def test_the_key_is_stored_with_the_events_of_its_command(client: TestClient, shop: Shop) -> None:
    response = client.post("/api/carts", json={}, headers=keyed(ALICE, "k-4"))
    record = shop.recorder.select_key("alice", "k-4")  # type: ignore[attr-defined]
    assert record is not None
    assert (record.aggregate_id, record.aggregate_version, record.position) == (
        uuid.UUID(response.json()["id"]),
        1,
        shop.head(),
    )


def test_the_key_is_not_stored_if_the_events_are_not(
    client: TestClient, shop: Shop, world: World
) -> None:
    sku = world.product()
    # A rival's write lands between this command's load and its save, every time: the
    # command gives up, and its key must not have been stored without its events.
    rival_stock = shop.stock

    def stale_stock(sku_: str) -> Any:
        stock = rival_stock(sku_)
        other = rival_stock(sku_)
        other.receive(1, "rival")
        shop.save(other)
        return stock

    shop.stock = stale_stock  # type: ignore[method-assign]
    try:
        response = client.post(
            f"/api/stock/{sku}/receipts", json={"quantity": 5}, headers=keyed(STAFF, "k-5")
        )
    finally:
        del shop.stock
    problem_of(response, 409)
    assert shop.recorder.select_key("staff-1", "k-5") is None  # type: ignore[attr-defined]


# --- two requests with one key at the same time ---------------------------------------------


def race(
    client: TestClient, shop: Shop, method: str, path: str, body: Any, who: dict[str, str]
) -> list[httpx.Response]:
    """Send the same keyed request twice at once; both look the key up before either saves.

    The barrier sits after each request's first look-up, so both find nothing and both
    execute: what keeps the second from being recorded is the key's own constraint.
    """
    barrier = threading.Barrier(2, timeout=10)
    find = shop.keys.find
    waited: set[int] = set()

    def find_then_wait(*args: Any) -> Any:
        found = find(*args)
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            barrier.wait()
        return found

    shop.keys.find = find_then_wait  # type: ignore[method-assign, assignment]
    start = threading.Barrier(2, timeout=10)
    answers: list[httpx.Response] = []

    def send() -> None:
        start.wait()
        answers.append(client.request(method, path, json=body, headers=keyed(who, "k-race")))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    del shop.keys.find
    assert len(answers) == 2
    return answers


def race_target(command: str, world: World) -> tuple[str, Any, dict[str, str], int]:
    """Path, body, caller and number of events of one execution of ``command``."""
    if command == "open_cart":
        # Nothing else conflicts here: a second cart would have a fresh id.
        return "/api/carts", {}, ALICE, 1
    if command == "receive_stock":
        return f"/api/stock/{world.product()}/receipts", {"quantity": 7}, STAFF, 1
    cart_id, _ = world.cart()
    return f"/api/carts/{cart_id}/checkout", CHECKOUT, ALICE, 3


@pytest.mark.parametrize("command", ["open_cart", "receive_stock", "check_out"])
def test_two_concurrent_requests_with_one_key_execute_once(
    client: TestClient, world: World, shop: Shop, command: str
) -> None:
    path, body, who, events = race_target(command, world)
    head = shop.head()
    before = command_outcomes(client, command)
    first, second = race(client, shop, "POST", path, body, who)
    assert first.status_code in (200, 201), first.text
    assert answer(first) == answer(second), (first.text, second.text)
    assert shop.head() == head + events
    assert first.json()["position"] == head + events
    # Both executed (the barrier saw to it); the loser, beaten on the key, on its events
    # or on the state the winner left, found the key and replayed the winner's answer.
    after = command_outcomes(client, command)
    assert after - before == Counter({"ok": 1, "replayed": 1})


def command_outcomes(client: TestClient, command: str) -> Counter[str]:
    """How often ``command`` ended with each outcome, per /metrics."""
    return Counter(
        {
            sample.labels["outcome"]: int(sample.value)
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for sample in family.samples
            if sample.name == "eventshop_commands_total" and sample.labels["command"] == command
        }
    )


# --- expiry ---------------------------------------------------------------------------------


def test_an_expired_key_is_ignored_then_purged(database_url: str, tmp_path: Path) -> None:
    ttl = 0.5
    app = make_app(database_url, tmp_path, idempotency_ttl_seconds=ttl)
    shop: Shop = app.state.shop
    assert shop.keys.ttl == timedelta(seconds=ttl)
    # No purging by the way until said so: the expired rows stay to be replaced.
    shop.keys.purge_every = timedelta(hours=1)
    with TestClient(app) as client:
        first = client.post("/api/carts", json={}, headers=keyed(ALICE, "k-old"))
        client.post("/api/carts", json={}, headers=keyed(BOB, "k-old"))
        assert answer(client.post("/api/carts", json={}, headers=keyed(ALICE, "k-old"))) == (
            answer(first)
        )
        time.sleep(ttl + 0.2)
        head = shop.head()
        again = client.post("/api/carts", json={}, headers=keyed(ALICE, "k-old"))
        # Executed anew, and its key replaced the expired one in the same transaction.
        assert again.status_code == 201
        assert again.json()["id"] != first.json()["id"]
        # One event more (its position may skip: a first try at writing it, which
        # found the expired key, was rolled back).
        assert len(shop.recorder.select_notifications(start=head + 1, limit=10)) == 1
        assert answer(client.post("/api/carts", json={}, headers=keyed(ALICE, "k-old"))) == (
            answer(again)
        )
        # Bob's key expired and nobody came back for it: purging deletes it alone.
        assert shop.purge_idempotency_keys() == 1
        assert shop.recorder.select_key("bob", "k-old") is None  # type: ignore[attr-defined]
        assert shop.recorder.select_key("alice", "k-old") is not None  # type: ignore[attr-defined]

        # Commands also purge, now and then, on their way.
        client.post("/api/carts", json={}, headers=keyed(BOB, "k-later"))
        time.sleep(ttl + 0.2)
        shop.keys.purge_every = timedelta(0)
        client.post("/api/carts", json={}, headers=keyed(ALICE, "k-new"))
        assert shop.recorder.select_key("bob", "k-later") is None  # type: ignore[attr-defined]


def test_the_ttl_comes_from_the_settings(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path, idempotency_ttl_seconds=90)
    keys: IdempotencyKeys = app.state.shop.keys
    assert keys.ttl == timedelta(seconds=90)
    app.state.shop.close()


# --- the service on every store, in-memory included -------------------------------------------


@pytest.fixture
def service(store_url: str) -> Iterator[Shop]:
    the_shop = open_shop(store_url)
    yield the_shop
    the_shop.close()


def test_the_service_replays_on_every_store(service: Shop) -> None:
    with caused_by("alice", "customer"), idempotent("k-svc", "fingerprint-1"):
        first = service.open_cart("alice")
        again = service.open_cart("alice")
    assert (again.aggregate.id, again.position, again.replayed) == (
        first.aggregate.id,
        first.position,
        True,
    )
    assert service.head() == 1
    with (
        caused_by("alice", "customer"),
        idempotent("k-svc", "fingerprint-2"),
        pytest.raises(IdempotencyKeyReused),
    ):
        service.open_cart("alice")


def test_two_concurrent_commands_with_one_key_run_once_on_every_store(service: Shop) -> None:
    barrier = threading.Barrier(2, timeout=10)
    done: list[Any] = []

    def open_cart() -> None:
        with caused_by("alice", "customer"), idempotent("k-both", "fingerprint"):
            barrier.wait()
            done.append(service.open_cart("alice"))

    threads = [threading.Thread(target=open_cart) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(done) == 2
    assert {(d.aggregate.id, d.position) for d in done} == {(done[0].aggregate.id, 1)}
    assert service.head() == 1
