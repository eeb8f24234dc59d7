"""P3a: command latency against the length of the aggregate's history, on PostgreSQL.

A Stock lives as long as its SKU and gains an event with every receipt, reservation and
shipment; the Shop snapshots it every 100 events, so a load reads the last snapshot and
at most 99 events after it, however long the history. For each history length (1, 100,
1,000 and 10,000 events) a Stock is given that history, bulk-inserted as the shop would
have stored it (domain events through the shop's mapper, snapshots taken by
``Shop.take_snapshot`` at every 100th version), then ``receive_stock`` is timed on it:
through the service (``Shop.receive_stock``: load, decide, append) and through HTTP
(``POST /api/stock/{sku}/receipts``, one client, on a uvicorn of the API).

For contrast, a Cart (never snapshotted: a real one has a dozen events) with the same
history (at least 2 events: it needs a line to change), timed on
``Shop.set_cart_quantity``: there, the cost grows with the history.

Commands are interleaved across lengths (one on each in turn), so that the drift of this
shared machine hits every length alike. Every command appends, so an aggregate ends the
run a few hundred events longer than it started; the snapshots keep up as in production.

    python -m bench.history_length [--quick] [--commands 200] [--http-commands 200]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial
from typing import Any

import httpx

from api.auth import mint
from bench.common import SECRET, Latency, bulk_append, database, open_shop, pending, ratio, server
from commands.service import Shop
from domain.cart import Cart
from domain.stock import Stock

LENGTHS = (1, 100, 1_000, 10_000)
QUICK_LENGTHS = (1, 10, 150)
SNAPSHOT_EVERY = Shop.snapshotting_intervals[Stock]
# Tiny sizes, for a smoke test of the code (the figures mean nothing).
QUICK: dict[str, Any] = {
    "lengths": QUICK_LENGTHS,
    "commands": 5,
    "http_commands": 5,
    "cart_commands": 3,
}
CART_SKU = "BENCH-CART"
WARM_UP = 20


def build_stock(shop: Shop, sku: str, length: int) -> None:
    """A product whose Stock has ``length`` events and the snapshots the shop would take."""
    shop.add_product(sku, f"Bench {sku}", "1.00")
    if length <= 1:
        return
    stock = shop.stock(sku)
    for _ in range(length - 1):
        stock.receive(1, "bench history")
    bulk_append(shop, pending([stock]))
    for version in range(SNAPSHOT_EVERY, length + 1, SNAPSHOT_EVERY):
        shop.take_snapshot(stock.id, version=version)


def build_cart(shop: Shop, length: int) -> Cart:
    """An open cart with one line whose quantity changed until it has ``length`` events."""
    cart = shop.cart(shop.open_cart("bench-customer").aggregate.id)
    cart.add_item(CART_SKU, 1, Decimal("1.00"))
    for n in range(max(0, length - 2)):
        cart.set_quantity(CART_SKU, 2 + n % 2)
    bulk_append(shop, pending([cart]))
    return cart


def interleaved(commands: dict[int, Callable[[], Any]], rounds: int) -> dict[int, Latency]:
    """Run every command once per round, in turn; latency per key."""
    samples: dict[int, list[float]] = {key: [] for key in commands}
    for _ in range(rounds):
        for key, command in commands.items():
            started = time.perf_counter()
            command()
            samples[key].append((time.perf_counter() - started) * 1000)
    return {key: Latency.of(found) for key, found in samples.items()}


def cart_toggle(shop: Shop, cart: Cart) -> Callable[[], Any]:
    """A command that changes the cart's line quantity every time (2, 3, 2, ...)."""
    quantity = [cart.lines[CART_SKU].quantity]

    def command() -> None:
        quantity[0] = 5 - quantity[0] if quantity[0] in (2, 3) else 2
        shop.set_cart_quantity(cart.id, CART_SKU, quantity[0])

    return command


