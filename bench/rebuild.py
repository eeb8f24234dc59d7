"""Blue/green rebuild speed over a log of about 1,000,000 events, on PostgreSQL.

Seeding: the history ``cli.demo.draw`` plans (a catalogue with receipts and
repricings; carts of 1 to 4 lines, the odd edit; checkouts, some first refused for want
of stock; payments, shipments, deliveries, cancellations before and after payment,
abandoned carts; stock adjustments) is played on the domain aggregates in memory, in
waves of 200 interleaved stories over a year of simulated time, and bulk-inserted through
the recorder (``shop.mapper.to_stored_event``, 5,000 events per ``insert_events``): the
rows the shop would have stored, in a minute instead of hours of commands.

Then, on that log (the read models' live copies start empty):

1. all six read models rebuilt at once (``ReadSide.rebuild`` x 6, threads of one
   process): the read side's throughput, log events per second of wall time;
2. each read model rebuilt alone (``rebuild_blocking``), now with a full live copy to
   compare with and swap out: log events per second, and where the time went (copy,
   indexes, swap with its comparison).

Every figure is log events covered per second: the length of the log divided by the
time from the rebuild's start until its new copy was swapped in.

A copy with at least ``PARALLEL_FROM`` events to go is decoded and handled by worker
processes (as many as cores, ``--processes``; 1: none), read and written in order by the
rebuild's own threads (``projections/engine/parallel.py``).

    python -m bench.rebuild [--events 1000000] [--batch-size 2000] [--processes N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import bulk_append, database, open_shop, settings_for
from cli.demo import (
    ABANDONED,
    CANCELLED_PAID,
    CANCELLED_PLACED,
    DELIVERED,
    PAID,
    SHIPPED,
    Adjustment,
    Plan,
    Story,
    draw,
)
from commands.service import Shop
from domain.cart import Cart
from domain.order import DEFAULT_PAYMENT_WINDOW, Order
from domain.product import Product
from domain.stock import Stock
from eventshop.bootstrap import open_read_side
from projections import ReadSide

EVENTS_PER_ORDER = 11  # a little under what a drawn plan averages, abandoned carts and all
WAVE = 200
CARRIERS = ("DHL", "UPS", "GLS", "DPD")
QUICK = {"events": 20_000}


class Clock:
    """A simulated clock: each command a few seconds after the last, over about a year."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.now = start
        self.step = step

    def stamp(self, events: list[Any]) -> list[Any]:
        self.now += self.step
        for event in events:
            object.__setattr__(event, "timestamp", self.now)
        return events


def play(plan: Plan, currency: str, clock: Clock, limit: int) -> Iterator[Any]:
    """The events the shop would have recorded for ``plan``, in the order of a busy day;
    stops after the wave of stories that reaches ``limit`` events."""
    played = 0
    products: dict[str, Product] = {}
    stocks: dict[str, Stock] = {}
    for entry in plan.products:
        product = Product.add(entry.sku, entry.name, entry.price, currency=currency)
        stock = Stock.open(product.sku)
        products[entry.sku], stocks[entry.sku] = product, stock
        played += 2
        yield from clock.stamp([*product.collect_events(), *stock.collect_events()])
        for units in entry.receipts:
            stock.receive(units, "seed delivery")
            yield from clock.stamp(stock.collect_events())
        if entry.new_price is not None:
            product.change(price=entry.new_price)
            yield from clock.stamp(product.collect_events())
    tasks = plan.tasks
    for start in range(0, len(tasks), WAVE):
        if played >= limit:
            return
        wave: list[Any] = []
        placed: list[tuple[Story, Order]] = []
        for task in tasks[start : start + WAVE]:  # every cart is filled and checked out
            if isinstance(task, Adjustment):
                stocks[task.sku].adjust(task.delta, task.reason)
                wave += clock.stamp(stocks[task.sku].collect_events())
                continue
            order = _check_out(task, products, stocks, currency, clock, wave)
            if order is not None:
                placed.append((task, order))
        # ... then payments, cancellations, shipments and deliveries come in.
        for step in ("pay", "cancel", "ship", "deliver"):
            for story, order in placed:
                _fulfil(step, story, order, stocks, clock, wave)
        played += len(wave)
        yield from wave


def _check_out(
    story: Story,
    products: dict[str, Product],
    stocks: dict[str, Stock],
    currency: str,
    clock: Clock,
    out: list[Any],
) -> Order | None:
    cart = Cart.open(story.customer)
    out += clock.stamp(cart.collect_events())
    for sku, units in story.lines:
        cart.add_item(sku, units, products[sku].price_in(currency))
        out += clock.stamp(cart.collect_events())
    if story.edit:
        cart.set_quantity(*story.edit)
        out += clock.stamp(cart.collect_events())
    if story.fate == ABANDONED:
        return None
    if story.short:  # refused for want of stock (recording nothing); the line goes
        sku, units = story.short
        cart.add_item(sku, units, products[sku].price_in(currency))
        cart.remove_item(sku)
        out += clock.stamp(cart.collect_events())
    lines = {s: (line.quantity, line.unit_price) for s, line in cart.lines.items()}
    cart.check_out(Order.create_id(cart.id))
    order = Order.place(
        customer_id=cart.customer_id,
        cart_id=cart.id,
        lines=lines,
        shipping_address=story.address,
        email=f"{story.customer}@example.com",
        currency=currency,
        payment_due_at=clock.now + DEFAULT_PAYMENT_WINDOW,
    )
    touched = [stocks[s] for s in sorted(lines)]
    Stock.reserve_all(order.id, {s: q for s, (q, _) in lines.items()}, touched)
    out += clock.stamp(
        [
            *order.collect_events(),
            *cart.collect_events(),
            *(e for s in touched for e in s.collect_events()),
        ]
    )
    return order


