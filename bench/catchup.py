"""Catch-up speed of the read side on PostgreSQL, next to eventsourcing's own runner.

Run from the repository root: ``python -m bench.catchup [--events 100000]``.

Seeds at least ``--events`` events through the Shop (whole customer journeys, several
threads), then measures, over that same log and in the same run, how many log events
per second each read model catches up with:

- our runner, one read model alone (batches of ``--batch-size`` events per transaction);
- our runner, all read models together (one process, one thread each);
- eventsourcing's ``ProjectionRunner``: one event per transaction, subscribed to the
  read model's topics only (its best case).

Every figure is "log events covered per second": the log's length divided by the time
from start until the read model's tracked position reached the end of the log.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time
from decimal import Decimal

from eventsourcing.projection import ProjectionRunner

from bench.common import database, open_shop, settings_for
from commands.service import Shop
from domain.errors import DomainError
from domain.values import Address
from eventshop.bootstrap import open_read_side
from eventstore.url import StoreURL
from projections import MODELS
from projections.engine.base import ReadModel
from projections.engine.postgres_recorder import PostgresReadModelRecorder

ADDRESS = Address(name="Bench", line1="1 Main St", city="Berlin", postal_code="10115", country="DE")


def seed(shop: Shop, target: int, threads: int) -> float:
    """Customer journeys until the log holds ``target`` events; returns seconds taken."""
    skus_per_thread = 15
    started = time.perf_counter()

    def journeys(t: int) -> None:
        skus = [f"T{t}-{i}" for i in range(skus_per_thread)]
        for i, sku in enumerate(skus):
            shop.add_product(sku, f"Bench item {sku}", Decimal(f"{i + 1}.50"))
            shop.receive_stock(sku, 1000)
        n = 0
        while shop.head() < target:
            n += 1
            lines = [skus[(n + k) % skus_per_thread] for k in range(3)]
            try:
                cart = shop.open_cart(f"customer-{t}-{n % 97}").aggregate.id
                for k, sku in enumerate(lines):
                    shop.add_to_cart(cart, sku, 1 + k % 2)
                order = shop.check_out(cart, ADDRESS, "bench@example.com").aggregate
                if n % 5 == 0:
                    shop.cancel(order.id, "bench")
                    continue
                shop.pay(order.id, order.total, f"pay-{t}-{n}")
                shop.ship(order.id, "DHL", f"T-{t}-{n}")
                shop.deliver(order.id)
            except DomainError:
                for sku in skus:  # out of stock: restock and go on
                    shop.receive_stock(sku, 1000)
            if n % 50 == 0:
                shop.change_product(lines[0], price=Decimal(f"{n % 40 + 1}.25"))

    workers = [threading.Thread(target=journeys, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def ours(shop: Shop, url: str, models: list[type[ReadModel]], prefix: str, batch: int) -> dict:
    """Seconds until each read model (fed by our runner, from scratch) reaches the head."""
    head = shop.head()
    read_side = open_read_side(
        settings_for(url), shop, prefix=prefix, batch_size=batch, models=models
    )
    try:
        started = time.perf_counter()
        read_side.start()
        done: dict[str, float] = {}
        while len(done) < len(models):
            for model in models:
                if model.name not in done and read_side.position(model.name) >= head:
                    done[model.name] = time.perf_counter() - started
            time.sleep(0.02)
        return done
    finally:
        read_side.close()


def library(shop: Shop, url: str, models: list[type[ReadModel]], prefix: str) -> dict:
    """Seconds until eventsourcing's ProjectionRunner (one per read model, all at once) has
    processed the whole log."""
    view = type(f"View{prefix}", (PostgresReadModelRecorder,), {"table_prefix": prefix})
    notifications = shop.recorder.select_notifications(None, 10**8)
    last = {m.name: max(n.id for n in notifications if n.topic in m.topics) for m in models}
    done: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        runners = {
            model.name: stack.enter_context(
                ProjectionRunner(
                    application_class=Shop,
                    projection_class=type(
                        f"Library{model.__name__}", (model,), {"name": f"{prefix}{model.name}"}
                    ),
                    view_class=view,
                    env={**StoreURL.parse(url).library_env(), "POSTGRES_POOL_SIZE": "2"},
                )
            )
            for model in models
        }
        for name, runner in runners.items():
            runner.wait(last[name], timeout=3600)
            done[name] = time.perf_counter() - started
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=4, help="seeding threads")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    with database("catchup") as db_url:
        url = f"{db_url}?schema=shop"
        StoreURL.parse(url).prepare()
        shop = open_shop(url, AGGREGATE_CACHE_MAXSIZE="100000")
        try:
            seconds = seed(shop, args.events, args.threads)
            head = shop.head()
            events = len(shop.recorder.select_notifications(None, 10**8))
            print(f"seeded {events} events (head {head}) in {seconds:.0f} s", flush=True)

            alone = {}
            for model in MODELS:
                alone.update(ours(shop, url, [model], f"solo_{model.name}_", args.batch_size))
                print(
                    f"  ours, alone: {model.name} {events / alone[model.name]:,.0f}/s", flush=True
                )
            together = ours(shop, url, list(MODELS), "all_", args.batch_size)
            print(f"  ours, all together: {events / max(together.values()):,.0f}/s", flush=True)
            plain = {}
            for model in MODELS:
                plain.update(library(shop, url, [model], f"lib_{model.name}_"))
                print(f"  library: {model.name} {events / plain[model.name]:,.0f}/s", flush=True)
            plain_together = library(shop, url, list(MODELS), "liball_")
            print(f"  library, all: {events / max(plain_together.values()):,.0f}/s", flush=True)
        finally:
            shop.close()

    print(
        f"\nCatch-up over {events:,} events on PostgreSQL ({os.cpu_count()} cores);"
        f" log events per second; ours: {args.batch_size} events per transaction"
    )
    columns = ("alone: ours", "library", "x", "all 6: ours", "library", "x")
    header = f"{'read model':<12}" + "".join(f"{c:>13}" for c in columns)
    print(header)
    print("-" * len(header))
    for model in MODELS:
        name = model.name
        print(
            f"{name:<12}"
            + figures(events, alone[name], plain[name])
            + figures(events, together[name], plain_together[name])
        )
    print(
        f"{'whole side':<12}{'':>39}"
        + figures(events, max(together.values()), max(plain_together.values()))
    )
    print("x = ours / library. 'all 6': the six read models at once, in one process.")


def figures(events: int, ours_seconds: float, library_seconds: float) -> str:
    mine, theirs = events / ours_seconds, events / library_seconds
    return f"{mine:>13,.0f}{theirs:>13,.0f}{mine / theirs:>12.1f}x"


if __name__ == "__main__":
    main()
