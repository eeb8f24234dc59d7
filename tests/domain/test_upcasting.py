"""Event schema v2: amounts name their currency; v1 events are upcast to euros when read.

The v1 events here are the ones the old code really stored (``tests/fixtures``),
decoded by the library's own mapper exactly as the repository decodes them.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)

from domain.errors import InvalidValue, RuleBroken
from domain.order import DEFAULT_PAYMENT_WINDOW, PAID, Order
from domain.product import Product
from domain.values import V1_CURRENCY, Address, currency_code
from tests.domain.scenario import ev, given

FIXTURE = Path(__file__).parents[1] / "fixtures" / "events_v1.json"
ADDRESS = Address(name="Ada", line1="1 Main St", city="Berlin", postal_code="10115", country="DE")


def mapper() -> Mapper[UUID]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return Mapper(transcoder)


def v1_history(topic_prefix: str) -> list[StoredEvent]:
    """The stored events of the first aggregate whose creating event has that topic."""
    records = json.loads(FIXTURE.read_text())["events"]
    first = next(r for r in records if r["topic"].startswith(topic_prefix))
    return [
        StoredEvent(
            originator_id=UUID(r["originator_id"]),
            originator_version=r["originator_version"],
            topic=r["topic"],
            # Events stored before eventstore/causes.py carried no cause: decode them bare.
            state=json.dumps(
                {k: v for k, v in json.loads(r["state"]).items() if k != "__cause__"},
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode(),
        )
        for r in records
        if r["originator_id"] == first["originator_id"]
    ]


def replay(stored: list[StoredEvent]) -> Any:
    aggregate = None
    for record in stored:
        aggregate = mapper().to_domain_event(record).mutate(aggregate)  # type: ignore[attr-defined]
    return aggregate


@pytest.mark.parametrize("cls", [Order.Placed, Product.Added])
def test_events_with_amounts_are_at_version_2(cls: type[Any]) -> None:
    assert cls.class_version >= 2  # Order.Placed: 3, with its payment_due_at
    assert "currency" in {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls", [Order.Placed, Product.Added])
def test_upcast_v1_v2_adds_euros_and_changes_nothing_else(cls: type[Any]) -> None:
    state: dict[str, Any] = {"total": Decimal("9.99"), "sku": "MUG-1", "__cause__": {"a": 1}}
    cls.upcast_v1_v2(state)
    assert state == {
        "total": Decimal("9.99"),
        "sku": "MUG-1",
        "__cause__": {"a": 1},
        "currency": "EUR",
    }
    assert V1_CURRENCY == "EUR"


def test_a_stored_v1_order_replays_in_euros_and_still_takes_commands() -> None:
    stored = v1_history("domain.order:Order.Placed")
    assert b'"currency"' not in stored[0].state and b"class_version" not in stored[0].state
    placed = mapper().to_domain_event(stored[0])
    assert isinstance(placed, Order.Placed)
    assert (placed.currency, placed.total) == ("EUR", Decimal("46.00"))
    order = replay(stored)
    assert order.currency == "EUR"
    # The fixture's first order was paid, shipped and delivered by the old code.
    assert (order.status, order.version) == ("delivered", 4)
    first_v1 = replay(stored[:1])
    first_v1.pay("46.00", "psp-new")
    assert first_v1.status == PAID


def test_an_order_stored_before_payment_windows_is_due_the_default_window_after_placing() -> None:
    placed = mapper().to_domain_event(v1_history("domain.order:Order.Placed")[0])
    assert isinstance(placed, Order.Placed)
    assert placed.payment_due_at == placed.timestamp + DEFAULT_PAYMENT_WINDOW


def test_a_stored_v1_product_replays_in_euros() -> None:
    product = replay(v1_history("domain.product:Product.Added"))
    assert (product.sku, product.price, product.currency) == ("MUG-RED", Decimal("12.50"), "EUR")


def test_a_new_order_records_its_currency() -> None:
    order = Order.place(
        "cus-1",
        UUID(int=1),
        {"MUG-1": (1, Decimal("2.00"))},
        ADDRESS,
        "a@b.c",
        currency="CHF",
        payment_due_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    (placed,) = order.collect_events()
    assert (placed.currency, order.currency) == ("CHF", "CHF")
    encoded = mapper().to_stored_event(placed)
    assert json.loads(encoded.state)["class_version"] == 3


def test_a_new_product_records_its_currency() -> None:
    given().when(lambda _: Product.add("MUG-1", "Mug", "1.00", currency="USD")).then(
        ev(Product.Added, sku="MUG-1", name="Mug", price=Decimal("1.00"), currency="USD")
    )


@pytest.mark.parametrize("bad", ["eur", "EURO", "", "E1R", None])
def test_a_malformed_currency_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidValue) as caught:
        currency_code(bad)
    assert caught.value.field == "currency"
    given().when(lambda _: Product.add("MUG-1", "Mug", "1.00", currency=bad)).then_raises(
        InvalidValue, field="currency"
    )


def test_a_price_is_quoted_only_in_the_products_currency() -> None:
    mug = ev(Product.Added, sku="MUG-1", name="Mug", price=Decimal("12.50"), currency="EUR")
    assert given(mug).when(lambda p: p.price_in("EUR")).then().price == Decimal("12.50")
    given(mug).when(lambda p: p.price_in("USD")).then_raises(
        RuleBroken, match="priced in EUR, not in USD", sku="MUG-1", currency="EUR"
    )