def measure_http(url: str, skus: dict[int, str], rounds: int) -> dict[int, Latency]:
    """``POST /api/stock/{sku}/receipts`` on each length in turn, one client, keep-alive."""
    env = {
        "EVENTSHOP_DATABASE_URL": url,
        "EVENTSHOP_JWT_SECRET": SECRET,
        "EVENTSHOP_RUN_PROJECTIONS": "false",
    }
    headers = {"Authorization": f"Bearer {mint(SECRET, 'bench', ['staff'], 3600)}"}
    with (
        server(["api.app:create_app", "--factory"], env) as base,
        httpx.Client(base_url=base, headers=headers, timeout=30) as http,
    ):

        def receipt(sku: str) -> Callable[[], None]:
            def command() -> None:
                http.post(f"/api/stock/{sku}/receipts", json={"quantity": 1}).raise_for_status()

            return command

        warm = receipt("WARM-UP")
        for _ in range(WARM_UP):
            warm()
        return interleaved({n: receipt(sku) for n, sku in skus.items()}, rounds)


def run(
    lengths: Sequence[int] = LENGTHS,
    commands: int = 200,
    http_commands: int = 200,
    cart_commands: int = 30,
) -> dict[str, Any]:
    """Build the histories in a fresh database, time the commands; figures as data."""
    with database("history") as url:
        shop = open_shop(url)
        try:
            started = time.perf_counter()
            build_stock(shop, "WARM-UP", 1)
            skus = {n: f"HIST-{n}" for n in lengths}
            for n, sku in skus.items():
                build_stock(shop, sku, n)
            carts = {n: build_cart(shop, n) for n in lengths}
            build_seconds = time.perf_counter() - started

            for _ in range(WARM_UP):
                shop.receive_stock("WARM-UP", 1)
            stock = interleaved(
                {n: partial(shop.receive_stock, sku, 1) for n, sku in skus.items()},
                commands,
            )
            cart = interleaved({n: cart_toggle(shop, c) for n, c in carts.items()}, cart_commands)
        finally:
            shop.close()
        http = measure_http(url, skus, http_commands) if http_commands else {}

    first, last = min(lengths), max(lengths)
    rows = [
        {
            "length": n,
            "stock_service": stock[n].as_dict(),
            "stock_http": http[n].as_dict() if http else None,
            "cart_service": cart[n].as_dict(),
        }
        for n in lengths
    ]
    return {
        "lengths": list(lengths),
        "commands": commands,
        "http_commands": http_commands,
        "cart_commands": cart_commands,
        "snapshot_every": SNAPSHOT_EVERY,
        "build_seconds": build_seconds,
        "rows": rows,
        "ratio_service": ratio(stock[last].p50, stock[first].p50),
        "ratio_service_p99": ratio(stock[last].p99, stock[first].p99),
        "ratio_http": ratio(http[last].p50, http[first].p50) if http else None,
        "ratio_cart": ratio(cart[last].p50, cart[first].p50),
    }


def report(result: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    lines = [
        f"P3a command latency vs history length (PostgreSQL; Stock snapshotted every"
        f" {result['snapshot_every']} events; {result['commands']} service /"
        f" {result['http_commands']} HTTP / {result['cart_commands']} cart commands per"
        " length; ms)",
        f"{'events':>8}{'stock p50':>11}{'stock p99':>11}{'http p50':>10}{'http p99':>10}"
        f"{'cart p50':>10}{'cart p99':>10}",
    ]
    for row in result["rows"]:
        http = row["stock_http"] or {"p50": float("nan"), "p99": float("nan")}
        lines.append(
            f"{row['length']:>8}{row['stock_service']['p50']:>11.2f}"
            f"{row['stock_service']['p99']:>11.2f}{http['p50']:>10.2f}{http['p99']:>10.2f}"
            f"{row['cart_service']['p50']:>10.2f}{row['cart_service']['p99']:>10.2f}"
        )
    first, last = result["lengths"][0], result["lengths"][-1]
    http_ratio = result["ratio_http"]
    lines.append(
        f"ratio {last} / {first} events (p50): stock service {result['ratio_service']:.2f}x"
        f" (p99 {result['ratio_service_p99']:.2f}x)"
        + (f", stock HTTP {http_ratio:.2f}x" if http_ratio is not None else "")
        + f", cart (no snapshots) {result['ratio_cart']:.2f}x; target for stock <= 1.5x"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--http-commands", type=int, default=200, help="0: skip HTTP")
    parser.add_argument("--cart-commands", type=int, default=30)
    args = parser.parse_args()
    if args.quick:
        result = run(**QUICK)
    else:
        result = run(LENGTHS, args.commands, args.http_commands, args.cart_commands)
    print(report(result))


if __name__ == "__main__":
    main()
