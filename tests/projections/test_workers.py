"""Several worker processes on one PostgreSQL database: one feeder per read model."""

from __future__ import annotations

import signal
from collections import Counter

import psycopg

from eventstore.url import StoreURL
from projections import MODELS
from tests.projections.support import (
    World,
    applied,
    dumps,
    event_count,
    opened,
    rebuilt,
    spawn_worker,
    stop_worker,
    until,
)


def held_advisory_locks(url: str) -> int:
    with psycopg.connect(StoreURL.parse(url).dsn()) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_two_workers_never_both_apply_an_event_and_one_takes_over(pg_url: str) -> None:
    # This process only reads, like the API; the workers (``python -m projections``) feed
    # the shop's read models, not the process managers' timers.
    with opened(pg_url, models=MODELS) as (shop, read_side):
        world = World(shop)
        world.seed(30)
        workers = {name: spawn_worker(pg_url, "--worker-id", name) for name in ("A", "B")}
        try:
            world.seed(30)  # while both run
            assert read_side.wait_for(None, shop.head(), timeout=60)
            status = until(
                lambda: (
                    (found := read_side.status())
                    and {s["state"] for s in found} == {"live"}
                    and found
                ),
                10,
                "every read model to be live",
            )
            holders = Counter(s["worker"] for s in status)
            assert set(holders) <= {"A", "B"}
            assert held_advisory_locks(pg_url) == len(read_side.names)  # one per read model
            assert set(applied(read_side).values()) == {event_count(shop)}

            victim, _ = holders.most_common(1)[0]
            survivor = "B" if victim == "A" else "A"
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait(10)
            world.seed(10)
            assert read_side.wait_for(None, shop.head(), timeout=30)
            until(
                lambda: {s["worker"] for s in read_side.status()} == {survivor},
                10,
                "the survivor's heartbeat on every read model",
            )
            assert set(applied(read_side).values()) == {event_count(shop)}
            assert dumps(read_side) == rebuilt(shop, pg_url, models=MODELS)
        finally:
            for process in workers.values():
                stop_worker(process)
