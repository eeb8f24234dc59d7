"""One side of the appends comparison, run in a process of its own by bench/write_path.py.

``shop``: ``--threads`` threads each opening new carts through the service
(``commands.service.Shop.open_cart``, the Shop opened by ``eventshop.bootstrap.open_shop``
with its default settings): one new aggregate, one event, one transaction per call.

``shop-unlinked``: the same without writing the events' hash links (bench/audit_cost.py
measures what they cost; no deployment can switch them off).

``raw``: the floor: ``--threads`` threads, each on its own psycopg connection, each
inserting one row per transaction into a table of the stored events' shape under the
same ``LOCK TABLE ... IN EXCLUSIVE MODE`` (bench/floor_app.py's table and statements).

Both warm up, then print ``measuring``, run for ``--seconds``, print ``measured`` (the
orchestrator samples CPU at both; with ``--ack`` the side then waits for a line on stdin
before it closes its connections) and one line of JSON: appends, seconds, latency (ms)
and this process's CPU time in the window.

    python -m bench.appends shop|raw --url postgresql://... [--threads 16] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from bench import floor_app
from bench.load import percentiles
from eventstore.url import StoreURL


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drive(
    threads: int,
    seconds: float,
    warmup: float,
    make: Callable[[int], Callable[[int], Any]],
    ack: bool = False,
) -> dict[str, Any]:
    """``threads`` threads looping ``make(thread)(n)``: warm-up, then the measured window."""
    samples: list[list[float]] = [[] for _ in range(threads)]
    window = {"start": 0.0, "stop": 0.0}
    ready = threading.Barrier(threads + 1)
    go = threading.Event()

    def work(t: int) -> None:
        call = make(t)
        ready.wait()
        go.wait()
        n = 0
        while (now := time.perf_counter()) < window["stop"]:
            call(n)
            done = time.perf_counter()
            if now >= window["start"]:
                samples[t].append((done - now) * 1000)
            n += 1

    workers = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    began = time.perf_counter()
    window["start"], window["stop"] = began + warmup, began + warmup + seconds
    go.set()
    time.sleep(max(0.0, window["start"] - time.perf_counter()))
    cpu = _cpu()
    print("measuring", flush=True)
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - window["start"]
    cpu = _cpu() - cpu
    print("measured", flush=True)
    if ack:
        sys.stdin.readline()  # the orchestrator samples CPU before the connections go
    every = [s for found in samples for s in found]
    return {
        "appends": len(every),
        "seconds": elapsed,
        "appends_per_second": len(every) / elapsed,
        "latency": percentiles(every),
        "cpu_seconds": cpu,
    }


def run_shop(
    url: str,
    threads: int,
    seconds: float,
    warmup: float,
    ack: bool = False,
    unlinked: bool = False,
) -> dict[str, Any]:
    from bench.common import open_shop

    shop = open_shop(url)
    if unlinked:
        from commands.group_commit import GroupCommitRecorder

        # For bench/audit_cost.py alone: what the hash links cost, by their absence.
        GroupCommitRecorder._insert_links_of = lambda *_: None  # type: ignore[method-assign]
    label = uuid.uuid4().hex[:8]
    try:

        def make(t: int) -> Callable[[int], Any]:
            return lambda n: shop.open_cart(f"append-{label}-{t}-{n}")

        return drive(threads, seconds, warmup, make, ack)
    finally:
        shop.close()


def run_raw(
    url: str, threads: int, seconds: float, warmup: float, ack: bool = False
) -> dict[str, Any]:
    store = StoreURL.parse(url)
    connections: list[psycopg.Connection[Any]] = []
    with psycopg.connect(store.dsn(), autocommit=True) as conn:
        floor_app.create_table(conn)
    state = b'{"customer_id": "append-raw", "currency": "EUR"}'
    try:

        def make(t: int) -> Callable[[int], Any]:
            conn = psycopg.connect(store.dsn(), autocommit=True)
            connections.append(conn)

            def call(n: int) -> None:
                with conn.transaction():
                    conn.execute(f"LOCK TABLE {floor_app.TABLE} IN EXCLUSIVE MODE")
                    conn.execute(floor_app.INSERT, (uuid.uuid4(), 1, floor_app.TOPIC, state))

            return call

        return drive(threads, seconds, warmup, make, ack)
    finally:
        for conn in connections:
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("side", choices=("shop", "shop-unlinked", "raw"))
    parser.add_argument("--url", required=True, help="the PostgreSQL store (a throw-away one)")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--ack", action="store_true", help="after `measured`, wait for a line on stdin"
    )
    args = parser.parse_args()
    if args.side == "raw":
        result = run_raw(args.url, args.threads, args.seconds, args.warmup, args.ack)
    else:
        unlinked = args.side == "shop-unlinked"
        result = run_shop(args.url, args.threads, args.seconds, args.warmup, args.ack, unlinked)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
