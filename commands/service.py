"""The application service: one method per command of the HTTP API.

Each method loads the aggregates it needs, calls them (they check the rules) and
saves all their new events in one transaction. A write that loses an optimistic
concurrency race is retried from a fresh load a bounded number of times. A command run
under an idempotency key (commands/idempotency.py) that was already executed is
answered from its first execution instead, and its key is saved with its events.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ParamSpec, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
)
from eventsourcing.persistence import ApplicationRecorder, Mapper
from eventsourcing.utils import Environment, EnvType
from tenacity import Retrying

from commands import erasure, idempotency, turns
from commands.cache import CACHE_ENV, CACHE_SIZE, Aggregates
from commands.group_commit import GroupCommitRecorder
from commands.idempotency import IdempotencyKeys, KeyStore, POPOKeyRecorder
from commands.outcome import CommandObserver, Done
from commands.recorders import RECORDER_TOPICS
from commands.running import CommandRunner, retry_on_conflict
from domain.base import Expected, ShopAggregate
from domain.cart import Cart
from domain.errors import AlreadyExists, NotFound
from domain.order import DEFAULT_PAYMENT_WINDOW, Order
from domain.product import Product
from domain.stock import Stock
from domain.values import DEFAULT_CURRENCY, Address, currency_code, sku
from eventstore import log
from eventstore.keys import MemoryKeyTable
from eventstore.personal import KeyRing
from eventstore.url import StoreURL

__all__ = ["CommandObserver", "Done", "Shop"]

P = ParamSpec("P")
A = TypeVar("A", bound=ShopAggregate)


class Shop(CommandRunner):
    """The eventshop write side over any eventsourcing store.

    Prices and orders are in the shop's currency (default EUR).
    """

    name = log.LOG_NAME
    # A SKU's stock lives for years and gains events with every order.
    snapshotting_intervals = {Stock: 100}  # noqa: RUF012
    payment_window = DEFAULT_PAYMENT_WINDOW  # an order placed now is due this much later

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        store: StoreURL | None = None,
        currency: str = DEFAULT_CURRENCY,
        idempotency_ttl: timedelta = idempotency.DEFAULT_TTL,
        command_wait: float = turns.DEFAULT_TIMEOUT,
        keys: KeyRing | None = None,
        encrypt: bool = True,
    ) -> None:
        """The write side on ``store`` (default: in memory).

        ``env`` adds eventsourcing settings (pool sizes, the aggregate cache), first as
        the library's runners pass it. ``command_wait``: how long a command waits for
        its turn on a busy aggregate, or to be written, before it is refused (Busy: 503).
        ``keys``: the customers' data keys, which seal personal fields (default: keys
        kept in memory, with a random master key); ``encrypt`` off stores them plain.
        """
        # The library's __init__ makes the mapper, which seals with these.
        self.data_keys = keys or KeyRing(MemoryKeyTable(), os.urandom(32), ttl=0.0)
        self.encrypt = encrypt
        # Checked before connecting: a misconfigured currency must not reach an event.
        self.currency = currency_code(currency)
        self.store = store or StoreURL("memory")
        library_env = {**self.store.library_env(), **(env or {})}
        super().__init__(library_env)
        if not isinstance(self.recorder, KeyStore):
            self.close()
            raise TypeError(
                f"{type(self.recorder).__name__} keeps no idempotency keys;"
                " APPLICATION_RECORDER_TOPIC must name a commands.idempotency recorder"
            )
        self.keys = IdempotencyKeys(self.recorder, idempotency_ttl)
        self.observers: list[CommandObserver] = []
        self.turns = turns.Turns(command_wait, turns.DatabaseTurns.for_store(self.store))
        # A cached aggregate holding personal data lives no longer than a cached key.
        self.aggregates = Aggregates(self.repository, self.turns.trusts, self.data_keys.ttl)
        # One retry policy per command name, made once (tenacity keeps its state per thread).
        self._retrying: dict[str, Retrying] = {}
        if isinstance(self.recorder, GroupCommitRecorder):
            self.recorder.queue_timeout = command_wait

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        environment = super().construct_env(name, env)
        topic = RECORDER_TOPICS.get(environment.get("PERSISTENCE_MODULE", ""))
        if topic and not environment.get("APPLICATION_RECORDER_TOPIC"):
            environment["APPLICATION_RECORDER_TOPIC"] = topic
        # Recently used aggregates stay in memory (commands/cache.py).
        environment.setdefault("AGGREGATE_CACHE_MAXSIZE", CACHE_SIZE)
        environment.update(CACHE_ENV)
        return environment

    def close(self) -> None:
        self.turns.close()
        self.data_keys.close()
        super().close()

    def construct_recorder(self) -> ApplicationRecorder:
        if not self.env.get("PERSISTENCE_MODULE", "eventsourcing.popo").endswith(".popo"):
            return super().construct_recorder()
        # The in-memory factory takes no recorder topic.
        return POPOKeyRecorder()

    def construct_mapper(self) -> Mapper[UUID]:
        # The log's own mapper, which the read side decodes with too (eventstore/log.py).
        return log.mapper(
            self.data_keys,
            encrypt=self.encrypt,
            cipher=self.factory.cipher(),
            compressor=self.factory.compressor(),
        )

    # --- catalogue and stock -------------------------------------------------

    @retry_on_conflict
    def add_product(self, sku_: str, name: str, price: Decimal | str) -> Done:
        product = Product.add(sku_, name, price, currency=self.currency)
        if self._exists(product.id):
            raise AlreadyExists(f"Product {product.sku} already exists", sku=product.sku)
        return self._save(product, Stock.open(product.sku))

    @retry_on_conflict
    def change_product(
        self,
        sku_: str,
        name: str | None = None,
        price: Decimal | str | None = None,
        expected_version: Expected = None,
    ) -> Done:
        return self._change(
            Product.create_id(sku(sku_)),
            lambda: self.product(sku_),
            expected_version,
            lambda product: product.change(name=name, price=price),
        )

    @retry_on_conflict
    def receive_stock(
        self, sku_: str, quantity: int, note: str = "", expected_version: Expected = None
    ) -> Done:
        return self._change(
            Stock.create_id(sku(sku_)),
            lambda: self.stock(sku_),
            expected_version,
            lambda stock: stock.receive(quantity, note),
        )

    @retry_on_conflict
    def adjust_stock(
        self, sku_: str, delta: int, reason: str, expected_version: Expected = None
    ) -> Done:
        return self._change(
            Stock.create_id(sku(sku_)),
            lambda: self.stock(sku_),
            expected_version,
            lambda stock: stock.adjust(delta, reason),
        )

    # --- carts ---------------------------------------------------------------

    @retry_on_conflict
    def open_cart(self, customer_id: str) -> Done:
        return self._save(Cart.open(customer_id))

    @retry_on_conflict
    def add_to_cart(
        self,
        cart_id: UUID,
        sku_: str,
        quantity: int,
        owner: str | None = None,
        expected_version: Expected = None,
    ) -> Done:
        return self._change(
            cart_id,
            lambda: self.cart(cart_id, owner),
            expected_version,
            lambda cart: cart.add_item(sku_, quantity, self.product(sku_).price_in(self.currency)),
        )

    @retry_on_conflict
    def set_cart_quantity(
        self,
        cart_id: UUID,
        sku_: str,
        quantity: int,
        owner: str | None = None,
        expected_version: Expected = None,
    ) -> Done:
        return self._change(
            cart_id,
            lambda: self.cart(cart_id, owner),
            expected_version,
            lambda cart: cart.set_quantity(sku_, quantity),
        )

    @retry_on_conflict
    def remove_from_cart(
        self,
        cart_id: UUID,
        sku_: str,
        owner: str | None = None,
        expected_version: Expected = None,
    ) -> Done:
        return self._change(
            cart_id,
            lambda: self.cart(cart_id, owner),
            expected_version,
            lambda cart: cart.remove_item(sku_),
        )

    @retry_on_conflict
    def check_out(
        self,
        cart_id: UUID,
        shipping_address: Address,
        email: str,
        owner: str | None = None,
        expected_version: Expected = None,
    ) -> Done:
        """Close the cart, place the order and reserve every line's units, atomically.

        All of it is one ``save()``: if any SKU is short, or any of the aggregates was
        changed meanwhile, nothing at all is recorded.
        """
        with self.turns.of(cart_id):
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
                currency=self.currency,
                payment_due_at=datetime.now(UTC) + self.payment_window,
            )
            with self._stock_turns(lines) as stocks:
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
        expected_version: Expected = None,
    ) -> Done:
        return self._change(
            order_id,
            lambda: self.order(order_id, owner),
            expected_version,
            lambda order: order.pay(amount, reference),
        )

    @retry_on_conflict
    def ship(
        self,
        order_id: UUID,
        carrier: str,
        tracking_number: str,
        expected_version: Expected = None,
    ) -> Done:
        """Ship a paid order: its reserved units leave stock, in the same transaction."""
        with self.turns.of(order_id):
            order = self.order(order_id)
            order.check_version(expected_version)
            order.ship(carrier, tracking_number)
            with self._stock_turns(order.skus) as stocks:
                for stock in stocks:
                    stock.commit(order.id)
                done = self._save(order, *stocks)
        return Done(order, done.position)

    @retry_on_conflict
    def deliver(self, order_id: UUID, expected_version: Expected = None) -> Done:
        return self._change(
            order_id, lambda: self.order(order_id), expected_version, lambda o: o.deliver()
        )

    @retry_on_conflict
    def cancel(
        self,
        order_id: UUID,
        reason: str,
        owner: str | None = None,
        expected_version: Expected = None,
    ) -> Done:
        """Cancel before shipment and release the order's reservations, atomically."""
        with self.turns.of(order_id):
            order = self.order(order_id, owner)
            order.check_version(expected_version)
            order.cancel(reason)
            with self._stock_turns(order.skus) as stocks:
                for stock in stocks:
                    stock.release(order.id)
                done = self._save(order, *stocks)
        return Done(order, done.position)

    # --- personal data (commands/erasure.py) ----------------------------------

    erase_customer = retry_on_conflict(erasure.erase_customer)
    plain_personal_events = erasure.plain_personal_events
    customer = erasure.customer

    # --- taking turns ---------------------------------------------------------

    def _change(
        self,
        aggregate_id: UUID,
        load: Callable[[], A],
        expected_version: Expected,
        change: Callable[[A], object],
    ) -> Done:
        """The shape of most commands: on the aggregate's turn, load it, check the
        version the client expects, let it decide (it raises if a rule forbids), save."""
        with self.turns.of(aggregate_id):
            aggregate = load()
            aggregate.check_version(expected_version)
            change(aggregate)
            return self._save(aggregate)

    @contextmanager
    def _stock_turns(self, skus: Iterable[str]) -> Iterator[list[Stock]]:
        """The stock levels of these SKUs, loaded on their turns (held for the block).

        Stock turns are taken last, all at once: whoever holds one asks for no other."""
        ordered = sorted(skus)
        with self.turns.of(*(Stock.create_id(s) for s in ordered)):
            yield [self.stock(s) for s in ordered]

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

    def _get(self, kind: type[A], aggregate_id: UUID, missing: str) -> A:
        try:
            aggregate = self.aggregates.load(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(missing) from None
        if not isinstance(aggregate, kind):
            raise NotFound(missing)
        return aggregate

    def _exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.repository

    def purge_idempotency_keys(self) -> int:
        """Delete the expired idempotency keys now (commands also do it now and then)."""
        return self.keys.purge()
