"""The application service: one method per command of the HTTP API.

Each method loads the aggregates it needs, calls them (they check the rules) and
saves all their new events in one transaction. A write that loses an optimistic
concurrency race is retried from a fresh load a bounded number of times.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, RecordConflictError

from commands.metadata import CausedMapper
from domain.cart import Cart
from domain.errors import AlreadyExists, ConcurrencyConflict, NotFound
from domain.order import Order
from domain.product import Product
from domain.stock import Stock
from domain.values import Address, sku

P = ParamSpec("P")
A = TypeVar("A", bound=Aggregate)

MAX_ATTEMPTS = 10
# Back-off between attempts: full jitter over a window that doubles from 2 * BACKOFF_BASE
# seconds up to BACKOFF_CAP. The first window is about as long as a contended save on
# PostgreSQL (~20 ms), so that many writers to one hot aggregate spread out instead of
# colliding again in lock-step: 20 concurrent receipts to one SKU all land, the unluckiest
# after about 5 conflicts; giving up takes at most ~1.5 s of waiting.
BACKOFF_BASE = 0.01
BACKOFF_CAP = 0.25


@dataclass(frozen=True)
class Done:
    """What a command did: the aggregate it is about, and its last event's log position."""

    aggregate: Any
    position: int

    @property
    def version(self) -> int:
        return int(self.aggregate.version)


