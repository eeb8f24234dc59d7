"""Events stored by the v1 schema load with today's code, and are never rewritten.

``fixtures/events_v1.json`` holds the records the old code really stored (see
``fixtures/make_v1_events.py``). They are written byte for byte into a fresh SQLite
and a fresh PostgreSQL store through the recorder, then read and acted on by the v2
code: money amounts now name their currency, and v1 events are upcast to euros on
every read while their stored bytes stay as they were.

Events stored before ``eventstore/causes.py`` existed carry no ``__cause__``; each
test runs on the fixture as stored and on the fixture without that key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from commands.service import Shop
from domain.errors import InvalidValue, RuleBroken
from domain.order import CANCELLED, DELIVERED, PAID, PLACED, Order
from domain.product import Product
from domain.values import Address
from eventshop import bootstrap
from eventstore.causes import Cause
from tests.conftest import open_shop, settings_for

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "events_v1.json").read_text())
RECORDS: list[dict[str, Any]] = FIXTURE["events"]
IDS: dict[str, str] = FIXTURE["ids"]
ADDRESS = Address("Bob", "3 Side St", "Paris", "75001", "FR")


def v1_events(with_cause: bool) -> list[StoredEvent]:
    """The fixture's records as stored events; without the cause key if asked."""

    def state(text: str) -> bytes:
        if with_cause:
            return text.encode()
        bare = {k: v for k, v in json.loads(text).items() if k != "__cause__"}
        return json.dumps(bare, separators=(",", ":"), ensure_ascii=False).encode()

    return [
        StoredEvent(
            originator_id=UUID(r["originator_id"]),
            originator_version=r["originator_version"],
            topic=r["topic"],
            state=state(r["state"]),
        )
        for r in RECORDS
    ]


def stored_log(shop: Shop, upto: int) -> list[tuple[int, UUID, int, str, bytes]]:
    return [
        (n.id, UUID(str(n.originator_id)), n.originator_version, n.topic, bytes(n.state))
        for n in shop.recorder.select_notifications(start=1, limit=upto, stop=upto)
    ]


