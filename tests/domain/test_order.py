"""Order: placed, paid, shipped, delivered, or cancelled before shipment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from domain.base import named_id
from domain.errors import InvalidValue, RuleBroken
from domain.order import CANCELLED, DELIVERED, PAID, PLACED, SHIPPED, Order
from domain.values import MAX_PRICE, Address
from tests.domain.scenario import Fact, ev, given

CART = UUID("00000000-0000-0000-0000-0000000000c1")
DUE = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
ADDRESS = Address(name="Ada", line1="1 Main St", city="Berlin", postal_code="10115", country="DE")
LINES = [
    {"sku": "CUP-1", "quantity": 1, "unit_price": Decimal("0.99"), "subtotal": Decimal("0.99")},
    {"sku": "MUG-1", "quantity": 2, "unit_price": Decimal("12.50"), "subtotal": Decimal("25.00")},
]
PLACED_EVENT = ev(
    Order.Placed,
    customer_id="cus-1",
    cart_id=CART,
    lines=LINES,
    total=Decimal("25.99"),
    shipping_address=ADDRESS.as_dict(),
    email="ada@example.org",
    currency="EUR",
    payment_due_at=DUE,
)
PAID_EVENT = ev(Order.Paid, amount=Decimal("25.99"), reference="psp-1")
SHIPPED_EVENT = ev(Order.Shipped, carrier="DHL", tracking_number="T1")
DELIVERED_EVENT = ev(Order.Delivered)
HISTORY: dict[str, tuple[Fact, ...]] = {
    PLACED: (PLACED_EVENT,),
    PAID: (PLACED_EVENT, PAID_EVENT),
    SHIPPED: (PLACED_EVENT, PAID_EVENT, SHIPPED_EVENT),
    DELIVERED: (PLACED_EVENT, PAID_EVENT, SHIPPED_EVENT, DELIVERED_EVENT),
    CANCELLED: (PLACED_EVENT, ev(Order.Cancelled, reason="changed my mind", refund=None)),
}


def place(**overrides: Any) -> Order:
    args: dict[str, Any] = {
        "customer_id": "cus-1",
        "cart_id": CART,
        "lines": {"MUG-1": (2, Decimal("12.50")), "CUP-1": (1, Decimal("0.99"))},
        "shipping_address": ADDRESS,
        "email": "ada@example.org",
        "currency": "EUR",
        "payment_due_at": DUE,
    }
    return Order.place(**{**args, **overrides})


def test_an_order_is_placed_with_its_lines_total_and_address() -> None:
    order = given().when(lambda _: place()).then(PLACED_EVENT)
    assert order.id == Order.create_id(CART) == named_id("order", str(CART))
    assert (order.status, order.total, order.skus) == (PLACED, Decimal("25.99"), ["CUP-1", "MUG-1"])
    assert Address.from_dict(order.shipping_address) == ADDRESS


def test_an_order_needs_lines() -> None:
    given().when(lambda _: place(lines={})).then_raises(RuleBroken, match="at least one line")


@pytest.mark.parametrize("bad", ["ada.example.org", "a@" + "x" * 253, None])
def test_an_order_needs_an_email_address(bad: Any) -> None:
    given().when(lambda _: place(email=bad)).then_raises(InvalidValue, field="email")


def test_an_order_is_paid_its_exact_total() -> None:
    order = given(PLACED_EVENT).when(lambda o: o.pay("25.99", " psp-1 ")).then(PAID_EVENT)
    assert (order.status, order.payment_reference) == (PAID, "psp-1")


@pytest.mark.parametrize("amount", ["25.98", "26.00", "0.00", "259.90"])
def test_a_payment_that_does_not_match_the_total_is_refused(amount: str) -> None:
    given(PLACED_EVENT).when(lambda o: o.pay(amount, "psp-1")).then_raises(
        RuleBroken, match="does not match", total="25.99", amount=amount
    )


def test_a_malformed_payment_is_refused() -> None:
    given(PLACED_EVENT).when(lambda o: o.pay(25.99, "psp-1")).then_raises(
        InvalidValue, field="amount"
    )
    given(PLACED_EVENT).when(lambda o: o.pay("25.99", "")).then_raises(
        InvalidValue, field="reference"
    )


def test_a_paid_order_is_shipped() -> None:
    order = given(*HISTORY[PAID]).when(lambda o: o.ship("DHL", "T1")).then(SHIPPED_EVENT)
    assert order.status == SHIPPED


def test_a_shipment_needs_a_carrier_and_a_tracking_number() -> None:
    given(*HISTORY[PAID]).when(lambda o: o.ship("", "T1")).then_raises(
        InvalidValue, field="carrier"
    )
    given(*HISTORY[PAID]).when(lambda o: o.ship("DHL", " ")).then_raises(
        InvalidValue, field="tracking_number"
    )


def test_a_shipped_order_is_delivered() -> None:
    order = given(*HISTORY[SHIPPED]).when(lambda o: o.deliver()).then(DELIVERED_EVENT)
    assert order.status == DELIVERED


def test_a_placed_order_is_cancelled_without_a_refund() -> None:
    order = (
        given(PLACED_EVENT)
        .when(lambda o: o.cancel("changed my mind"))
        .then(ev(Order.Cancelled, reason="changed my mind", refund=None))
    )
    assert (order.status, order.refund) == (CANCELLED, None)


def test_cancelling_a_paid_order_records_the_refund_of_its_total() -> None:
    order = (
        given(*HISTORY[PAID])
        .when(lambda o: o.cancel("out of stock"))
        .then(ev(Order.Cancelled, reason="out of stock", refund=Decimal("25.99")))
    )
    assert (order.status, order.refund) == (CANCELLED, Decimal("25.99"))


def test_a_cancellation_needs_a_reason() -> None:
    given(PLACED_EVENT).when(lambda o: o.cancel(" ")).then_raises(InvalidValue, field="reason")


# Every command from every state: which are allowed is the state machine.
COMMANDS: dict[str, Callable[[Order], None]] = {
    "pay": lambda o: o.pay("25.99", "psp-2"),
    "ship": lambda o: o.ship("UPS", "T2"),
    "deliver": lambda o: o.deliver(),
    "cancel": lambda o: o.cancel("why not"),
}
ALLOWED = {
    (PLACED, "pay"): PAID,
    (PLACED, "cancel"): CANCELLED,
    (PAID, "ship"): SHIPPED,
    (PAID, "cancel"): CANCELLED,
    (SHIPPED, "deliver"): DELIVERED,
}


@pytest.mark.parametrize("state", list(HISTORY))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_order_state_machine(state: str, command: str) -> None:
    scenario = given(*HISTORY[state]).when(COMMANDS[command])
    if (state, command) in ALLOWED:
        order = scenario.then(*_event_of(command, state))
        assert order.status == ALLOWED[state, command]
    else:
        error = scenario.then_raises(RuleBroken, status=state)
        assert f"is {state}" in error.detail


def _event_of(command: str, state: str) -> list[Fact]:
    return {
        "pay": [ev(Order.Paid, amount=Decimal("25.99"), reference="psp-2")],
        "ship": [ev(Order.Shipped, carrier="UPS", tracking_number="T2")],
        "deliver": [DELIVERED_EVENT],
        "cancel": [
            ev(
                Order.Cancelled,
                reason="why not",
                refund=Decimal("25.99") if state == PAID else None,
            )
        ],
    }[command]


def test_an_order_may_total_what_a_payment_may_be_and_no_more() -> None:
    # Three units at the highest price were placed, but no payment could ever match them.
    top = {"BIG-1": (1, MAX_PRICE)}
    order = (
        given()
        .when(lambda _: place(lines=top))
        .then(
            ev(
                Order.Placed,
                **{
                    **PLACED_EVENT.data,
                    "lines": [_line("BIG-1", 1, MAX_PRICE)],
                    "total": MAX_PRICE,
                },
            )
        )
    )
    order.pay(MAX_PRICE, "psp-1")
    over = {"BIG-1": (3, MAX_PRICE)}
    given().when(lambda _: place(lines=over)).then_raises(
        RuleBroken, match="at most 1000000.00", total="3000000.00", max_total="1000000.00"
    )
    cent_over = {"BIG-1": (1, MAX_PRICE), "CUP-1": (1, Decimal("0.01"))}
    given().when(lambda _: place(lines=cent_over)).then_raises(RuleBroken, total="1000000.01")


def _line(sku: str, quantity: int, price: Decimal) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "unit_price": price, "subtotal": quantity * price}
