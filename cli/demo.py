"""Seed a store with a realistic shop history, for demos and benchmarks.

Everything is written through the :class:`~commands.service.Shop` commands, so the
history is one the shop itself could have recorded: a catalogue with stock receipts
and a few repricings, then customers' carts (1 to 4 lines, the odd edit), checkouts, and
a mix of fates: left placed, paid, shipped, delivered, cancelled before or after
payment, abandoned carts; stock-count adjustments; and now and then a checkout
refused for want of stock (the customer then drops that line and checks out again).

The whole plan is drawn from one ``random.Random(seed)`` before anything is written,
and stock is received from the plan's own demand, so the outcome (statuses, stock
levels, refusals, event counts) does not depend on how the worker threads interleave;
only positions and ids differ between runs.

Speed: orders are independent stories run by a pool of threads (the Shop is
thread-safe; on PostgreSQL each thread takes a pooled connection, SQLite serialises the
writes); a story carries the aggregates the commands hand back rather than loading
them again; and the shop that seeds should keep aggregates in memory (``SHOP_ENV``),
so that each command reads only the events its aggregates gained since, not a hot
SKU's whole stock history again and again.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID

from commands.service import Done, Shop
from domain.errors import ConcurrencyConflict, InsufficientStock
from domain.order import CANCELLED, DELIVERED, PAID, PLACED, SHIPPED
from domain.values import MAX_QUANTITY, Address
from eventstore.causes import caused_by

# eventsourcing settings for the shop that seeds: the library's aggregate cache, fast-
# forwarded from the store on every load (so still correct if others write meanwhile).
# It holds the catalogue, every stock and the carts and orders in flight.
SHOP_ENV = {"AGGREGATE_CACHE_MAXSIZE": "2000"}

ABANDONED = "abandoned"
CANCELLED_PLACED, CANCELLED_PAID = "cancelled-placed", "cancelled-paid"
# How an order's story ends, and how often (weights); each fate occurs at least once
# when there are orders enough.
FATES: dict[str, int] = {
    PLACED: 8,
    PAID: 10,
    SHIPPED: 12,
    DELIVERED: 49,
    CANCELLED_PLACED: 8,
    CANCELLED_PAID: 8,
}
STATUS_OF_FATE = {
    PLACED: PLACED,
    PAID: PAID,
    SHIPPED: SHIPPED,
    DELIVERED: DELIVERED,
    CANCELLED_PLACED: CANCELLED,
    CANCELLED_PAID: CANCELLED,
}
STAFF = "staff-seed"
ABANDON_RATE = 0.05  # carts left without checkout, on top of the orders
SHORT_RATE = 0.02  # stories whose first checkout is refused for want of stock
EDIT_RATE = 0.15  # stories whose customer changes a quantity before checking out
LIMITED_UNITS = 3  # stock of a limited edition: never enough for a short line
INSIST = 5  # times a seed sends a command that keeps losing races before giving up

_KINDS = [
    ("MUG", "mug"),
    ("TEE", "T-shirt"),
    ("CAP", "cap"),
    ("BAG", "tote bag"),
    ("POSTER", "poster"),
    ("SOCKS", "socks"),
    ("NOTE", "notebook"),
    ("PEN", "pen"),
]
_LOOKS = ["Red", "Blue", "Black", "White", "Green", "Grey", "Striped", "Dotted"]
_PLACES = [
    ("Berlin", "10115", "DE"),
    ("Paris", "75001", "FR"),
    ("Madrid", "28001", "ES"),
    ("Rome", "00184", "IT"),
    ("Vienna", "1010", "AT"),
    ("Amsterdam", "1011", "NL"),
    ("Lisbon", "1100-148", "PT"),
    ("Dublin", "D02 X285", "IE"),
]
_NAMES = ["Ada", "Bob", "Chiara", "Dmitri", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas"]
_ADJUST_REASONS = {
    -1: "damaged in the warehouse",
    1: "found at stock count",
}
_CARRIERS = ["DHL", "UPS", "GLS", "DPD"]


@dataclass(frozen=True)
class CatalogueEntry:
    """A product to add, the stock receipts it gets, and maybe one repricing."""

    sku: str
    name: str
    price: Decimal
    receipts: tuple[int, ...]
    new_price: Decimal | None = None


@dataclass(frozen=True)
class Story:
    """One customer's cart, from opening to the fate of its order."""

    number: int
    customer: str
    address: Address
    lines: tuple[tuple[str, int], ...]
    fate: str
    short: tuple[str, int] | None = None
    edit: tuple[str, int] | None = None


@dataclass(frozen=True)
class Adjustment:
    sku: str
    delta: int
    reason: str


@dataclass(frozen=True)
class Plan:
    """Every command the seed will send, drawn up front from the seed."""

    products: list[CatalogueEntry]
    tasks: list[Story | Adjustment]

    @property
    def stories(self) -> list[Story]:
        return [t for t in self.tasks if isinstance(t, Story)]


