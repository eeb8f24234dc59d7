"""How fast ``verify`` recomputes the hash chain, and that its memory stays flat.

Writes a log of real shop events (Stock aggregates receiving goods, encoded by the
shop's own mapper) into a fresh PostgreSQL schema in bulk, many events per
``insert_events`` call, then verifies it in child processes: once up to 100k events
and once over the whole log, twice each (each recomputes every link and compares it
with the stored one; verify writes nothing). Each child reports events/s and its own peak RSS, so
the two sizes can be compared without the writer's memory in the way.

    python -m bench.verify [--events 1000000] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import sql

from bench.common import open_shop
from commands.service import Shop
from domain.stock import Stock
from eventshop.bootstrap import open_auditor
from eventstore.causes import caused_by
from eventstore.url import StoreURL

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
EVENTS_PER_STOCK = 1000
EVENTS_PER_INSERT = 10_000


def peak_rss_mib() -> float:
    """This process's peak resident set size.

    Linux carries ``ru_maxrss`` over ``exec`` (a child would report its parent's peak
    from before the fork), so the kernel's per-image high-water mark is preferred.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    # getrusage reports KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stored_events(shop: Shop, count: int) -> Iterator[StoredEvent]:
    """``count`` stored events: stocks of EVENTS_PER_STOCK events each, as the shop stores them."""
    made = 0
    with caused_by("bench", "staff", "bench-verify"):
        while made < count:
            stock = Stock.open(f"SKU-{uuid.uuid4().hex[:12].upper()}")
            for n in range(min(EVENTS_PER_STOCK, count - made) - 1):
                stock.receive(1 + n % 50, f"delivery {n}")
            for event in stock.collect_events():
                yield shop.mapper.to_stored_event(event)
                made += 1


def write(url: str, count: int) -> float:
    """Bulk-insert ``count`` events; seconds taken."""
    StoreURL.parse(url).prepare()
    shop = open_shop(url)
    started = time.perf_counter()
    batch: list[StoredEvent] = []
    for stored in stored_events(shop, count):
        batch.append(stored)
        if len(batch) == EVENTS_PER_INSERT:
            shop.recorder.insert_events(batch)
            batch = []
    shop.recorder.insert_events(batch)
    seconds = time.perf_counter() - started
    shop.close()
    return seconds


def verify_in_child(url: str, upto: int | None) -> dict[str, float]:
    """Run one verify in a fresh process; its figures (a JSON line on stdout)."""
    command = [sys.executable, "-m", "bench.verify", "--url", url, "--child"]
    if upto is not None:
        command += ["--upto", str(upto)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    figures: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return figures


def child(url: str, upto: int | None) -> None:
    shop = open_shop(url)
    auditor = open_auditor(shop)
    baseline = peak_rss_mib()
    started = time.perf_counter()
    # No receipt is signed here: "unanchored" is the expected answer, "tampered" a bug.
    result = auditor.verify({}, upto=upto)
    seconds = time.perf_counter() - started
    assert result.status in ("verified", "unanchored"), result.detail
    figures = {
        "events": result.events,
        "seconds": seconds,
        "events_per_s": result.events / seconds,
        "anchors": result.anchors,
        "rss_before_mib": baseline,
        "peak_rss_mib": peak_rss_mib(),
    }
    shop.close()
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--url", default=DEFAULT_URL, help="a PostgreSQL database URL")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--upto", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.url, args.upto)
        return

    schema = f"bench_verify_{os.getpid()}"
    url = f"{args.url}?schema={schema}"
    try:
        seconds = write(url, args.events)
        print(
            f"wrote {args.events:,} events in {seconds:.1f} s"
            f" ({args.events / seconds:,.0f} events/s, {EVENTS_PER_INSERT:,} per insert)"
        )
        small = min(100_000, args.events)
        for label, upto in ((f"{small:,}", small), (f"{args.events:,}", None)):
            for run in ("first", "again"):
                f = verify_in_child(url, upto)
                print(
                    f"verify {label:>9} events, {run:<25}: {f['seconds']:6.1f} s,"
                    f" {f['events_per_s']:>9,.0f} events/s,"
                    f" peak RSS {f['peak_rss_mib']:.0f} MiB"
                    f" (at start {f['rss_before_mib']:.0f} MiB)"
                )
    finally:
        with psycopg.connect(StoreURL.parse(url).dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
