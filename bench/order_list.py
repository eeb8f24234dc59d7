"""P3b: order-list query latency against the size of the orders read model, on PostgreSQL.

Filling the read model through commands would take hours at a million orders, so each
size gets its own schema whose ``orders`` table (created by ``build_read_side``, with the
projection's own indexes) is filled by COPY with rows of the shape the Orders
projection writes: one per order, in the order orders are placed, about five orders per
customer, statuses in the seed's proportions. ``order_lines`` and ``order_history`` stay
empty: ``list_orders`` does not read them. The tables are then vacuumed and analysed, as
autovacuum would have done in production.

Timed through the read model's own query (``read_side.orders.list_orders``, 50 per page):
the first page; a later page, from a cursor somewhere in the middle of the table; the
first page of one customer's orders; the first page of one status. Queries are
interleaved across sizes so that the drift of this shared machine hits every size alike.

    python -m bench.order_list [--quick] [--sizes 1000,100000,1000000] [--rounds 200]
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from bench.common import Latency, database, open_shop, ratio, settings_for
from domain.order import CANCELLED, DELIVERED, PAID, PLACED, SHIPPED
from eventshop.bootstrap import open_read_side
from eventstore.url import StoreURL
from projections import ReadSide
from projections.engine.base import stamp
from projections.readmodels.orders import STATUSES, Orders

SIZES = (1_000, 100_000, 1_000_000)
QUICK_SIZES = (100, 1_000)
# Tiny sizes, for a smoke test of the code (the figures mean nothing).
QUICK: dict[str, Any] = {"sizes": QUICK_SIZES, "rounds": 5}
QUERIES = ("first page", "later page", "by customer", "by status")
# Statuses in the proportions of cli/demo.py's fates (cancelled: two fates).
STATUS_WEIGHTS = {PLACED: 8, PAID: 10, SHIPPED: 12, DELIVERED: 49, CANCELLED: 16}
VERSION_OF = {PLACED: 1, PAID: 2, SHIPPED: 3, DELIVERED: 4, CANCELLED: 3}
ORDERS_PER_CUSTOMER = 5
START = datetime(2024, 1, 1, tzinfo=UTC)
COLUMNS = (
    "order_id",
    "customer_id",
    "cart_id",
    "status",
    "total_cents",
    "units",
    "email",
    "shipping_address",
    "payment_reference",
    "carrier",
    "tracking_number",
    "cancel_reason",
    "refund_cents",
    "version",
    "placed_at",
    "updated_at",
    "payment_due_at",
)
_CITIES = [("Berlin", "10115", "DE"), ("Paris", "75001", "FR"), ("Madrid", "28001", "ES")]


def customers_for(size: int) -> int:
    return max(10, size // ORDERS_PER_CUSTOMER)


def rows(size: int, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    """``size`` order summaries, oldest first, as the projection would have left them."""
    rng = random.Random(seed)
    statuses, weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    customers = customers_for(size)
    at = START
    for n in range(size):
        at += timedelta(seconds=rng.uniform(0, 60))
        customer = f"cust-{rng.randrange(customers):07d}"
        status = rng.choices(statuses, weights)[0]
        city, postal_code, country = rng.choice(_CITIES)
        address = {
            "name": f"Customer {customer[-7:]}",
            "line1": f"{rng.randint(1, 200)} Market Street",
            "line2": "",
            "city": city,
            "postal_code": postal_code,
            "country": country,
        }
        paid = status in (PAID, SHIPPED, DELIVERED) or (status == CANCELLED and n % 2 == 0)
        sent = status in (SHIPPED, DELIVERED)
        total = rng.randrange(199, 40_000)
        yield (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            customer,
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            status,
            total,
            rng.randint(1, 8),
            f"{customer}@example.com",
            json.dumps(address, sort_keys=True),
            f"PSP-{n:09d}" if paid else None,
            "DHL" if sent else None,
            f"DHL{n:09d}" if sent else None,
            "changed my mind" if status == CANCELLED else None,
            total if status == CANCELLED and paid else None,
            VERSION_OF[status],
            stamp(at),
            stamp(at + timedelta(hours=VERSION_OF[status] - 1)),
            stamp(at + timedelta(minutes=30)),
        )


def fill(url: str, schema: str, size: int) -> None:
    """COPY ``size`` rows into the schema's orders table (indexes in place), then vacuum."""
    table = sql.Identifier(schema, "orders")
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        table, sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )
    with psycopg.connect(StoreURL.parse(url).dsn(), autocommit=True) as conn:
        with conn.cursor() as cursor, cursor.copy(copy) as pipe:
            for row in rows(size):
                pipe.write_row(row)
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))


