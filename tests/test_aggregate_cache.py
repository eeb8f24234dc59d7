"""Aggregates kept in memory between commands (commands/cache.py).

Two shops on one store stand for two processes: each has its own cache, and only the
log's version check tells one what the other wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from commands.cache import copied
from commands.service import Shop
from domain.errors import RuleBroken
from domain.stock import Stock
from tests.conftest import open_shop

CUSTOMER = "customer-1"


class Retries:
    def __init__(self) -> None:
        self.count = 0

    def command_retried(self, command: str) -> None:
        self.count += 1

    def command_finished(self, command: str, outcome: str) -> None:
        pass


@pytest.fixture(params=["sqlite", "postgres"])
def two_shops(request: pytest.FixtureRequest) -> Iterator[tuple[Shop, Shop]]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_reused_url")
    first, second = open_shop(url), open_shop(url)
    yield first, second
    first.close()
    second.close()


def reads_of(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The aggregates whose events ``shop`` reads from the log from now on."""
    reads: list[Any] = []
    event_store = shop.repository.event_store
    get = event_store.get

    def spied(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs.get("originator_id", args[0] if args else None))
        return get(*args, **kwargs)

    monkeypatch.setattr(event_store, "get", spied)
    return reads


def test_a_command_on_an_aggregate_it_alone_writes_reads_nothing_from_the_log(
    two_shops: tuple[Shop, Shop], monkeypatch: pytest.MonkeyPatch
) -> None:
    shop, _ = two_shops
    shop.add_product("MUG-1", "Mug", "9.99")
    shop.receive_stock("MUG-1", 5)
    reads = reads_of(shop, monkeypatch)
    done = shop.receive_stock("MUG-1", 2)
    assert reads == []
    assert (done.aggregate.on_hand, done.version) == (7, 3)


def test_a_write_by_another_process_is_caught_by_the_version_check_and_run_again(
    two_shops: tuple[Shop, Shop],
) -> None:
    first, second = two_shops
    retries = Retries()
    first.observers.append(retries)
    first.add_product("MUG-1", "Mug", "9.99")
    first.receive_stock("MUG-1", 5)  # cached by the first at version 2
    second.receive_stock("MUG-1", 10)  # version 3, unknown to the first's cache
    done = first.receive_stock("MUG-1", 1)
    # The stale copy lost its race once, was dropped, and the command ran from the log.
    assert retries.count == 1
    assert (done.aggregate.on_hand, done.version) == (16, 4)
    assert second.stock("MUG-1").on_hand == 16
    assert first.receive_stock("MUG-1", 1).aggregate.on_hand == 17
    assert retries.count == 1  # the fresh copy is cached again


def test_an_aggregate_a_command_only_reads_is_brought_up_to_date_from_the_log(
    two_shops: tuple[Shop, Shop],
) -> None:
    first, second = two_shops
    first.add_product("MUG-1", "Mug", "9.99")
    first.product("MUG-1")  # cached by the first at the old price
    second.change_product("MUG-1", price="12.00")
    cart = first.open_cart(CUSTOMER).aggregate.id
    # Adding an item reads the product's price without changing the product: no version
    # check would catch a stale copy, so it is read up to date.
    added = first.add_to_cart(cart, "MUG-1", 1)
    assert [line.unit_price for line in added.aggregate.lines.values()] == [Decimal("12.00")]


def test_a_cached_aggregate_is_never_changed_by_a_command_that_is_refused(
    two_shops: tuple[Shop, Shop],
) -> None:
    shop, _ = two_shops
    shop.add_product("MUG-1", "Mug", "9.99")
    shop.receive_stock("MUG-1", 2)
    with pytest.raises(RuleBroken):
        shop.adjust_stock("MUG-1", -5, "count")
    stock = shop.stock("MUG-1")
    assert (stock.on_hand, stock.version) == (2, 2)
    assert shop.repository.cache is not None
    cached = shop.repository.cache.get(Stock.create_id("MUG-1"))
    assert (cached.on_hand, cached.version) == (2, 2)


def test_a_refusal_decided_on_a_copy_another_process_made_stale_is_decided_again(
    two_shops: tuple[Shop, Shop],
) -> None:
    first, second = two_shops
    retries = Retries()
    first.observers.append(retries)
    first.add_product("MUG-1", "Mug", "9.99")
    cart = first.open_cart(CUSTOMER).aggregate.id  # cached by the first: no lines
    second.add_to_cart(cart, "MUG-1", 1)
    # On its cached copy the cart has no such line (NotFound); nothing written would
    # catch that, so the refusal is checked against the log, and the command runs again.
    done = first.set_cart_quantity(cart, "MUG-1", 3)
    assert [line.quantity for line in done.aggregate.lines.values()] == [3]
    assert retries.count == 1


def test_a_copy_for_a_command_equals_the_cached_aggregate_and_changes_apart() -> None:
    """commands.cache.copied, which stands in for deepcopy: same state, no shared part."""
    from domain.cart import Cart
    from domain.order import Order
    from domain.values import Address

    stock = Stock.open("MUG-1")
    stock.receive(10, "in")
    stock.reserve("order-1", 2)
    cart = Cart.open("alice")
    cart.add_item("MUG-1", 2, Decimal("3.50"))
    address = Address("A", "1 Road", "X", "12345", "DE")
    order = Order.place(
        "alice",
        cart.id,
        {"MUG-1": (2, Decimal("3.50"))},
        address,
        "a@example.com",
        currency="EUR",
        payment_due_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    for original in (stock, cart, order):
        copy = copied(original)
        assert type(copy) is type(original) and vars(copy) == vars(original)
        before = repr(vars(original))
        copy.collect_events()
        if isinstance(copy, Stock):
            copy.reserve("order-2", 1)
        elif isinstance(copy, Cart):
            copy.add_item("MUG-1", 1, Decimal("3.50"))
        else:
            copy.cancel("changed my mind")
        assert repr(vars(original)) == before  # the command changed the copy alone
