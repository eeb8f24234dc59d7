"""Rebuilds whose batches are decoded and handled in worker processes (SQLite and
PostgreSQL; SQLite rebuilds use none unless told to, as here). A rebuild with workers
killed halfway: ``test_rebuild.py``.

Small logs are normally rebuilt in one process; here every copy goes to two workers,
in batches small enough that many are in flight at once, out of order.
"""

from __future__ import annotations

import pickle
from uuid import uuid4

from eventsourcing.persistence import Notification

from domain.order import Order
from projections import MODELS, ReadSide
from projections.engine.base import EventFailed, handles
from projections.engine.parallel import Preparers
from projections.engine.writes import Writes
from projections.readmodels.orders import Orders
from tests.projections.support import (
    World,
    applied,
    dumps,
    event_count,
    opened,
    rebuilt,
)


def in_workers(read_side: ReadSide, batch_size: int = 7) -> None:
    read_side.rebuilder.processes = 2
    read_side.rebuilder.parallel_from = 0
    read_side.rebuilder.batch_size = batch_size


def test_every_read_model_rebuilt_in_workers_equals_the_live_one(url: str) -> None:
    with opened(url) as (shop, read_side):
        world = World(shop)
        world.seed(80)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=60)
        before = dumps(read_side)
        in_workers(read_side)
        mapper = read_side.rebuilder.source.mapper
        # Else the rebuild would quietly prepare its batches in its own thread.
        assert all(Preparers.can_send(model, mapper) for model in read_side.models.values())
        for name in read_side.names:
            outcome = read_side.rebuild_blocking(name)
            assert outcome.error is None, name
            assert outcome.comparison is not None and outcome.comparison.equal, (name, outcome)
            assert outcome.position == shop.head()
        assert dumps(read_side) == before == rebuilt(shop, url)
        assert set(applied(read_side).values()) == {event_count(shop)}


class PoisonedOrders(Orders):
    """New code whose handler fails on one customer's payments (importable by workers)."""

    name = "orders"

    @handles(Order.Paid)
    def _paid(self, tx: Writes, event: Order.Paid) -> None:
        if event.reference == "poison":
            raise ValueError("cannot read this payment")
        super()._paid(tx, event)


def test_a_failure_raised_in_a_worker_reaches_the_parent_naming_the_event() -> None:
    """With the ``stop`` policy a handler's error comes back from a worker process."""
    event = Notification(id=7, originator_id=uuid4(), originator_version=2, topic="t", state=b"{}")
    failed = pickle.loads(pickle.dumps(EventFailed("orders", event, ValueError("no"))))
    assert (failed.notification, failed.exact, failed.model) == (event, True, "orders")
    assert isinstance(failed.error, ValueError) and "no" in str(failed)


def test_a_handler_failing_in_a_worker_parks_the_event(url: str) -> None:
    with opened(url) as (shop, read_side):
        world = World(shop)
        world.seed(12)
        world.buy("zed", [("A-1", 1)])
        order = world.orders[-1]
        poisoned = shop.pay(order, shop.order(order).total, "poison")
        world.run(("ship", -1))  # held behind it
        world.seed(4)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=60)

    models = tuple(PoisonedOrders if m is Orders else m for m in MODELS)
    with opened(url, models=models) as (shop, read_side):
        in_workers(read_side)
        outcome = read_side.rebuild_blocking("orders")
        assert outcome.comparison is not None
        assert (outcome.comparison.new_parked, outcome.comparison.kept_parked) == (2, 0)
        assert outcome.comparison.differences == ["orders", "order_history"]
        first, behind = read_side.parked("orders")
        assert (first.position, first.error) == (
            poisoned.position,
            "ValueError: cannot read this payment",
        )
        assert behind.aggregate_id == first.aggregate_id
        assert "held behind" in behind.error
        assert read_side.orders.get_order(order)["status"] == "placed"
