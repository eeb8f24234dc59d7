"""Real races on real PostgreSQL: threads that start together through a barrier.

One Shop is shared by every thread, as one API process shares it between requests;
its connection pool is sized for the threads (``?pool_size=``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from threading import Barrier
from typing import TypeVar
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from commands.service import Done, Shop
from domain.errors import ConcurrencyConflict, InsufficientStock
from domain.order import Order
from domain.values import Address
from eventstore.url import StoreURL
from tests.conftest import open_shop

THREADS = 20
ADDRESS = Address(name="Ada", line1="1 Main St", city="Berlin", postal_code="10115", country="DE")
T = TypeVar("T")


@pytest.fixture
def pg_shop_url(pg_url: str) -> str:
    return f"{pg_url}&pool_size={THREADS}&max_overflow=5"


@pytest.fixture
def pg_shop(pg_shop_url: str) -> Iterator[Shop]:
    shop = open_shop(pg_shop_url)
    yield shop
    shop.close()


def race(tasks: list[Callable[[], T]]) -> list[T | Exception]:
    """Run every task in its own thread, all released at once; results or errors, in order."""
    start = Barrier(len(tasks))

    def run(task: Callable[[], T]) -> T | Exception:
        start.wait(timeout=30)
        try:
            return task()
        except Exception as error:  # collected and judged by the test
            return error

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        return list(pool.map(run, tasks))


def stored_rows(url: str) -> list[tuple[str, str, UUID]]:
    """Every stored event as (transaction id, event class, aggregate id), read with SQL."""
    store = StoreURL.parse(url)
    query = sql.SQL("SELECT xmin::text, topic, originator_id FROM {}.shop_events").format(
        sql.Identifier(store.schema)
    )
    with psycopg.connect(store.dsn()) as conn:
        return [(xid, topic.split(":")[1], oid) for xid, topic, oid in conn.execute(query)]


def test_twenty_checkouts_race_for_the_last_five_units(pg_shop: Shop, pg_shop_url: str) -> None:
    shop = pg_shop
    shop.add_product("LAST-1", "Last one", "9.99")
    shop.receive_stock("LAST-1", 5)
    carts = []
    for n in range(THREADS):
        cart_id = shop.open_cart(f"cus-{n}").aggregate.id
        shop.add_to_cart(cart_id, "LAST-1", 1)
        carts.append(cart_id)

    results = race([partial(shop.check_out, c, ADDRESS, "a@example.org") for c in carts])

    won = {cart for cart, r in zip(carts, results, strict=True) if isinstance(r, Done)}
    lost = {cart: r for cart, r in zip(carts, results, strict=True) if cart not in won}
    assert len(won) == 5
    orders = {r.aggregate.id for r in results if isinstance(r, Done)}
    assert orders == {Order.create_id(c) for c in won}
    for error in lost.values():
        assert isinstance(error, InsufficientStock | ConcurrencyConflict), repr(error)
        if isinstance(error, InsufficientStock):
            assert error.short == [{"sku": "LAST-1", "requested": 1, "available": 0}]
    stock = shop.stock("LAST-1")
    assert (stock.on_hand, stock.reserved, stock.available) == (5, 5, 0)
    assert set(stock.reservations) == {str(Order.create_id(c)) for c in won}
    for cart_id in carts:
        assert shop.cart(cart_id).is_open == (cart_id not in won)

    # The log holds whole checkouts only: a transaction (group commit may write several
    # checkouts in one) holds as many carts checked out as orders placed and reservations.
    rows = stored_rows(pg_shop_url)
    kinds = Counter(kind for _, kind, _ in rows)
    assert kinds["Order.Placed"] == kinds["Cart.CheckedOut"] == kinds["Stock.Reserved"] == 5
    by_transaction: dict[str, Counter[str]] = {}
    for xid, kind, _ in rows:
        by_transaction.setdefault(xid, Counter())[kind] += 1
    for held in by_transaction.values():
        assert held["Cart.CheckedOut"] == held["Order.Placed"] == held["Stock.Reserved"], held


def test_a_checkout_short_of_one_of_two_skus_records_nothing(
    pg_shop: Shop, pg_shop_url: str
) -> None:
    shop = pg_shop
    shop.add_product("MUG-1", "Mug", "12.50")
    shop.receive_stock("MUG-1", 5)
    shop.add_product("CUP-1", "Cup", "3.00")
    shop.receive_stock("CUP-1", 1)
    cart_id = shop.open_cart("cus-1").aggregate.id
    shop.add_to_cart(cart_id, "MUG-1", 2)
    shop.add_to_cart(cart_id, "CUP-1", 2)
    head, rows = shop.head(), stored_rows(pg_shop_url)

    with pytest.raises(InsufficientStock) as caught:
        shop.check_out(cart_id, ADDRESS, "a@example.org")

    assert caught.value.short == [{"sku": "CUP-1", "requested": 2, "available": 1}]
    assert "CUP-1 (requested 2, available 1)" in caught.value.detail
    assert (shop.head(), stored_rows(pg_shop_url)) == (head, rows)
    assert shop.cart(cart_id).is_open
    assert (shop.stock("MUG-1").reserved, shop.stock("CUP-1").reserved) == (0, 0)


def test_twenty_concurrent_receipts_to_one_sku_all_land(pg_shop: Shop) -> None:
    shop = pg_shop
    shop.add_product("BUSY-1", "Busy", "1.00")

    results = race(
        [partial(shop.receive_stock, "BUSY-1", n, f"receipt {n}") for n in range(1, THREADS + 1)]
    )

    done = [r for r in results if isinstance(r, Done)]
    assert [r for r in results if not isinstance(r, Done)] == []
    stock = shop.stock("BUSY-1")
    assert stock.on_hand == sum(range(1, THREADS + 1))
    assert stock.version == 1 + THREADS
    positions = sorted(d.position for d in done)
    assert len(set(positions)) == THREADS