def query_plan(
    read_side: ReadSide, size: int, rounds: int, seed: int = 2
) -> dict[str, list[Callable[[], Any]]]:
    """For each kind of query, ``rounds`` calls with arguments drawn at random."""
    rng = random.Random(seed)
    orders: Orders = read_side.orders
    span = orders.list_orders(limit=1)["items"][0]["placed_at"]
    last = datetime.fromisoformat(span.replace("Z", "+00:00"))
    cursors = []
    for _ in range(rounds):
        # The newest order placed by a random moment: its cursor starts a later page.
        moment = START + (last - START) * rng.uniform(0.05, 0.95)
        cursor = orders.list_orders(placed_to=moment, limit=1)["next_cursor"]
        cursors.append(cursor)
    customers = customers_for(size)
    return {
        "first page": [orders.list_orders] * rounds,
        "later page": [partial(orders.list_orders, cursor=c) for c in cursors],
        "by customer": [
            partial(orders.list_orders, customer_id=f"cust-{rng.randrange(customers):07d}")
            for _ in range(rounds)
        ],
        "by status": [
            partial(orders.list_orders, status=rng.choice(STATUSES)) for _ in range(rounds)
        ],
    }


def run(sizes: Sequence[int] = SIZES, rounds: int = 200) -> dict[str, Any]:
    """Fill one schema per size in a fresh database, time the queries; figures as data."""
    build: dict[int, float] = {}
    with database("orders") as db:
        shops, sides, plans = [], {}, {}
        try:
            for size in sizes:
                schema = f"orders_{size}"
                url = f"{db}?schema={schema}"
                shop = open_shop(url)
                shops.append(shop)
                sides[size] = open_read_side(settings_for(url), shop, models=[Orders])
                started = time.perf_counter()
                fill(url, schema, size)
                build[size] = time.perf_counter() - started
            for size in sizes:
                plans[size] = query_plan(sides[size], size, rounds)
            samples: dict[int, dict[str, list[float]]] = {
                size: {kind: [] for kind in QUERIES} for size in sizes
            }
            for _ in range(2):  # warm-up: plans cached, pools filled
                for size in sizes:
                    for kind in QUERIES:
                        plans[size][kind][0]()
            for n in range(rounds):
                for size in sizes:
                    for kind in QUERIES:
                        started = time.perf_counter()
                        plans[size][kind][n]()
                        samples[size][kind].append((time.perf_counter() - started) * 1000)
        finally:
            for side in sides.values():
                side.close()
            for shop in shops:
                shop.close()
    latency = {size: {k: Latency.of(v) for k, v in s.items()} for size, s in samples.items()}
    small, big = min(sizes), max(sizes)
    ratios = {kind: ratio(latency[big][kind].p50, latency[small][kind].p50) for kind in QUERIES}
    return {
        "sizes": list(sizes),
        "rounds": rounds,
        "build_seconds": {str(size): seconds for size, seconds in build.items()},
        "rows": [
            {"size": size, **{kind: latency[size][kind].as_dict() for kind in QUERIES}}
            for size in sizes
        ],
        "ratios": ratios,
        "ratio_max": max(ratios.values()),
    }


def report(result: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    lines = [
        f"P3b list_orders latency vs read-model size (PostgreSQL; 50 per page;"
        f" {result['rounds']} queries of each kind per size; ms p50 / p99)",
        f"{'orders':>10}{'built in':>10}" + "".join(f"{kind:>18}" for kind in QUERIES),
    ]
    for row in result["rows"]:
        built = result["build_seconds"][str(row["size"])]
        cells = "".join(f"{row[kind]['p50']:>9.2f} /{row[kind]['p99']:>6.2f}" for kind in QUERIES)
        lines.append(f"{row['size']:>10}{built:>9.1f}s{cells}")
    small, big = result["sizes"][0], result["sizes"][-1]
    lines.append(
        f"ratio {big} / {small} orders (p50): "
        + ", ".join(f"{kind} {value:.2f}x" for kind, value in result["ratios"].items())
        + "; target <= 2x"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    if args.quick:
        result = run(**QUICK)
    else:
        result = run([int(s) for s in args.sizes.split(",")], args.rounds)
    print(report(result))


if __name__ == "__main__":
    main()