@dataclass
class SeedReport:
    """What a seed wrote and how fast."""

    products: int
    orders: dict[str, int]  # status -> orders left in it
    abandoned_carts: int
    refused: int
    adjustments: int
    events: int
    seconds: float
    order_ids: list[UUID] = field(repr=False, default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def draw(orders: int, seed: int = 1) -> Plan:
    """The plan of a history with ``orders`` orders, deterministic for a given ``seed``."""
    if orders < 1:
        raise ValueError("orders must be at least 1")
    rng = random.Random(seed)
    n_products = min(200, max(50, orders // 50))
    skus = [f"{_KINDS[i % len(_KINDS)][0]}-{i:04d}" for i in range(n_products)]
    # A few limited editions: the short lines ask for more than they will ever hold.
    limited = set(rng.sample(skus, max(1, n_products // 25)))
    regular = [s for s in skus if s not in limited]
    # Popularity falls with rank, as in any shop: a few SKUs are hot (and contended).
    popularity = [1 / (rank + 1) ** 0.8 for rank in range(len(regular))]
    customers = [f"cust-{n:05d}" for n in range(max(5, orders // 3))]
    fates = list(FATES)[:orders] + rng.choices(
        list(FATES), weights=list(FATES.values()), k=max(0, orders - len(FATES))
    )
    fates += [ABANDONED] * round(orders * ABANDON_RATE)
    rng.shuffle(fates)

    # The odd customer asks for more of a limited edition than there is: at least one.
    checked_out = [n for n, fate in enumerate(fates) if fate != ABANDONED]
    n_short = min(len(checked_out), max(1, round(SHORT_RATE * len(checked_out))))
    shorts = set(rng.sample(checked_out, n_short))

    stories: list[Story] = []
    demand: Counter[str] = Counter()
    for number, fate in enumerate(fates):
        k = rng.choices([1, 2, 3, 4], weights=[35, 35, 20, 10])[0]
        chosen = _distinct(rng, regular, popularity, k)
        lines = tuple((s, rng.choices([1, 2, 3, 5], weights=[60, 25, 10, 5])[0]) for s in chosen)
        edit = None
        if rng.random() < EDIT_RATE:
            edit = (lines[0][0], lines[0][1] + 1)
        short = None
        if number in shorts:
            short = (rng.choice(sorted(limited)), rng.randint(LIMITED_UNITS + 1, 10))
        if fate != ABANDONED:
            for s, q in lines:
                demand[s] += edit[1] if edit and edit[0] == s else q
        customer = rng.choice(customers)
        city, postal_code, country = rng.choice(_PLACES)
        address = Address(
            name=f"{rng.choice(_NAMES)} {customer[-5:]}",
            line1=f"{rng.randint(1, 200)} Market Street",
            city=city,
            postal_code=postal_code,
            country=country,
        )
        stories.append(Story(number, customer, address, lines, fate, short, edit))

    products: list[CatalogueEntry] = []
    adjustments: list[Adjustment] = []
    for i, s in enumerate(skus):
        name = f"{rng.choice(_LOOKS)} {_KINDS[i % len(_KINDS)][1]}"
        price = Decimal(rng.randrange(199, 9999)).scaleb(-2)
        new_price = Decimal(rng.randrange(199, 9999)).scaleb(-2) if rng.random() < 0.1 else None
        # Enough for every checkout of the plan plus a margin, so that no regular line is
        # ever short, whatever the order the threads run the stories in.
        margin = 10 + demand[s] // 10
        units = LIMITED_UNITS if s in limited else demand[s] + margin
        products.append(CatalogueEntry(s, name, price, _split(rng, units), new_price))
        if s not in limited and rng.random() < 0.2:
            # Losses stay within half the margin: available never falls below zero.
            delta = -rng.randint(1, margin // 2) if rng.random() < 0.6 else rng.randint(1, 5)
            adjustments.append(Adjustment(s, delta, _ADJUST_REASONS[1 if delta > 0 else -1]))

    tasks: list[Story | Adjustment] = [*stories, *adjustments]
    rng.shuffle(tasks)
    return Plan(products, tasks)


def seed(
    shop: Shop,
    orders: int,
    *,
    seed: int = 1,
    threads: int = 4,
    on_start: Callable[[str, int], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> SeedReport:
    """Write the history of ``draw(orders, seed)`` to ``shop`` with ``threads`` workers.

    ``on_start(phase, steps)`` announces each phase ("catalogue", "orders") and
    ``on_step()`` is called (from worker threads) as each step of it ends: hooks for a
    progress bar.
    """
    plan = draw(orders, seed)
    start_position = shop.head()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="seed") as pool:

        def run(phase: str, items: list[Any], step: Callable[[Any], Any]) -> list[Any]:
            if on_start:
                on_start(phase, len(items))

            def one(item: Any) -> Any:
                result = step(item)
                if on_step:
                    on_step()
                return result

            futures = [pool.submit(one, item) for item in items]
            try:
                return [future.result() for future in futures]
            except BaseException:
                # Fail fast: do not play thousands of stories after the first one failed.
                for future in futures:
                    future.cancel()
                raise

        run("catalogue", plan.products, lambda p: _stock_product(shop, p))
        outcomes = run("orders", plan.tasks, lambda t: _run_task(shop, t))
    seconds = time.perf_counter() - started

    stories = plan.stories
    statuses = Counter(STATUS_OF_FATE[s.fate] for s in stories if s.fate != ABANDONED)
    return SeedReport(
        products=len(plan.products),
        orders=dict(sorted(statuses.items())),
        abandoned_carts=sum(s.fate == ABANDONED for s in stories),
        refused=sum(s.short is not None for s in stories),
        adjustments=len(plan.tasks) - len(stories),
        events=_count_events(shop, start_position),
        seconds=seconds,
        order_ids=[o for o in outcomes if isinstance(o, UUID)],
    )


def _stock_product(shop: Shop, product: CatalogueEntry) -> None:
    with caused_by(STAFF, "staff", f"seed-catalogue-{product.sku}"):
        shop.add_product(product.sku, product.name, product.price)
        for units in product.receipts:
            _insist(shop.receive_stock, product.sku, units, "seed delivery")
        if product.new_price is not None:
            shop.change_product(product.sku, price=product.new_price)


def _run_task(shop: Shop, task: Story | Adjustment) -> UUID | None:
    if isinstance(task, Adjustment):
        with caused_by(STAFF, "staff", f"seed-adjust-{task.sku}"):
            _insist(shop.adjust_stock, task.sku, task.delta, task.reason)
        return None
    return _run_story(shop, task)


def _run_story(shop: Shop, story: Story) -> UUID | None:
    """Play one cart's story; returns its order's id (None for an abandoned cart)."""
    me = story.customer
    with caused_by(me, "customer", f"seed-{story.number}"):
        cart_id = shop.open_cart(me).aggregate.id
        for s, q in story.lines:
            shop.add_to_cart(cart_id, s, q, owner=me)
        if story.edit:
            shop.set_cart_quantity(cart_id, *story.edit, owner=me)
        if story.fate == ABANDONED:
            return None
        email = f"{me}@example.com"
        if story.short:
            shop.add_to_cart(cart_id, *story.short, owner=me)
            try:
                _insist(shop.check_out, cart_id, story.address, email, owner=me)
            except InsufficientStock:
                shop.remove_from_cart(cart_id, story.short[0], owner=me)
            else:
                raise AssertionError(f"{story.short[0]} should have been short")
        order = _insist(shop.check_out, cart_id, story.address, email, owner=me).aggregate
        if story.fate in (PAID, SHIPPED, DELIVERED, CANCELLED_PAID):
            shop.pay(order.id, order.total, f"PSP-{story.number:07d}", owner=me)
        if story.fate == CANCELLED_PLACED:
            _insist(shop.cancel, order.id, "changed my mind", owner=me)
    with caused_by(STAFF, "staff", f"seed-{story.number}-fulfil"):
        if story.fate == CANCELLED_PAID:
            _insist(shop.cancel, order.id, "could not be fulfilled")
        if story.fate in (SHIPPED, DELIVERED):
            carrier = _CARRIERS[story.number % len(_CARRIERS)]
            _insist(shop.ship, order.id, carrier, f"{carrier}{story.number:09d}")
        if story.fate == DELIVERED:
            shop.deliver(order.id)
    return order.id  # type: ignore[no-any-return]


def _insist(command: Callable[..., Done], *args: Any, **kwargs: Any) -> Done:
    """Send a stock-touching command again when it lost every race the service retried.

    Hot SKUs are contended by every worker; a refusal with ConcurrencyConflict stored
    nothing, so sending the command again is safe, as for any client that gets a 409.
    """
    for _ in range(INSIST - 1):
        try:
            return command(*args, **kwargs)
        except ConcurrencyConflict:
            continue
    return command(*args, **kwargs)


def _count_events(shop: Shop, after: int) -> int:
    """Events stored after position ``after``.

    Counted rather than taken from the head: on PostgreSQL a transaction that lost a
    race still used up positions, so the log can have gaps.
    """
    count, position = 0, after
    while batch := shop.recorder.select_notifications(position, 10_000, inclusive_of_start=False):
        count += len(batch)
        position = batch[-1].id
    return count


def _distinct(rng: random.Random, items: list[str], weights: list[float], k: int) -> list[str]:
    chosen: list[str] = []
    while len(chosen) < min(k, len(items)):
        pick = rng.choices(items, weights=weights)[0]
        if pick not in chosen:
            chosen.append(pick)
    return chosen


def _split(rng: random.Random, units: int) -> tuple[int, ...]:
    """Receipts summing to ``units``, none above what one receipt may hold."""
    parts: list[int] = []
    while units > 0:
        part = min(units, MAX_QUANTITY, max(1, rng.randint(units // 3, units)))
        parts.append(part)
        units -= part
    return tuple(parts)