@pytest.fixture(params=["sqlite", "pg"])
def fresh_url(request: pytest.FixtureRequest) -> str:
    """An empty SQLite file, then an empty PostgreSQL schema."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=[True, False], ids=["with-cause", "without-cause"])
def with_cause(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def old_shop(fresh_url: str, with_cause: bool) -> Iterator[Shop]:
    """A v2 shop over a store that holds exactly the events v1 stored."""
    shop = open_shop(fresh_url)
    shop.recorder.insert_events(v1_events(with_cause))
    yield shop
    shop.close()


def test_the_fixture_is_really_v1() -> None:
    """Guards against regenerating the fixture with v2 code: it must stay the old schema."""
    for record in RECORDS:
        state = json.loads(record["state"])
        assert "class_version" not in state and "currency" not in state, record["topic"]
        assert "__cause__" in state
    assert [r["id"] for r in RECORDS] == list(range(1, len(RECORDS) + 1))
    topics = {r["topic"] for r in RECORDS}
    assert {"domain.order:Order.Placed", "domain.product:Product.Added"} <= topics


def test_every_old_aggregate_loads(old_shop: Shop, with_cause: bool) -> None:
    # Inserted in order into an empty store: the positions are the old ones too.
    assert stored_log(old_shop, len(RECORDS)) == [
        (r["id"], e.originator_id, e.originator_version, e.topic, e.state)
        for r, e in zip(RECORDS, v1_events(with_cause), strict=True)
    ]
    last_version: dict[UUID, int] = {}
    for record in RECORDS:
        last_version[UUID(record["originator_id"])] = record["originator_version"]
    for aggregate_id, version in last_version.items():
        assert old_shop.repository.get(aggregate_id).version == version
    statuses = {name: old_shop.order(UUID(IDS[name])).status for name in IDS if "order" in name}
    assert statuses == {
        "delivered_order": DELIVERED,
        "cancelled_order": CANCELLED,
        "refunded_order": CANCELLED,
        "placed_order": PLACED,
        "paid_order": PAID,
    }
    assert old_shop.order(UUID(IDS["refunded_order"])).refund == Decimal("42.00")
    assert old_shop.product("TEE-BLK").price == Decimal("21.00")
    assert old_shop.product("POSTER-A2").name == "Poster A2 (matte)"
    stock = {s: old_shop.stock(s) for s in ("MUG-RED", "TEE-BLK", "POSTER-A2")}
    assert {s: (st.on_hand, st.reserved) for s, st in stock.items()} == {
        "MUG-RED": (16, 3),
        "TEE-BLK": (4, 1),
        "POSTER-A2": (3, 1),
    }
    assert old_shop.cart(UUID(IDS["open_cart"])).is_open


def test_upcast_events_carry_euros(old_shop: Shop, with_cause: bool) -> None:
    upcast = 0
    for stored in old_shop.recorder.select_notifications(start=1, limit=len(RECORDS)):
        event, cause = old_shop.mapper.decode(stored)  # type: ignore[attr-defined]
        assert (cause is not None) == with_cause
        if with_cause:
            assert isinstance(cause, Cause) and cause.actor
        assert not hasattr(event, "__cause__")
        if isinstance(event, Order.Placed | Product.Added):
            assert event.currency == "EUR"
            upcast += 1
    assert upcast == 5 + 3
    for name in ("delivered_order", "cancelled_order", "refunded_order", "placed_order"):
        assert old_shop.order(UUID(IDS[name])).currency == "EUR"
    assert {old_shop.product(s).currency for s in ("MUG-RED", "TEE-BLK", "POSTER-A2")} == {"EUR"}


def test_new_commands_act_on_old_aggregates_and_never_rewrite_them(
    old_shop: Shop, fresh_url: str
) -> None:
    before = stored_log(old_shop, len(RECORDS))
    placed, paid = UUID(IDS["placed_order"]), UUID(IDS["paid_order"])
    owner = IDS["open_cart_owner"]

    # A v1 placed order is paid, shipped and delivered; a v1 paid order is cancelled.
    old_shop.pay(placed, old_shop.order(placed).total, "PAY-NEW-1")
    old_shop.ship(placed, "UPS", "1Z-NEW")
    assert old_shop.deliver(placed).aggregate.status == DELIVERED
    cancelled = old_shop.cancel(paid, "customer asked").aggregate
    assert (cancelled.status, cancelled.refund, cancelled.currency) == (
        CANCELLED,
        Decimal("21.00"),
        "EUR",
    )
    # The v1 cart that was short of posters checks out now that more arrived.
    old_shop.receive_stock("POSTER-A2", 10, "delivery 2")
    cart_id = UUID(IDS["open_cart"])
    order = old_shop.check_out(cart_id, ADDRESS, "bob@example.com", owner=owner).aggregate
    assert (order.currency, order.total) == ("EUR", Decimal("47.50"))
    old_shop.change_product("MUG-RED", price="13.00")
    old_shop.add_product("CAP-1", "Cap", "15.00")

    stock = {s: old_shop.stock(s) for s in ("MUG-RED", "TEE-BLK", "POSTER-A2")}
    assert {s: (st.on_hand, st.reserved) for s, st in stock.items()} == {
        "MUG-RED": (13, 1),
        "TEE-BLK": (4, 0),
        "POSTER-A2": (12, 5),
    }
    # Nothing stored by v1 was touched: same positions, same bytes.
    assert stored_log(old_shop, len(RECORDS)) == before
    # What the new code stored names its version and its currency.
    new = old_shop.recorder.select_notifications(start=len(RECORDS) + 1, limit=100)
    created = {
        n.topic: json.loads(n.state)
        for n in new
        if n.topic in ("domain.order:Order.Placed", "domain.product:Product.Added")
    }
    assert set(created) == {"domain.order:Order.Placed", "domain.product:Product.Added"}
    for state in created.values():
        assert state["class_version"] >= 2 and state["currency"] == "EUR"
        assert "__cause__" in state
    # v1 and v2 events read back alike through a second shop over the same store.
    with open_shop(fresh_url) as reread:
        assert reread.order(order.id).currency == reread.order(placed).currency == "EUR"


def test_a_shop_sells_in_its_configured_currency(sqlite_url: str) -> None:
    with bootstrap.open_shop(settings_for(sqlite_url, currency="CHF")) as shop:
        assert shop.add_product("MUG-1", "Mug", "9.00").aggregate.currency == "CHF"
        shop.receive_stock("MUG-1", 5)
        cart_id = shop.open_cart("c1").aggregate.id
        shop.add_to_cart(cart_id, "MUG-1", 2)
        order = shop.check_out(cart_id, ADDRESS, "c1@example.com").aggregate
        assert (order.currency, order.total) == ("CHF", Decimal("18.00"))


def test_a_product_priced_in_another_currency_is_not_sold(old_shop: Shop, fresh_url: str) -> None:
    """The v1 catalogue is in euros: a shop reconfigured to dollars must not sell it as dollars."""
    with bootstrap.open_shop(settings_for(fresh_url, currency="USD")) as usd:
        cart_id = usd.open_cart("c1").aggregate.id
        with pytest.raises(RuleBroken, match="priced in EUR, not in USD"):
            usd.add_to_cart(cart_id, "MUG-RED", 1)
        assert usd.cart(cart_id).lines == {}


def test_a_malformed_shop_currency_is_refused_at_start(sqlite_url: str) -> None:
    with pytest.raises(InvalidValue, match="ISO 4217"):
        bootstrap.open_shop(settings_for(sqlite_url, currency="euro"))
