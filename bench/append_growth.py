"""Append throughput as the event log grows: an empty log against one of a million events.

Two schemas of one fresh PostgreSQL database: one with an empty log, one whose log is
first given ``--events`` events (carts of four events each, made by the domain and
bulk-inserted through the shop's mapper and recorder, as the shop would have stored
them). On each, ``--threads`` threads open carts for ``--seconds``: every command saves
one new small aggregate in its own transaction (``Shop.open_cart``: ``Shop.save`` of one
``Cart.Opened``). Runs alternate between the two logs, ``--rounds`` times each, so that
the drift of this shared machine hits both alike.

    python -m bench.append_growth [--quick] [--events 1000000] [--threads 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from eventsourcing.domain import DomainEventProtocol

from bench.common import Latency, bulk_append, database, open_shop, ratio
from commands.service import Shop
from domain.cart import Cart

EVENTS = 1_000_000
QUICK_EVENTS = 2_000
# Tiny sizes, for a smoke test of the code (the figures mean nothing).
QUICK: dict[str, Any] = {"events": QUICK_EVENTS, "threads": 2, "seconds": 0.5, "rounds": 1}
PRICE = Decimal("4.50")


def cart_events(count: int) -> Iterator[DomainEventProtocol[Any]]:
    """At least ``count`` events of carts with three lines each, made by the domain."""
    made = 0
    n = 0
    while made < count:
        cart = Cart.open(f"grown-{n % 50_000:05d}")
        for line in range(3):
            cart.add_item(f"SKU-{(n + line) % 200:03d}", 1 + line, PRICE)
        events = cart.collect_events()
        made += len(events)
        n += 1
        yield from events


def drive(shop: Shop, threads: int, seconds: float, label: str) -> dict[str, Any]:
    """``threads`` threads opening carts for ``seconds``; appends per second and latency."""
    samples: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        start.wait()
        stop_at = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            shop.open_cart(f"{label}-{t}-{n}")
            samples[t].append((time.perf_counter() - began) * 1000)
            n += 1

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    every = [sample for found in samples for sample in found]
    return {"appends_per_second": len(every) / elapsed, **Latency.of(every).as_dict()}


def run(
    events: int = EVENTS, threads: int = 4, seconds: float = 10.0, rounds: int = 2
) -> dict[str, Any]:
    """Fill one log, drive both; figures as data."""
    with database("append") as db:
        empty = open_shop(f"{db}?schema=empty")
        grown = open_shop(f"{db}?schema=grown")
        try:
            started = time.perf_counter()
            stored = bulk_append(grown, cart_events(events))
            build_seconds = time.perf_counter() - started
            before = {"empty": empty.head(), "grown": grown.head()}
            drive(empty, threads, min(1.0, seconds), "warm")
            drive(grown, threads, min(1.0, seconds), "warm")
            runs: dict[str, list[dict[str, Any]]] = {"empty": [], "grown": []}
            for round_no in range(rounds):
                runs["empty"].append(drive(empty, threads, seconds, f"r{round_no}"))
                runs["grown"].append(drive(grown, threads, seconds, f"r{round_no}"))
        finally:
            empty.close()
            grown.close()

    def median(log: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[log])

    summary = {
        log: {key: median(log, key) for key in ("appends_per_second", "p50", "p99")} for log in runs
    }
    return {
        "events": stored,
        "threads": threads,
        "seconds": seconds,
        "rounds": rounds,
        "build_seconds": build_seconds,
        "log_before": before,
        "runs": runs,
        "summary": summary,
        "ratio": ratio(
            summary["grown"]["appends_per_second"], summary["empty"]["appends_per_second"]
        ),
    }


def report(result: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    lines = [
        f"Append throughput vs log size (PostgreSQL; Shop.open_cart = one new aggregate per"
        f" transaction; {result['threads']} threads, {result['seconds']:g} s x"
        f" {result['rounds']} runs each, medians)",
        f"{'log':<24}{'appends/s':>11}{'p50 ms':>9}{'p99 ms':>9}",
    ]
    for log, name in (("empty", "empty"), ("grown", f"{result['events']:,} events")):
        s = result["summary"][log]
        lines.append(f"{name:<24}{s['appends_per_second']:>11.0f}{s['p50']:>9.2f}{s['p99']:>9.2f}")
    lines.append(
        f"ratio {result['events']:,} events / empty: {result['ratio']:.2f}x"
        f" (log built in {result['build_seconds']:.1f} s)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        result = run(**QUICK)
    else:
        result = run(args.events, args.threads, args.seconds, args.rounds)
    print(report(result))


if __name__ == "__main__":
    main()
