"""The application service: one method per command of the HTTP API.

Each method loads the aggregates it needs, calls them (they check the rules) and
saves all their new events in one transaction. A write that loses an optimistic
concurrency race is retried from a fresh load a bounded number of times. A command run
under an idempotency key (commands/idempotency.py) that was already executed is
answered from its first execution instead, and its key is saved with its events.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Concatenate, ParamSpec, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Recording,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder, Mapper, RecordConflictError
from eventsourcing.utils import Environment, EnvType

from commands import idempotency, turns
from commands.cache import CACHE_ENV, CACHE_SIZE, Aggregates
from commands.group_commit import GroupCommitRecorder, when_queued
from commands.idempotency import IdempotencyKeys, KeyStore, POPOKeyRecorder
from commands.outcome import CommandObserver, Done, outcome_of
from commands.recorders import RECORDER_TOPICS
from domain.base import Expected, ShopAggregate
from domain.cart import Cart
from domain.errors import AlreadyExists, ConcurrencyConflict, DomainError, NotFound
from domain.order import DEFAULT_PAYMENT_WINDOW, Order
from domain.product import Product
from domain.stock import Stock
from domain.values import DEFAULT_CURRENCY, Address, currency_code, sku
from eventstore import log, retry
from eventstore.causes import current_cause
from eventstore.url import StoreURL

__all__ = ["CommandObserver", "Done", "Shop"]

P = ParamSpec("P")
A = TypeVar("A", bound=ShopAggregate)

MAX_ATTEMPTS = retry.CONFLICT_ATTEMPTS
"""Runs of a command that keeps losing races before it gives up (eventstore/retry.py,
which also says how long it waits between them)."""


def retry_on_conflict(
    method: Callable[Concatenate[Shop, P], Done],
) -> Callable[Concatenate[Shop, P], Done]:
    """Run a command: replay it if its idempotency key was done, else execute it,
    re-running from a fresh load when a concurrent write got there first.

    The key is looked up again before every attempt: the write that won the race may
    have been this very request's twin, which stored the key.
    """

    @functools.wraps(method)
    def wrapper(shop: Shop, /, *args: P.args, **kwargs: P.kwargs) -> Done:
        name = method.__name__
        try:
            done = shop._attempt(name, functools.partial(method, shop, *args, **kwargs))
        except BaseException as error:
            shop._tell("command_finished", name, outcome_of(error))
            raise
        shop._tell("command_finished", name, "replayed" if done.replayed else "ok")
        return done

    return wrapper


class Shop(Application[UUID]):
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
    ) -> None:
        """The write side on ``store`` (default: in memory).

        ``env`` adds eventsourcing settings (pool sizes, the aggregate cache), first as
        the library's runners pass it. ``command_wait``: how long a command waits for
        its turn on a busy aggregate, or to be written, before it is refused (Busy: 503).
        """
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
        self.aggregates = Aggregates(self.repository, self.turns.trusts)
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
        super().close()

    def construct_recorder(self) -> ApplicationRecorder:
        if not self.env.get("PERSISTENCE_MODULE", "eventsourcing.popo").endswith(".popo"):
            return super().construct_recorder()
        # The in-memory factory takes no recorder topic.
        return POPOKeyRecorder()

    def construct_mapper(self) -> Mapper[UUID]:
        # The log's own mapper, which the read side decodes with too (eventstore/log.py).
        return log.mapper(cipher=self.factory.cipher(), compressor=self.factory.compressor())

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

    def head(self) -> int:
        """The position of the last event in the global log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

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

    def _attempt(self, name: str, run: Callable[[], Done]) -> Done:
        """Replay or run the command ``name``, running it again after each lost race."""
        request = idempotency.current_request()

        def once() -> Done:
            if request is not None and (done := self._replay(request)) is not None:
                return done
            self.aggregates.begin()
            try:
                return run()
            except DomainError:
                if not self.aggregates.confirmed(self.turns.timeout):
                    raise RecordConflictError("decided on a save that failed") from None
                # A twin with this key may have won meanwhile and left this run a mix of
                # old and new state that it refuses (a stale open cart beside the twin's
                # fresh reservations): then the answer is the twin's.
                if request is not None and (done := self._replay(request)) is not None:
                    return done
                raise

        retrying = retry.on_conflict(
            attempts=MAX_ATTEMPTS, before_retry=lambda: self._tell("command_retried", name)
        )
        try:
            return retrying(once)
        except RecordConflictError:
            raise ConcurrencyConflict(
                f"{name} lost to concurrent writes {MAX_ATTEMPTS} times; try again"
            ) from None

    def _replay(self, request: idempotency.IdempotentRequest) -> Done | None:
        """The first execution's answer if this request's key was done (else None)."""
        record = self.keys.find(current_cause().actor, request)
        if record is None:
            return None
        aggregate: Aggregate = self.repository.get(
            record.aggregate_id, version=record.aggregate_version
        )
        return Done(aggregate, record.position, replayed=True)

    def _tell(self, what: str, *args: str) -> None:
        for observer in self.observers:
            getattr(observer, what)(*args)

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        # The library's own, with the cache kept by commands/cache.py.
        try:
            recordings = self.events.put(
                processing_event.events,
                tracking=processing_event.tracking,
                **processing_event.saved_kwargs,
            )
        except BaseException:
            self.aggregates.failed(processing_event.aggregates)
            raise
        self.aggregates.saved(processing_event.aggregates)
        return recordings

    def _save_aggregates(
        self, aggregates: Sequence[Aggregate], kwargs: dict[str, Any]
    ) -> list[Recording[UUID]]:
        # Application.save() less ProcessingEvent.collect_events(), whose isinstance checks
        # against runtime Protocols cost about a tenth of a save on Python 3.11: all that
        # is saved here is aggregates.
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in aggregates:
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    def _save(self, *aggregates: Aggregate) -> Done:
        request = idempotency.current_request()
        kwargs: dict[str, Any] = {}
        if request is not None:
            first = aggregates[0]
            key = self.keys.record(current_cause().actor, request, first.id, first.version)
            kwargs[idempotency.SAVE_KWARG] = key

        def queued(save: object) -> None:  # the next command on them may decide now
            self.aggregates.queued({a.id: a for a in aggregates}, save)
            self.turns.release_held()

        with when_queued(queued, after=self.aggregates.followed()):
            recordings = self._save_aggregates(aggregates, kwargs)
        return Done(aggregates[0], recordings[-1].notification.id if recordings else self.head())
