"""Stock: receipts, adjustments, and reservations released or committed exactly once."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given as for_all
from hypothesis import settings
from hypothesis import strategies as st

from domain.base import named_id
from domain.errors import DomainError, InsufficientStock, InvalidValue, RuleBroken
from domain.stock import Stock
from tests.domain.scenario import Fact, ev, given, record, replay

ORDER = UUID("00000000-0000-0000-0000-0000000000a1")
OTHER = UUID("00000000-0000-0000-0000-0000000000b2")

CREATED = ev(Stock.Created, sku="MUG-1")


def received(units: int) -> Fact:
    return ev(Stock.Received, quantity=units, note="")


def reserved(order: UUID, units: int) -> Fact:
    return ev(Stock.Reserved, order_id=str(order), quantity=units)


# --- opening, receiving, adjusting ------------------------------------------


def test_the_stock_of_a_new_product_is_empty() -> None:
    stock = given().when(lambda _: Stock.open("MUG-1")).then(CREATED)
    assert stock.id == Stock.create_id("MUG-1") == named_id("stock", "MUG-1")
    assert (stock.on_hand, stock.reserved, stock.available) == (0, 0, 0)


def test_stock_of_a_malformed_sku_is_refused() -> None:
    given().when(lambda _: Stock.open("mug")).then_raises(InvalidValue, field="sku")


def test_goods_received_grow_on_hand() -> None:
    stock = (
        given(CREATED, received(3))
        .when(lambda s: s.receive(4, " pallet 7 "))
        .then(ev(Stock.Received, quantity=4, note="pallet 7"))
    )
    assert (stock.on_hand, stock.available) == (7, 7)


@pytest.mark.parametrize("bad", [0, -1, 1001, 2.0])
def test_a_receipt_outside_the_quantity_bounds_is_refused(bad: Any) -> None:
    given(CREATED).when(lambda s: s.receive(bad)).then_raises(InvalidValue, field="quantity")


def test_an_adjustment_corrects_on_hand_up_or_down() -> None:
    stock = (
        given(CREATED, received(10))
        .when(lambda s: s.adjust(-4, "count"))
        .then(ev(Stock.Adjusted, delta=-4, reason="count"))
    )
    assert stock.on_hand == 6
    given(CREATED).when(lambda s: s.adjust(5, "found")).then(
        ev(Stock.Adjusted, delta=5, reason="found")
    )


@pytest.mark.parametrize("bad", [0, 1001, -1001, 1.5, True])
def test_an_adjustment_needs_a_non_zero_whole_delta(bad: Any) -> None:
    given(CREATED, received(10)).when(lambda s: s.adjust(bad, "count")).then_raises(
        InvalidValue, field="delta"
    )


def test_an_adjustment_needs_a_reason() -> None:
    given(CREATED, received(10)).when(lambda s: s.adjust(-1, " ")).then_raises(
        InvalidValue, field="reason"
    )


def test_an_adjustment_may_not_take_on_hand_below_zero() -> None:
    given(CREATED, received(3)).when(lambda s: s.adjust(-4, "count")).then_raises(
        RuleBroken, sku="MUG-1", on_hand=3, reserved=0
    )


def test_an_adjustment_may_not_take_on_hand_below_what_is_reserved() -> None:
    history = (CREATED, received(10), reserved(ORDER, 6))
    given(*history).when(lambda s: s.adjust(-5, "count")).then_raises(
        RuleBroken, match="below the 6 units reserved", on_hand=10, reserved=6
    )
    stock = (
        given(*history)
        .when(lambda s: s.adjust(-4, "count"))
        .then(ev(Stock.Adjusted, delta=-4, reason="count"))
    )
    assert (stock.on_hand, stock.reserved, stock.available) == (6, 6, 0)


# --- reservations ------------------------------------------------------------


def test_a_reservation_sets_units_aside_for_an_order() -> None:
    stock = given(CREATED, received(5)).when(lambda s: s.reserve(ORDER, 5)).then(reserved(ORDER, 5))
    assert (stock.on_hand, stock.reserved, stock.available) == (5, 5, 0)
    assert stock.reservations == {str(ORDER): 5}


def test_a_reservation_beyond_what_is_available_says_what_is_short() -> None:
    error = (
        given(CREATED, received(5), reserved(OTHER, 3))
        .when(lambda s: s.reserve(ORDER, 3))
        .then_raises(InsufficientStock, short=[{"sku": "MUG-1", "requested": 3, "available": 2}])
    )
    assert error.short == [{"sku": "MUG-1", "requested": 3, "available": 2}]
    assert "MUG-1 (requested 3, available 2)" in str(error)


def test_an_order_holds_one_reservation_per_sku() -> None:
    given(CREATED, received(5), reserved(ORDER, 1)).when(lambda s: s.reserve(ORDER, 1)).then_raises(
        RuleBroken, match="already holds a reservation"
    )


@pytest.mark.parametrize("bad", [0, -2, 1001])
def test_a_reservation_outside_the_quantity_bounds_is_refused(bad: int) -> None:
    given(CREATED, received(5)).when(lambda s: s.reserve(ORDER, bad)).then_raises(
        InvalidValue, field="quantity"
    )


def test_a_released_reservation_is_available_again() -> None:
    stock = (
        given(CREATED, received(5), reserved(ORDER, 2))
        .when(lambda s: s.release(ORDER))
        .then(ev(Stock.Released, order_id=str(ORDER), quantity=2))
    )
    assert (stock.on_hand, stock.reserved, stock.available) == (5, 0, 5)


def test_a_committed_reservation_leaves_on_hand() -> None:
    stock = (
        given(CREATED, received(5), reserved(ORDER, 2), reserved(OTHER, 1))
        .when(lambda s: s.commit(ORDER))
        .then(ev(Stock.Committed, order_id=str(ORDER), quantity=2))
    )
    assert (stock.on_hand, stock.reserved, stock.available) == (3, 1, 2)


ENDS = {"release": Stock.release, "commit": Stock.commit}


@pytest.mark.parametrize("ended", [Stock.Released, Stock.Committed])
@pytest.mark.parametrize("end", list(ENDS))
def test_a_reservation_ends_exactly_once(ended: type[Stock.Event], end: str) -> None:
    given(
        CREATED, received(5), reserved(ORDER, 2), ev(ended, order_id=str(ORDER), quantity=2)
    ).when(lambda s: ENDS[end](s, ORDER)).then_raises(RuleBroken, match="holds no reservation")


@pytest.mark.parametrize("end", list(ENDS))
def test_an_order_without_a_reservation_cannot_release_or_commit(end: str) -> None:
    given(CREATED, received(5)).when(lambda s: ENDS[end](s, ORDER)).then_raises(
        RuleBroken, match="holds no reservation"
    )


# --- reserving several SKUs at once -----------------------------------------


def _stock(sku: str, on_hand: int) -> Stock:
    history = [ev(Stock.Created, sku=sku)] + ([received(on_hand)] if on_hand else [])
    return replay(record(history, uuid4()))


def test_reserve_all_reserves_every_sku() -> None:
    mugs, cups = _stock("MUG-1", 2), _stock("CUP-1", 3)
    Stock.reserve_all(ORDER, {"MUG-1": 2, "CUP-1": 1}, [mugs, cups])
    assert (mugs.available, cups.available) == (0, 2)
    assert [type(e) for e in mugs.collect_events()] == [Stock.Reserved]
    assert [type(e) for e in cups.collect_events()] == [Stock.Reserved]


def test_reserve_all_reserves_nothing_and_names_every_short_sku() -> None:
    mugs, cups, pens = _stock("MUG-1", 1), _stock("CUP-1", 3), _stock("PEN-1", 0)
    try:
        Stock.reserve_all(ORDER, {"MUG-1": 2, "CUP-1": 3, "PEN-1": 1}, [mugs, cups, pens])
    except InsufficientStock as error:
        assert error.short == [
            {"sku": "MUG-1", "requested": 2, "available": 1},
            {"sku": "PEN-1", "requested": 1, "available": 0},
        ]
    else:
        raise AssertionError("reserve_all did not refuse")
    assert [list(s.collect_events()) for s in (mugs, cups, pens)] == [[], [], []]


# --- the law: whatever happens, stock adds up and never goes negative --------

ORDERS = [UUID(int=n) for n in range(1, 4)]
commands = st.one_of(
    st.tuples(st.just("receive"), st.integers(-2, 1002)),
    st.tuples(st.just("adjust"), st.integers(-1002, 1002)),
    st.tuples(st.just("reserve"), st.sampled_from(ORDERS), st.integers(-1, 600)),
    st.tuples(st.just("release"), st.sampled_from(ORDERS)),
    st.tuples(st.just("commit"), st.sampled_from(ORDERS)),
)


def _run(stock: Stock, command: tuple) -> None:
    match command:
        case ("receive", units):
            stock.receive(units)
        case ("adjust", delta):
            stock.adjust(delta, "count")
        case ("reserve", order, units):
            stock.reserve(order, units)
        case ("release", order):
            stock.release(order)
        case ("commit", order):
            stock.commit(order)


@settings(max_examples=150, deadline=None)
@for_all(st.lists(commands, max_size=40))
def test_any_sequence_of_stock_commands_keeps_the_books(script: list[tuple]) -> None:
    past = record([CREATED], uuid4())
    stock = replay(past)
    events = list(past)
    for command in script:
        try:
            _run(stock, command)
        except DomainError:
            # A refusal records nothing; the loop goes on from the same state.
            assert stock.pending_events == []
        events += stock.collect_events()
        assert stock.available >= 0
        assert all(units > 0 for units in stock.reservations.values())

    def total(cls: type, attr: str) -> int:
        return sum(getattr(e, attr) for e in events if isinstance(e, cls))

    assert stock.on_hand == (
        total(Stock.Received, "quantity")
        + total(Stock.Adjusted, "delta")
        - total(Stock.Committed, "quantity")
    )
    assert stock.reserved == (
        total(Stock.Reserved, "quantity")
        - total(Stock.Released, "quantity")
        - total(Stock.Committed, "quantity")
    )
    # Per order, a reservation is followed by exactly one end before the next one.
    for order in map(str, ORDERS):
        kinds = [type(e) for e in events if getattr(e, "order_id", None) == order]
        assert all((kind is Stock.Reserved) == (i % 2 == 0) for i, kind in enumerate(kinds)), kinds
    assert replay(events) == stock
