"""The Shop application service, on each store: memory, SQLite and PostgreSQL.

Each test reads the service the way the API uses it: call a command, then load the
aggregates back from the store. A refused command must leave the log untouched, so
most refusals are checked against ``shop.head()`` before and after.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import RecordConflictError

from commands import running
from commands.service import Done, Shop
from domain.cart import Cart
from domain.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    DomainError,
    InsufficientStock,
    InvalidValue,
    NotFound,
    RuleBroken,
    StaleVersion,
)
from domain.order import Order
from domain.product import Product
from domain.stock import Stock
from domain.values import Address
from eventstore import retry
from tests.conftest import open_shop

ADDRESS = Address(name="Ada", line1="1 Main St", city="Berlin", postal_code="10115", country="DE")
EMAIL = "ada@example.org"
CUSTOMER = "cus-1"


def stocked(shop: Shop, sku: str, units: int, price: str = "12.50") -> None:
    """A product with ``units`` on hand."""
    shop.add_product(sku, sku.title(), price)
    if units:
        shop.receive_stock(sku, units)


def cart_with(shop: Shop, **lines: int) -> UUID:
    """An open cart of CUSTOMER holding ``lines`` (SKU with dashes written as underscores)."""
    cart_id = shop.open_cart(CUSTOMER).aggregate.id
    for sku, units in lines.items():
        shop.add_to_cart(cart_id, sku.replace("_", "-"), units)
    return cart_id


def placed(shop: Shop, **lines: int) -> Order:
    return shop.check_out(cart_with(shop, **lines), ADDRESS, EMAIL).aggregate


def refused(shop: Shop, error: type[DomainError], command: Callable[[], Any]) -> DomainError:
    """Run a command that must be refused with ``error`` and record nothing."""
    head = shop.head()
    with pytest.raises(error) as caught:
        command()
    assert shop.head() == head, "a refused command recorded events"
    return caught.value


def logged_after(shop: Shop, position: int) -> list[str]:
    """The event classes stored after ``position``, in log order (e.g. "Stock.Received").

    Counted from the log rather than from ``head()``: on PostgreSQL a save that loses a
    race still uses up sequence numbers, so positions may skip.
    """
    notifications = shop.recorder.select_notifications(
        start=position, limit=1000, inclusive_of_start=False
    )
    return [n.topic.split(":")[1] for n in notifications]


def other_shop(shop: Shop, store_url: str) -> Iterator[Shop]:
    """A second application on the same store (in memory: the same one; it has no other)."""
    if store_url == "memory://":
        yield shop
        return
    other = open_shop(store_url)
    try:
        yield other
    finally:
        other.close()


@pytest.fixture
def rival(shop: Shop, store_url: str) -> Iterator[Shop]:
    yield from other_shop(shop, store_url)


# --- catalogue --------------------------------------------------------------


def test_an_empty_store_has_head_zero(shop: Shop) -> None:
    assert shop.head() == 0


def test_a_product_is_added_with_its_empty_stock(shop: Shop) -> None:
    done = shop.add_product("MUG-1", "Mug", "12.50")
    assert isinstance(done, Done)
    assert isinstance(done.aggregate, Product)
    assert (done.version, done.position) == (1, shop.head())
    assert shop.head() == 2  # the product and its stock, saved together
    product = shop.product("MUG-1")
    assert (product.name, product.price, product.version) == ("Mug", Decimal("12.50"), 1)
    stock = shop.stock("MUG-1")
    assert (stock.on_hand, stock.reserved, stock.available) == (0, 0, 0)


def test_a_second_product_with_the_same_sku_already_exists(shop: Shop) -> None:
    shop.add_product("MUG-1", "Mug", "12.50")
    error = refused(shop, AlreadyExists, lambda: shop.add_product("MUG-1", "Other", "1.00"))
    assert error.info == {"sku": "MUG-1"}
    assert shop.product("MUG-1").name == "Mug"


@pytest.mark.parametrize(
    ("sku", "name", "price", "field"),
    [("mug", "Mug", "1.00", "sku"), ("MUG-1", "", "1.00", "name"), ("MUG-1", "Mug", 1.5, "price")],
)
def test_a_product_with_a_bad_value_is_refused(
    shop: Shop, sku: str, name: str, price: Any, field: str
) -> None:
    error = refused(shop, InvalidValue, lambda: shop.add_product(sku, name, price))
    assert error.info["field"] == field


def test_a_product_is_renamed_and_repriced(shop: Shop) -> None:
    shop.add_product("MUG-1", "Mug", "12.50")
    done = shop.change_product("MUG-1", name="Big mug", price="14.00", expected_version=1)
    assert (done.version, done.position) == (3, shop.head())
    product = shop.product("MUG-1")
    assert (product.name, product.price) == ("Big mug", Decimal("14.00"))


def test_an_unchanged_product_records_nothing(shop: Shop) -> None:
    shop.add_product("MUG-1", "Mug", "12.50")
    head = shop.head()
    done = shop.change_product("MUG-1", name="Mug", price="12.50")
    assert (done.version, done.position, shop.head()) == (1, head, head)


def test_changing_an_unknown_product_is_not_found(shop: Shop) -> None:
    refused(shop, NotFound, lambda: shop.change_product("NOPE", name="x"))
    refused(shop, InvalidValue, lambda: shop.product("no such sku"))


# --- stock ------------------------------------------------------------------


def test_receipts_and_adjustments_change_on_hand(shop: Shop) -> None:
    shop.add_product("MUG-1", "Mug", "12.50")
    done = shop.receive_stock("MUG-1", 10, "pallet 7", expected_version=1)
    assert isinstance(done.aggregate, Stock)
    assert (done.version, done.position) == (2, shop.head())
    shop.adjust_stock("MUG-1", -3, "broken", expected_version=2)
    stock = shop.stock("MUG-1")
    assert (stock.on_hand, stock.available, stock.version) == (7, 7, 3)


def test_stock_of_an_unknown_product_is_not_found(shop: Shop) -> None:
    refused(shop, NotFound, lambda: shop.receive_stock("NOPE", 1))
    refused(shop, NotFound, lambda: shop.adjust_stock("NOPE", 1, "count"))
    refused(shop, NotFound, lambda: shop.stock("NOPE"))


def test_an_adjustment_below_what_is_reserved_is_refused(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5)
    placed(shop, MUG_1=3)
    error = refused(shop, RuleBroken, lambda: shop.adjust_stock("MUG-1", -3, "count"))
    assert error.info == {"sku": "MUG-1", "on_hand": 5, "reserved": 3}
    shop.adjust_stock("MUG-1", -2, "count")
    assert shop.stock("MUG-1").available == 0


def test_bad_stock_quantities_are_refused(shop: Shop) -> None:
    stocked(shop, "MUG-1", 0)
    refused(shop, InvalidValue, lambda: shop.receive_stock("MUG-1", 0))
    refused(shop, InvalidValue, lambda: shop.adjust_stock("MUG-1", 0, "count"))


# --- carts ------------------------------------------------------------------


def test_a_cart_is_opened_filled_and_changed(shop: Shop) -> None:
    stocked(shop, "MUG-1", 0, "12.50")
    stocked(shop, "CUP-1", 0, "3.00")
    opened = shop.open_cart(CUSTOMER)
    assert isinstance(opened.aggregate, Cart)
    assert (opened.version, opened.position) == (1, shop.head())
    cart_id = opened.aggregate.id
    shop.add_to_cart(cart_id, "MUG-1", 2, owner=CUSTOMER, expected_version=1)
    shop.add_to_cart(cart_id, "CUP-1", 1, owner=CUSTOMER)
    done = shop.set_cart_quantity(cart_id, "MUG-1", 3, owner=CUSTOMER, expected_version=3)
    assert (done.version, done.position) == (4, shop.head())
    shop.remove_from_cart(cart_id, "CUP-1", owner=CUSTOMER, expected_version=4)
    cart = shop.cart(cart_id, CUSTOMER)
    assert {s: (line.quantity, line.unit_price) for s, line in cart.lines.items()} == {
        "MUG-1": (3, Decimal("12.50"))
    }
    assert (cart.status, cart.total, cart.version) == ("open", Decimal("37.50"), 5)
    shop.set_cart_quantity(cart_id, "MUG-1", 0)
    assert shop.cart(cart_id).lines == {}


def test_the_price_is_the_one_of_the_catalogue_when_the_item_is_added(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5, "12.50")
    cart_id = cart_with(shop, MUG_1=1)
    shop.change_product("MUG-1", price="20.00")
    assert shop.cart(cart_id).lines["MUG-1"].unit_price == Decimal("12.50")
    order = shop.check_out(cart_id, ADDRESS, EMAIL).aggregate
    assert order.total == Decimal("12.50")


def test_a_product_not_in_the_catalogue_cannot_be_added(shop: Shop) -> None:
    cart_id = shop.open_cart(CUSTOMER).aggregate.id
    refused(shop, NotFound, lambda: shop.add_to_cart(cart_id, "NOPE", 1))


def test_another_customers_cart_is_as_if_absent(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5)
    cart_id = cart_with(shop, MUG_1=1)
    for command in (
        lambda: shop.cart(cart_id, "cus-2"),
        lambda: shop.add_to_cart(cart_id, "MUG-1", 1, owner="cus-2"),
        lambda: shop.set_cart_quantity(cart_id, "MUG-1", 2, owner="cus-2"),
        lambda: shop.remove_from_cart(cart_id, "MUG-1", owner="cus-2"),
        lambda: shop.check_out(cart_id, ADDRESS, EMAIL, owner="cus-2"),
    ):
        refused(shop, NotFound, command)
    refused(shop, NotFound, lambda: shop.cart(uuid4()))


def test_a_loader_finds_only_aggregates_of_its_kind(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5)
    cart_id = cart_with(shop, MUG_1=1)
    refused(shop, NotFound, lambda: shop.order(cart_id))
    order = placed(shop, MUG_1=1)
    refused(shop, NotFound, lambda: shop.cart(order.id))
    refused(shop, NotFound, lambda: shop.order(order.id, "cus-2"))
    assert shop.order(order.id, CUSTOMER).id == order.id


# --- checkout ---------------------------------------------------------------


def test_checkout_closes_the_cart_places_the_order_and_reserves_every_line(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5, "12.50")
    stocked(shop, "CUP-1", 2, "3.00")
    cart_id = cart_with(shop, MUG_1=2, CUP_1=2)
    head = shop.head()
    done = shop.check_out(cart_id, ADDRESS, EMAIL, owner=CUSTOMER, expected_version=3)
    # Placed, CheckedOut and one Reserved per line: all in the one save.
    assert shop.head() == head + 4 == done.position
    order = shop.order(done.aggregate.id, CUSTOMER)
    assert order.id == Order.create_id(cart_id)
    assert (order.status, order.total, order.skus) == (
        "placed",
        Decimal("31.00"),
        ["CUP-1", "MUG-1"],
    )
    assert (order.customer_id, order.cart_id, order.email) == (CUSTOMER, cart_id, EMAIL)
    assert Address.from_dict(order.shipping_address) == ADDRESS
    cart = shop.cart(cart_id)
    assert (cart.status, cart.order_id) == ("checked_out", order.id)
    assert shop.stock("MUG-1").reservations == {str(order.id): 2}
    assert (shop.stock("CUP-1").reserved, shop.stock("CUP-1").available) == (2, 0)


def test_a_short_checkout_records_nothing_and_names_every_short_sku(shop: Shop) -> None:
    stocked(shop, "MUG-1", 1)
    stocked(shop, "CUP-1", 5)
    stocked(shop, "PEN-1", 0)
    cart_id = cart_with(shop, MUG_1=2, CUP_1=5, PEN_1=1)
    error = refused(shop, InsufficientStock, lambda: shop.check_out(cart_id, ADDRESS, EMAIL))
    assert error.info["short"] == [
        {"sku": "MUG-1", "requested": 2, "available": 1},
        {"sku": "PEN-1", "requested": 1, "available": 0},
    ]
    assert shop.cart(cart_id).is_open
    assert shop.stock("CUP-1").reserved == 0
    refused(shop, NotFound, lambda: shop.order(Order.create_id(cart_id)))


def test_a_cart_is_checked_out_once(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5)
    cart_id = cart_with(shop, MUG_1=1)
    shop.check_out(cart_id, ADDRESS, EMAIL)
    refused(shop, RuleBroken, lambda: shop.check_out(cart_id, ADDRESS, EMAIL))
    refused(shop, RuleBroken, lambda: shop.add_to_cart(cart_id, "MUG-1", 1))
    assert shop.stock("MUG-1").reserved == 1


def test_an_empty_cart_or_a_bad_email_cannot_check_out(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5)
    empty = shop.open_cart(CUSTOMER).aggregate.id
    refused(shop, RuleBroken, lambda: shop.check_out(empty, ADDRESS, EMAIL))
    cart_id = cart_with(shop, MUG_1=1)
    refused(shop, InvalidValue, lambda: shop.check_out(cart_id, ADDRESS, "nobody"))


# --- orders -----------------------------------------------------------------


def test_an_order_is_paid_shipped_and_delivered(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5, "12.50")
    stocked(shop, "CUP-1", 5, "3.00")
    order = placed(shop, MUG_1=2, CUP_1=1)
    paid = shop.pay(order.id, "28.00", "psp-1", owner=CUSTOMER, expected_version=1)
    assert (paid.version, paid.position, paid.aggregate.status) == (2, shop.head(), "paid")
    head = shop.head()
    shipped = shop.ship(order.id, "DHL", "T1", expected_version=2)
    assert shipped.position == shop.head() == head + 3  # Shipped + one Committed per line
    assert shipped.aggregate.status == "shipped"
    mugs, cups = shop.stock("MUG-1"), shop.stock("CUP-1")
    assert (mugs.on_hand, mugs.reserved, mugs.available) == (3, 0, 3)
    assert (cups.on_hand, cups.reserved, cups.available) == (4, 0, 4)
    delivered = shop.deliver(order.id, expected_version=3)
    assert (delivered.version, delivered.aggregate.status) == (4, "delivered")
    assert shop.order(order.id).status == "delivered"


def test_a_payment_must_equal_the_total(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5, "12.50")
    order = placed(shop, MUG_1=2)
    error = refused(shop, RuleBroken, lambda: shop.pay(order.id, "12.50", "psp-1"))
    assert error.info == {"total": "25.00", "amount": "12.50"}
    refused(shop, InvalidValue, lambda: shop.pay(order.id, 25.0, "psp-1"))  # type: ignore[arg-type]
    refused(shop, NotFound, lambda: shop.pay(order.id, "25.00", "psp-1", owner="cus-2"))
    refused(shop, NotFound, lambda: shop.pay(uuid4(), "25.00", "psp-1"))


def test_an_order_moves_only_along_its_state_machine(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5)
    order = placed(shop, MUG_1=1)
    refused(shop, RuleBroken, lambda: shop.ship(order.id, "DHL", "T1"))
    refused(shop, RuleBroken, lambda: shop.deliver(order.id))
    shop.pay(order.id, "12.50", "psp-1")
    refused(shop, RuleBroken, lambda: shop.pay(order.id, "12.50", "psp-1"))
    shop.ship(order.id, "DHL", "T1")
    refused(shop, RuleBroken, lambda: shop.ship(order.id, "DHL", "T1"))
    refused(shop, RuleBroken, lambda: shop.cancel(order.id, "too late"))
    assert shop.stock("MUG-1").on_hand == 4


def test_cancelling_a_placed_order_releases_its_reservations(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5)
    stocked(shop, "CUP-1", 5)
    order = placed(shop, MUG_1=2, CUP_1=5)
    head = shop.head()
    done = shop.cancel(order.id, "changed my mind", owner=CUSTOMER, expected_version=1)
    assert done.position == shop.head() == head + 3  # Cancelled + one Released per line
    assert (done.aggregate.status, done.aggregate.refund) == ("cancelled", None)
    for sku in ("MUG-1", "CUP-1"):
        stock = shop.stock(sku)
        assert (stock.on_hand, stock.reserved, stock.available) == (5, 0, 5)
    refused(shop, RuleBroken, lambda: shop.cancel(order.id, "again"))
    refused(shop, RuleBroken, lambda: shop.pay(order.id, "37.50", "psp-1"))


def test_cancelling_a_paid_order_records_its_refund(shop: Shop) -> None:
    stocked(shop, "MUG-1", 5, "12.50")
    order = placed(shop, MUG_1=2)
    shop.pay(order.id, "25.00", "psp-1")
    done = shop.cancel(order.id, "out of stock")
    assert (done.aggregate.status, done.aggregate.refund) == ("cancelled", Decimal("25.00"))
    assert shop.order(order.id).refund == Decimal("25.00")
    assert shop.stock("MUG-1").available == 5
    refused(shop, NotFound, lambda: shop.cancel(order.id, "x", owner="cus-2"))


# --- positions and versions ---------------------------------------------------


def test_every_command_answers_a_growing_position_that_is_the_head(shop: Shop) -> None:
    stocked(shop, "MUG-1", 0)
    cart_id = shop.open_cart(CUSTOMER).aggregate.id
    dones: list[Done] = []
    for command in (
        lambda: shop.receive_stock("MUG-1", 9),
        lambda: shop.adjust_stock("MUG-1", -1, "count"),
        lambda: shop.change_product("MUG-1", price="2.00"),
        lambda: shop.add_to_cart(cart_id, "MUG-1", 3),
        lambda: shop.set_cart_quantity(cart_id, "MUG-1", 2),
        lambda: shop.check_out(cart_id, ADDRESS, EMAIL),
    ):
        dones.append(command())
        assert dones[-1].position == shop.head()
    order_id = dones[-1].aggregate.id
    for command in (
        lambda: shop.pay(order_id, "4.00", "psp-1"),
        lambda: shop.ship(order_id, "DHL", "T1"),
        lambda: shop.deliver(order_id),
    ):
        dones.append(command())
        assert dones[-1].position == shop.head()
    positions = [d.position for d in dones]
    assert positions == sorted(set(positions))


def test_a_stale_expected_version_is_refused_by_every_command(shop: Shop) -> None:
    stocked(shop, "MUG-1", 10)
    cart_id = cart_with(shop, MUG_1=1)  # cart at version 2
    paid = placed(shop, MUG_1=1)
    shop.pay(paid.id, "12.50", "psp")  # order at version 2
    shipped = placed(shop, MUG_1=1)
    shop.pay(shipped.id, "12.50", "psp")
    shop.ship(shipped.id, "DHL", "T")  # order at version 3
    fresh = placed(shop, MUG_1=1)  # order at version 1
    for command in (
        lambda v: shop.change_product("MUG-1", name="Cup", expected_version=v),
        lambda v: shop.receive_stock("MUG-1", 1, expected_version=v),
        lambda v: shop.adjust_stock("MUG-1", 1, "count", expected_version=v),
        lambda v: shop.add_to_cart(cart_id, "MUG-1", 1, expected_version=v),
        lambda v: shop.set_cart_quantity(cart_id, "MUG-1", 2, expected_version=v),
        lambda v: shop.remove_from_cart(cart_id, "MUG-1", expected_version=v),
        lambda v: shop.check_out(cart_id, ADDRESS, EMAIL, expected_version=v),
        lambda v: shop.pay(fresh.id, "12.50", "psp", expected_version=v),
        lambda v: shop.ship(paid.id, "DHL", "T", expected_version=v),
        lambda v: shop.deliver(shipped.id, expected_version=v),
        lambda v: shop.cancel(paid.id, "why", expected_version=v),
    ):
        error = refused(shop, StaleVersion, functools.partial(command, 99))
        assert error.info["expected"] == 99


# --- snapshots ----------------------------------------------------------------


def test_a_long_lived_stock_is_snapshotted_and_loads_right(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    stocked(shop, "MUG-1", 0)
    for _ in range(104):
        shop.receive_stock("MUG-1", 1)
    stock_id = Stock.create_id("MUG-1")
    assert shop.snapshots is not None
    snapshots = list(shop.snapshots.get(stock_id))
    assert [s.originator_version for s in snapshots] == [100]
    assert isinstance(snapshots[0], Snapshot)
    assert snapshots[0].state["on_hand"] == 99  # Created, then 99 receipts of one unit
    # Loading starts from the snapshot and reads only the events after it.
    read_after: list[int | None] = []
    event_store = shop.repository.event_store
    get_events = event_store.get

    def spied_get(*args: Any, **kwargs: Any) -> Any:
        read_after.append(kwargs.get("gt"))
        return get_events(*args, **kwargs)

    monkeypatch.setattr(event_store, "get", spied_get)
    # Kept in memory as it was last saved (version 105), it is brought up to date with
    # only the events after that (none).
    stock = shop.stock("MUG-1")
    assert read_after == [105]
    assert (stock.version, stock.on_hand, stock.available) == (105, 104, 104)
    # Not in memory (another process, or evicted): replayed from the snapshot on.
    read_after.clear()
    monkeypatch.setattr(shop.repository, "cache", None)
    stock = shop.stock("MUG-1")
    assert read_after == [100]
    assert (stock.version, stock.on_hand, stock.available) == (105, 104, 104)
    # Nothing else is snapshotted.
    assert list(shop.snapshots.get(Product.create_id("MUG-1"))) == []


# --- lost races -----------------------------------------------------------------


def interfere(monkeypatch: pytest.MonkeyPatch, shop: Shop, rival: Shop, times: int) -> list[str]:
    """Make ``rival`` receive a unit of each stock ``shop`` loads, ``times`` times.

    The loaded copy is then stale, so the command's save conflicts: the race
    two API processes would run, made to happen on cue.
    """
    load = shop.stock
    cues: list[str] = []
    rival_writing = False  # in memory the rival is ``shop``, and comes back here

    def stale_stock(sku: str) -> Stock:
        nonlocal rival_writing
        stock = load(sku)
        if not rival_writing and len(cues) < times:
            rival_writing = True
            try:
                rival.receive_stock(sku, 1, "meanwhile")
            finally:
                rival_writing = False
            cues.append(sku)
        return stock

    monkeypatch.setattr(shop, "stock", stale_stock)
    return cues


def test_a_checkout_that_loses_a_race_is_retried_and_wins(
    shop: Shop, rival: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    stocked(shop, "MUG-1", 1)
    cart_id = cart_with(shop, MUG_1=1)
    saves: list[tuple[int, str]] = []
    save = shop._save_aggregates

    def counted_save(aggregates: Any, kwargs: Any) -> Any:
        try:
            recordings = save(aggregates, kwargs)
        except RecordConflictError:
            saves.append((len(aggregates), "conflict"))
            raise
        saves.append((len(aggregates), "stored"))
        return recordings

    monkeypatch.setattr(shop, "_save_aggregates", counted_save)
    cues = interfere(monkeypatch, shop, rival, times=1)
    head = shop.head()
    done = shop.check_out(cart_id, ADDRESS, EMAIL)
    assert cues == ["MUG-1"]
    # The first checkout save (order, cart, stock) lost; the retry won.
    assert [outcome for n, outcome in saves if n == 3] == ["conflict", "stored"]
    # The rival's receipt, then the whole checkout exactly once.
    assert logged_after(shop, head) == [
        "Stock.Received",
        "Order.Placed",
        "Cart.CheckedOut",
        "Stock.Reserved",
    ]
    assert done.position == shop.head()
    stock = shop.stock("MUG-1")
    assert (stock.on_hand, stock.reserved, stock.version) == (2, 1, 4)
    assert shop.cart(cart_id).order_id == done.aggregate.id


def test_a_command_that_keeps_losing_gives_up_with_a_conflict(
    shop: Shop, rival: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    stocked(shop, "MUG-1", 1)
    cart_id = cart_with(shop, MUG_1=1)
    monkeypatch.setattr(retry.time, "sleep", lambda _: None)
    cues = interfere(monkeypatch, shop, rival, times=running.MAX_ATTEMPTS)
    head = shop.head()
    with pytest.raises(ConcurrencyConflict, match="check_out lost"):
        shop.check_out(cart_id, ADDRESS, EMAIL)
    assert len(cues) == running.MAX_ATTEMPTS
    # Only the rival's receipts were stored; the checkout left no trace.
    assert logged_after(shop, head) == ["Stock.Received"] * running.MAX_ATTEMPTS
    assert shop.cart(cart_id).is_open
    assert shop.stock("MUG-1").reserved == 0


def test_a_conflict_is_an_eventsourcing_record_conflict(shop: Shop, rival: Shop) -> None:
    # What the retry relies on: a stale save raises RecordConflictError on every store.
    stocked(shop, "MUG-1", 0)
    stale = shop.stock("MUG-1")
    rival.receive_stock("MUG-1", 1)
    stale.receive(1)
    head = shop.head()
    with pytest.raises(RecordConflictError):
        shop.save(stale)
    assert shop.head() == head
