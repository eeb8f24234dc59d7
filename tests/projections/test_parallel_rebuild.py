"""Rebuilds whose batches are decoded and handled in worker processes (PostgreSQL).

Small logs are normally rebuilt in one process; here every copy goes to two workers,
in batches small enough that many are in flight at once, out of order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from domain.order import Order
from projections import MODELS, ReadSide
from projections.base import EventFailed, handles
from projections.orders import Orders
from projections.writes import Writes
from tests.projections.support import (
    ROOT,
    World,
    applied,
    dumps,
    event_count,
    opened,
    rebuilt,
    stop_worker,
    until,
)


def in_workers(read_side: ReadSide, batch_size: int = 7) -> None:
    read_side.rebuilder.processes = 2
    read_side.rebuilder.parallel_from = 0
    read_side.rebuilder.batch_size = batch_size


def test_every_read_model_rebuilt_in_workers_equals_the_live_one(pg_url: str) -> None:
    with opened(pg_url) as (shop, read_side):
        world = World(shop)
        world.seed(80)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=60)
        before = dumps(read_side)
        in_workers(read_side)
        for name in read_side.names:
            outcome = read_side.rebuild_blocking(name)
            assert outcome["error"] is None, name
            assert outcome["comparison"]["equal"], (name, outcome["comparison"])
            assert outcome["position"] == shop.head()
        assert dumps(read_side) == before == rebuilt(shop, pg_url)
        assert set(applied(read_side).values()) == {event_count(shop)}


class PoisonedOrders(Orders):
    """New code whose handler fails on one customer's payments (importable by workers)."""

    name = "orders"

    @handles(Order.Paid)
    def _paid(self, tx: Writes, event: Order.Paid) -> None:
        if event.reference == "poison":
            raise ValueError("cannot read this payment")
        super()._paid(tx, event)


def test_a_handler_failing_in_a_worker_names_the_event_and_leaves_the_live_copy(
    pg_url: str,
) -> None:
    with opened(pg_url) as (shop, read_side):
        world = World(shop)
        world.seed(40)
        world.buy("zed", [("A-1", 1)])
        order = world.orders[-1]
        poisoned = shop.pay(order, shop.order(order).total, "poison")
        world.seed(10)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=60)
        before = dumps(read_side)

    models = tuple(PoisonedOrders if m is Orders else m for m in MODELS)
    with opened(pg_url, models=models) as (shop, read_side):
        in_workers(read_side)
        with pytest.raises(EventFailed) as failed:
            read_side.rebuild_blocking("orders")
        assert failed.value.notification.id == poisoned.position
        assert failed.value.exact
        assert isinstance(failed.value.error, ValueError)
        assert "cannot read this payment" in str(failed.value)
        assert dumps(read_side) == before


# A rebuild with workers in another process, slowed down so that it can be caught halfway.
SLOW_REBUILD = """
import os, sys, time
from projections.feed import Source
read = Source.read_rows
def slow(*args, **kwargs):
    time.sleep(0.1)
    return read(*args, **kwargs)
Source.read_rows = slow
from tests.projections.support import opened
if __name__ == "__main__":
    with opened(sys.argv[1]) as (shop, read_side):
        read_side.rebuilder.processes = 2
        read_side.rebuilder.parallel_from = 0
        read_side.rebuilder.batch_size = 5
        read_side.rebuild_blocking(sys.argv[2])
"""


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``: its children, theirs, and so on."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    level = {pid}
    while level:
        level = {child for child, parent in parents.items() if parent in level} - found
        found |= level
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_rebuild_with_workers_killed_halfway_takes_its_workers_and_can_run_again(
    pg_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "slow_rebuild.py"  # a file: workers are spawned from its path
    script.write_text(SLOW_REBUILD)
    with opened(pg_url) as (shop, read_side):
        World(shop).seed(60)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=60)
        before = dumps(read_side)
        rebuilding = subprocess.Popen(
            [sys.executable, str(script), pg_url, "orders"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:

            def halfway() -> Any:
                rebuild = next(s for s in read_side.status() if s["name"] == "orders")["rebuild"]
                return (rebuild and rebuild["position"] > 0) or rebuilding.poll() is not None

            until(halfway, 60, "the other process's rebuild to make progress")
            assert rebuilding.poll() is None, rebuilding.stderr and rebuilding.stderr.read()
            # Its workers (one at least: the pool starts a second when the first is busy),
            # the server they were forked from, the resource tracker.
            workers = until(
                lambda: len(found := descendants(rebuilding.pid)) >= 3 and found, 30, "workers"
            )
            rebuilding.send_signal(signal.SIGKILL)
            rebuilding.wait(10)
        finally:
            stop_worker(rebuilding)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers), "a worker outlived its rebuild"
        assert dumps(read_side) == before

        in_workers(read_side)
        outcome = read_side.rebuild_blocking("orders")
        assert outcome["comparison"]["equal"], outcome["comparison"]
        assert dumps(read_side) == before
