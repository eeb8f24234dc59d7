"""A poison event stops its own read model, loudly, and never gets skipped."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from eventsourcing.utils import get_topic

from domain.order import Order
from projections.readmodels.sales import Sales
from tests.projections.support import World, applied, dumps, event_count, opened, rebuilt, until

# A bug in Python, raised at once; and a bug in SQL, which the database reports when the
# batch's rows are written, for the whole batch (then the events are retried one by one).
FAILURES = {"python": "sales cannot handle bob", "database": "unique"}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_poison_event_stops_only_its_read_model_until_fixed(
    url: str, failure: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    topic = get_topic(Order.Placed)
    handler = Sales.handlers[topic]

    def poisoned(model: Any, tx: Any, event: Any) -> None:
        handler(model, tx, event)
        if event.customer_id != "bob":
            return
        if failure == "python":
            raise ValueError("sales cannot handle bob")
        handler(model, tx, event)  # the same rows again

    monkeypatch.setitem(Sales.handlers, topic, poisoned)
    caplog.set_level(logging.ERROR, logger="eventshop.projections")
    with opened(url) as (shop, read_side):
        world = World(shop)
        world.seed(4)  # ann's order, then bob's: the poison, then more of both
        poison = next(
            n
            for n in shop.recorder.select_notifications(None, 10**6)
            if n.topic == topic and shop.order(n.originator_id).customer_id == "bob"
        )
        read_side.start()

        head = shop.head()
        others = [name for name in read_side.names if name != "sales"]
        assert all(read_side.wait_for(name, head, timeout=20) for name in others)
        sales = until(
            lambda: next(
                (s for s in read_side.status() if s["name"] == "sales" and s["last_error"]), None
            ),
            20,
            "the sales read model to stop",
        )
        assert sales["state"] == "stopped"
        assert sales["last_error"]["position"] == poison.id
        assert sales["last_error"]["topic"] == topic
        assert FAILURES[failure] in sales["last_error"]["error"].lower()
        assert any("STOPPED" in r.message and "sales" in r.message for r in caplog.records)
        # Everything before the poison is applied, nothing from it on.
        before = shop.recorder.select_notifications(None, 10**6, stop=poison.id - 1)
        assert read_side.position("sales") == before[-1].id
        assert applied(read_side)["sales"] == len(before)
        assert read_side.wait_for("sales", head, timeout=0.3) is False

        # The others keep following the log.
        world.run(("receive", "A-1", 5))
        assert read_side.wait_for("stock", shop.head(), timeout=10)

        monkeypatch.undo()  # the fix is deployed
        read_side.runner.restart("sales")
        assert read_side.wait_for(None, shop.head(), timeout=20)
        assert read_side.sales.sales_report()["totals"]["orders"] > 0
        assert dumps(read_side) == rebuilt(shop, url)
        assert set(applied(read_side).values()) == {event_count(shop)}
        assert all(s["last_error"] is None for s in read_side.status())