def _fulfil(
    step: str,
    story: Story,
    order: Order,
    stocks: dict[str, Stock],
    clock: Clock,
    out: list[Any],
) -> None:
    fate = story.fate
    touched: list[Stock] = []
    if step == "pay" and fate in (PAID, SHIPPED, DELIVERED, CANCELLED_PAID):
        order.pay(order.total, f"PSP-{story.number:07d}")
    elif step == "cancel" and fate in (CANCELLED_PLACED, CANCELLED_PAID):
        order.cancel("changed my mind" if fate == CANCELLED_PLACED else "not fulfilled")
        touched = [stocks[s] for s in order.skus]
        for stock in touched:
            stock.release(order.id)
    elif step == "ship" and fate in (SHIPPED, DELIVERED):
        carrier = CARRIERS[story.number % len(CARRIERS)]
        order.ship(carrier, f"{carrier}{story.number:09d}")
        touched = [stocks[s] for s in order.skus]
        for stock in touched:
            stock.commit(order.id)
    elif step == "deliver" and fate == DELIVERED:
        order.deliver()
    else:
        return
    out += clock.stamp([*order.collect_events(), *(e for s in touched for e in s.collect_events())])


def seed(shop: Shop, events: int) -> tuple[int, float]:
    """About ``events`` events of a realistic history; (events stored, seconds)."""
    started = time.perf_counter()
    orders = max(10, round(events / EVENTS_PER_ORDER))
    random.seed(1)
    clock = Clock(datetime.now(UTC) - timedelta(days=365), timedelta(seconds=2))
    stored = bulk_append(shop, play(draw(orders, seed=1), shop.currency, clock, events))
    return stored, time.perf_counter() - started


def all_together(read_side: ReadSide) -> float:
    """Seconds until every read model, rebuilt at once, has been swapped in."""
    started = time.perf_counter()
    for name in read_side.names:
        read_side.rebuild(name)
    for name in read_side.names:
        outcome = read_side.wait_rebuild(name, timeout=24 * 3600)
        if outcome is None or outcome.error:
            raise RuntimeError(f"{name}: {outcome}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=None, help="events per transaction")
    parser.add_argument(
        "--processes", type=int, default=None, help="worker processes per rebuild (default: cores)"
    )
    parser.add_argument("--quick", action="store_true", help=f"tiny: {QUICK}")
    parser.add_argument("--only", default="", help="comma-separated read models, alone")
    args = parser.parse_args()
    target = QUICK["events"] if args.quick else args.events

    with database("rebuild") as base:
        url = f"{base}?schema=shop"
        shop = open_shop(url)
        try:
            events, seconds = seed(shop, target)
            print(f"seeded {events:,} events in {seconds:.0f} s ({events / seconds:,.0f}/s)")
            read_side = open_read_side(settings_for(url), shop)
            if args.batch_size:
                read_side.rebuilder.batch_size = args.batch_size
            if args.processes is not None:
                read_side.rebuilder.processes = args.processes
            try:
                names = args.only.split(",") if args.only else read_side.names
                together = None
                if not args.only:
                    together = all_together(read_side)
                    print(f"all six at once: {together:.1f} s", flush=True)
                alone = {}
                for name in names:
                    alone[name] = read_side.rebuild_blocking(name)
                    print(f"  {name}: {alone[name].seconds:.1f} s", flush=True)
            finally:
                read_side.close()
        finally:
            shop.close()

    batch = args.batch_size or read_side.rebuilder.batch_size
    processes = read_side.rebuilder.processes
    workers = f"{processes} worker processes" if processes > 1 else "no worker processes"
    print(
        f"\nBlue/green rebuild over {events:,} events on PostgreSQL ({os.cpu_count()} cores),"
        f" {batch} events per transaction, {workers}; log events per second"
    )
    header = f"{'read model':<12}{'events/s':>12}{'seconds':>9}{'copy':>8}{'indexes':>9}"
    header += f"{'swap':>7}  rows compared"
    print(header)
    print("-" * len(header))
    for name, outcome in alone.items():
        phases, comparison, seconds = outcome.phases, outcome.comparison, outcome.seconds or 0.0
        assert comparison is not None
        rows = sum(t.new_rows or 0 for t in comparison.tables.values())
        print(
            f"{name:<12}{events / seconds:>12,.0f}{seconds:>9.1f}"
            f"{phases['copy']:>8.1f}{phases['indexes']:>9.1f}{phases['swap']:>7.1f}"
            f"  {rows:,} ({'equal' if comparison.equal else 'DIFFERENT'})"
        )
    if together is not None:
        print(f"{'all six':<12}{events / together:>12,.0f}{together:>9.1f}  (at once)")


if __name__ == "__main__":
    main()
