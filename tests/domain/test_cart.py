"""Cart: open carts change; lines are bounded; prices are captured when added."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from domain.cart import MAX_LINES, Cart
from domain.errors import InvalidValue, NotFound, RuleBroken
from domain.values import MAX_QUANTITY
from tests.domain.scenario import Fact, ev, given

ORDER = UUID("00000000-0000-0000-0000-0000000000a1")
OPENED = ev(Cart.Opened, customer_id="cus-1")
CHECKED_OUT = ev(Cart.CheckedOut, order_id=ORDER)


def added(sku: str, units: int, price: str = "2.50") -> Fact:
    return ev(Cart.ItemAdded, sku=sku, quantity=units, unit_price=Decimal(price))


def test_a_cart_is_opened_for_a_customer() -> None:
    cart = given().when(lambda _: Cart.open(" cus-1 ")).then(OPENED)
    assert (cart.customer_id, cart.lines, cart.status, cart.total) == (
        "cus-1",
        {},
        "open",
        Decimal("0.00"),
    )


def test_a_cart_needs_a_customer() -> None:
    given().when(lambda _: Cart.open("")).then_raises(InvalidValue, field="customer_id")


def test_an_item_is_added_at_the_price_given_when_it_is_added() -> None:
    cart = (
        given(OPENED)
        .when(lambda c: c.add_item("MUG-1", 2, Decimal("12.50")))
        .then(added("MUG-1", 2, "12.50"))
    )
    assert cart.lines["MUG-1"].quantity == 2
    assert cart.lines["MUG-1"].unit_price == Decimal("12.50")
    assert cart.total == Decimal("25.00")


def test_adding_to_a_line_adds_units_and_captures_the_latest_price() -> None:
    cart = (
        given(OPENED, added("MUG-1", 2, "12.50"))
        .when(lambda c: c.add_item("MUG-1", 3, Decimal("10.00")))
        .then(added("MUG-1", 3, "10.00"))
    )
    assert (cart.lines["MUG-1"].quantity, cart.lines["MUG-1"].unit_price) == (5, Decimal("10.00"))
    assert cart.total == Decimal("50.00")


def test_the_total_sums_every_line() -> None:
    cart = (
        given(OPENED, added("MUG-1", 2, "12.50"))
        .when(lambda c: c.add_item("CUP-1", 3, Decimal("0.99")))
        .then(added("CUP-1", 3, "0.99"))
    )
    assert cart.total == Decimal("27.97")


@pytest.mark.parametrize(
    ("sku", "units", "price", "field"),
    [
        ("mug", 1, Decimal("1.00"), "sku"),
        ("MUG-1", 0, Decimal("1.00"), "quantity"),
        ("MUG-1", MAX_QUANTITY + 1, Decimal("1.00"), "quantity"),
        ("MUG-1", 1.0, Decimal("1.00"), "quantity"),
        ("MUG-1", 1, 1.5, "unit_price"),
        ("MUG-1", 1, Decimal("1.005"), "unit_price"),
        ("MUG-1", 1, Decimal("-1.00"), "unit_price"),
    ],
)
def test_an_item_with_a_bad_sku_quantity_or_price_is_refused(
    sku: str, units: Any, price: Any, field: str
) -> None:
    given(OPENED).when(lambda c: c.add_item(sku, units, price)).then_raises(
        InvalidValue, field=field
    )


def test_a_line_holds_at_most_the_quantity_limit() -> None:
    history = (OPENED, added("MUG-1", MAX_QUANTITY - 1))
    given(*history).when(lambda c: c.add_item("MUG-1", 1, Decimal("2.50"))).then(added("MUG-1", 1))
    given(*history).when(lambda c: c.add_item("MUG-1", 2, Decimal("2.50"))).then_raises(
        InvalidValue, match=f"would reach {MAX_QUANTITY + 1} units", field="quantity"
    )


def test_a_cart_holds_at_most_the_line_limit() -> None:
    full = [OPENED] + [added(f"SKU-{n}", 1) for n in range(MAX_LINES)]
    given(*full).when(lambda c: c.add_item("ONE-MORE", 1, Decimal("1.00"))).then_raises(
        RuleBroken, match=f"at most {MAX_LINES} lines"
    )
    # A full cart still takes more units of a line it already holds.
    given(*full).when(lambda c: c.add_item("SKU-0", 1, Decimal("2.50"))).then(added("SKU-0", 1))


def test_a_quantity_is_set() -> None:
    cart = (
        given(OPENED, added("MUG-1", 2))
        .when(lambda c: c.set_quantity("MUG-1", 7))
        .then(ev(Cart.QuantityChanged, sku="MUG-1", quantity=7))
    )
    assert cart.lines["MUG-1"].quantity == 7
    assert cart.lines["MUG-1"].unit_price == Decimal("2.50")


def test_setting_the_same_quantity_records_nothing() -> None:
    given(OPENED, added("MUG-1", 2)).when(lambda c: c.set_quantity("MUG-1", 2)).then()


def test_setting_a_quantity_of_zero_removes_the_line() -> None:
    cart = (
        given(OPENED, added("MUG-1", 2))
        .when(lambda c: c.set_quantity("MUG-1", 0))
        .then(ev(Cart.ItemRemoved, sku="MUG-1"))
    )
    assert cart.lines == {}


@pytest.mark.parametrize("bad", [-1, MAX_QUANTITY + 1, "3"])
def test_a_quantity_outside_the_bounds_is_refused(bad: Any) -> None:
    given(OPENED, added("MUG-1", 2)).when(lambda c: c.set_quantity("MUG-1", bad)).then_raises(
        InvalidValue, field="quantity"
    )


def test_the_quantity_of_a_line_the_cart_lacks_cannot_be_set() -> None:
    given(OPENED, added("MUG-1", 2)).when(lambda c: c.set_quantity("CUP-1", 1)).then_raises(
        NotFound, match="no line for SKU CUP-1"
    )


def test_a_line_is_removed() -> None:
    cart = (
        given(OPENED, added("MUG-1", 2), added("CUP-1", 1))
        .when(lambda c: c.remove_item("MUG-1"))
        .then(ev(Cart.ItemRemoved, sku="MUG-1"))
    )
    assert list(cart.lines) == ["CUP-1"]


def test_a_line_the_cart_lacks_cannot_be_removed() -> None:
    given(OPENED).when(lambda c: c.remove_item("MUG-1")).then_raises(NotFound)
    given(OPENED, added("MUG-1", 1), ev(Cart.ItemRemoved, sku="MUG-1")).when(
        lambda c: c.remove_item("MUG-1")
    ).then_raises(NotFound)


def test_a_cart_with_lines_is_checked_out_into_an_order() -> None:
    cart = given(OPENED, added("MUG-1", 2)).when(lambda c: c.check_out(ORDER)).then(CHECKED_OUT)
    assert (cart.is_open, cart.status, cart.order_id) == (False, "checked_out", ORDER)


def test_an_empty_cart_cannot_be_checked_out() -> None:
    given(OPENED).when(lambda c: c.check_out(ORDER)).then_raises(RuleBroken, match="empty cart")
    given(OPENED, added("MUG-1", 2), ev(Cart.ItemRemoved, sku="MUG-1")).when(
        lambda c: c.check_out(ORDER)
    ).then_raises(RuleBroken, match="empty cart")


def test_a_checked_out_cart_no_longer_changes() -> None:
    closed = (OPENED, added("MUG-1", 2), CHECKED_OUT)
    for command in (
        lambda c: c.add_item("CUP-1", 1, Decimal("1.00")),
        lambda c: c.set_quantity("MUG-1", 3),
        lambda c: c.set_quantity("MUG-1", 0),
        lambda c: c.remove_item("MUG-1"),
        lambda c: c.check_out(ORDER),
    ):
        given(*closed).when(command).then_raises(
            RuleBroken, match="checked out", status="checked_out"
        )