def retry_on_conflict(method: Callable[P, Done]) -> Callable[P, Done]:
    """Re-run a command from a fresh load when a concurrent write got there first."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Done:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return method(*args, **kwargs)
            except RecordConflictError:
                if attempt == MAX_ATTEMPTS:
                    break
                time.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
        raise ConcurrencyConflict(
            f"{method.__name__} lost to concurrent writes {MAX_ATTEMPTS} times; try again"
        )

    return wrapper


class Shop(Application):
    """The eventshop write side over any eventsourcing store."""

    name = "Shop"
    # A SKU's stock lives for years and gains events with every order.
    snapshotting_intervals = {Stock: 100}  # noqa: RUF012

    def construct_mapper(self) -> Mapper[UUID]:
        # Every stored event also records who caused it (commands/metadata.py).
        return self.factory.mapper(self.construct_transcoder(), mapper_class=CausedMapper)

    # --- catalogue and stock -------------------------------------------------

    @retry_on_conflict
    def add_product(self, sku_: str, name: str, price: Decimal | str) -> Done:
        product = Product.add(sku_, name, price)
        if self._exists(product.id):
            raise AlreadyExists(f"Product {product.sku} already exists", sku=product.sku)
        return self._save(product, Stock.open(product.sku))

    @retry_on_conflict
    def change_product(
        self,
        sku_: str,
        name: str | None = None,
        price: Decimal | str | None = None,
        expected_version: int | None = None,
    ) -> Done:
        product = self.product(sku_)
        product.check_version(expected_version)
        product.change(name=name, price=price)
        return self._save(product)

    @retry_on_conflict
    def receive_stock(
        self, sku_: str, quantity: int, note: str = "", expected_version: int | None = None
    ) -> Done:
        stock = self.stock(sku_)
        stock.check_version(expected_version)
        stock.receive(quantity, note)
        return self._save(stock)

    @retry_on_conflict
    def adjust_stock(
        self, sku_: str, delta: int, reason: str, expected_version: int | None = None
    ) -> Done:
        stock = self.stock(sku_)
        stock.check_version(expected_version)
        stock.adjust(delta, reason)
        return self._save(stock)

    # --- carts ---------------------------------------------------------------

    def open_cart(self, customer_id: str) -> Done:
        return self._save(Cart.open(customer_id))

    @retry_on_conflict
    def add_to_cart(
        self,
        cart_id: UUID,
        sku_: str,
        quantity: int,
        owner: str | None = None,
        expected_version: int | None = None,
    ) -> Done:
        cart = self.cart(cart_id, owner)
        cart.check_version(expected_version)
        cart.add_item(sku_, quantity, self.product(sku_).price)
        return self._save(cart)

    @retry_on_conflict
    def set_cart_quantity(
        self,
        cart_id: UUID,
        sku_: str,
        quantity: int,
        owner: str | None = None,
        expected_version: int | None = None,
    ) -> Done:
        cart = self.cart(cart_id, owner)
        cart.check_version(expected_version)
        cart.set_quantity(sku_, quantity)
        return self._save(cart)

    @retry_on_conflict
    def remove_from_cart(
        self,
        cart_id: UUID,
        sku_: str,
        owner: str | None = None,
        expected_version: int | None = None,
    ) -> Done:
        cart = self.cart(cart_id, owner)
        cart.check_version(expected_version)
        cart.remove_item(sku_)
        return self._save(cart)

    @retry_on_conflict
    def check_out(
        self,
        cart_id: UUID,
        shipping_address: Address,
        email: str,
        owner: str | None = None,
        expected_version: int | None = None,
    ) -> Done:
        """Close the cart, place the order and reserve every line's units, atomically.

        All of it is one ``save()``: if any SKU is short, or any of the aggregates was
        changed meanwhile, nothing at all is recorded.
        """
        cart = self.cart(cart_id, owner)
        cart.check_version(expected_version)
        # The cart's own rules (open, not empty) come first: they explain a refusal best.
        lines = {s: (line.quantity, line.unit_price) for s, line in cart.lines.items()}
        cart.check_out(Order.create_id(cart.id))
        order = Order.place(
            customer_id=cart.customer_id,
            cart_id=cart.id,
            lines=lines,
            shipping_address=shipping_address,
            email=email,
        )
        stocks = [self.stock(s) for s in sorted(lines)]
        Stock.reserve_all(order.id, {s: q for s, (q, _) in lines.items()}, stocks)
        done = self._save(order, cart, *stocks)
        return Done(order, done.position)

    # --- orders --------------------------------------------------------------

    @retry_on_conflict
    def pay(
        self,
        order_id: UUID,
        amount: Decimal | str,
        reference: str,
        owner: str | None = None,
        expected_version: int | None = None,
    ) -> Done:
        order = self.order(order_id, owner)
        order.check_version(expected_version)
        order.pay(amount, reference)
        return self._save(order)

    @retry_on_conflict
    def ship(
        self,
        order_id: UUID,
        carrier: str,
        tracking_number: str,
        expected_version: int | None = None,
    ) -> Done:
        """Ship a paid order: its reserved units leave stock, in the same transaction."""
        order = self.order(order_id)
        order.check_version(expected_version)
        order.ship(carrier, tracking_number)
        stocks = [self.stock(s) for s in order.skus]
        for stock in stocks:
            stock.commit(order.id)
        done = self._save(order, *stocks)
        return Done(order, done.position)

    @retry_on_conflict
    def deliver(self, order_id: UUID, expected_version: int | None = None) -> Done:
        order = self.order(order_id)
        order.check_version(expected_version)
        order.deliver()
        return self._save(order)

    @retry_on_conflict
    def cancel(
        self,
        order_id: UUID,
        reason: str,
        owner: str | None = None,
        expected_version: int | None = None,
    ) -> Done:
        """Cancel before shipment and release the order's reservations, atomically."""
        order = self.order(order_id, owner)
        order.check_version(expected_version)
        order.cancel(reason)
        stocks = [self.stock(s) for s in order.skus]
        for stock in stocks:
            stock.release(order.id)
        done = self._save(order, *stocks)
        return Done(order, done.position)

    # --- loading -------------------------------------------------------------

    def product(self, sku_: str) -> Product:
        return self._get(Product, Product.create_id(sku(sku_)), f"Product {sku_} does not exist")

    def stock(self, sku_: str) -> Stock:
        return self._get(Stock, Stock.create_id(sku(sku_)), f"Product {sku_} does not exist")

    def cart(self, cart_id: UUID, owner: str | None = None) -> Cart:
        """A cart; with ``owner``, only if it is that customer's (else: as if absent)."""
        cart = self._get(Cart, cart_id, f"Cart {cart_id} does not exist")
        if owner is not None and cart.customer_id != owner:
            raise NotFound(f"Cart {cart_id} does not exist")
        return cart

    def order(self, order_id: UUID, owner: str | None = None) -> Order:
        """An order; with ``owner``, only if it is that customer's (else: as if absent)."""
        order = self._get(Order, order_id, f"Order {order_id} does not exist")
        if owner is not None and order.customer_id != owner:
            raise NotFound(f"Order {order_id} does not exist")
        return order

    def head(self) -> int:
        """The position of the last event in the global log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def _get(self, kind: type[A], aggregate_id: UUID, missing: str) -> A:
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(missing) from None
        if not isinstance(aggregate, kind):
            raise NotFound(missing)
        return aggregate

    def _exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.repository

    def _save(self, *aggregates: Aggregate) -> Done:
        recordings = self.save(*aggregates)
        return Done(aggregates[0], recordings[-1].notification.id if recordings else self.head())
