"""Poison events: parked, and the read model goes on (``degraded``) until the event is
retried after a fix, exactly once, or skipped; a read model whose policy is ``stop``
stops at it instead, loudly, and never skips it."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from typing import Any

import pytest
from eventsourcing.utils import get_topic
from typer.testing import CliRunner

from cli.projections import projections
from domain.order import Order
from projections import NotParked, ReadSide, StillFailing
from projections.engine import parking
from projections.engine.parking import STOP, ParkedEvent
from projections.readmodels.sales import Sales
from tests.projections.support import (
    World,
    applied,
    dumps,
    event_count,
    opened,
    rebuilt,
    until,
)

# A bug in Python, raised at once; and a bug in SQL, which the database reports when the
# batch's rows are written, for the whole batch (then the batch is applied in halves
# until the event at fault is alone).
FAILURES = {"python": "sales cannot handle bob", "database": "unique"}
PLACED = get_topic(Order.Placed)


def poison_bob(monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    """Make the sales read model fail on every order bob places."""
    handler = Sales.handlers[PLACED]

    def poisoned(model: Any, tx: Any, event: Any) -> None:
        handler(model, tx, event)
        if event.customer_id != "bob":
            return
        if failure == "python":
            raise ValueError("sales cannot handle bob")
        handler(model, tx, event)  # the same rows again

    monkeypatch.setitem(Sales.handlers, PLACED, poisoned)


def bobs_orders(world: World) -> list[int]:
    """The positions of bob's Order.Placed events, in log order."""
    shop = world.shop
    return [
        n.id
        for n in shop.recorder.select_notifications(None, 10**6)
        if n.topic == PLACED and shop.order(n.originator_id).customer_id == "bob"
    ]


def sold(world: World, customer: str | None = None) -> int:
    """Orders not cancelled (of ``customer``)."""
    orders = [world.shop.order(order) for order in world.orders]
    return sum(1 for o in orders if o.status != "cancelled" and customer in (None, o.customer_id))


def state_of(read_side: ReadSide, name: str) -> dict[str, Any]:
    return next(s for s in read_side.status() if s["name"] == name)


@pytest.mark.parametrize("failure", FAILURES)
def test_a_poison_event_is_parked_and_retried_after_the_fix_exactly_once(
    url: str, failure: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    poison_bob(monkeypatch, failure)
    caplog.set_level(logging.ERROR, logger="eventshop.projections")
    with opened(url) as (shop, read_side):
        world = World(shop)
        world.seed(4)  # ann's order, then bob's, ann's, bob's: one catch-up batch
        read_side.start()

        # Nothing waits for the poison: every read model reaches the head, sales too.
        assert read_side.wait_for(None, shop.head(), timeout=20)
        world.buy("bob", [("A-1", 1)])  # and one more, arriving live
        assert read_side.wait_for(None, shop.head(), timeout=20)
        poison = bobs_orders(world)
        assert len(poison) == 3

        parked = read_side.parked("sales")
        sales = state_of(read_side, "sales")
        assert (sales["state"], sales["parked"], sales["last_error"]) == (
            "degraded",
            len(parked),
            None,
        )
        assert {s["state"] for s in read_side.status() if s["name"] != "sales"} == {"live"}
        # Each poison event, and behind it its order's later events, to keep their order.
        first = [p for p in parked if "held behind" not in p.error]
        assert [p.position for p in first] == poison
        assert {(p.type, p.retries) for p in first} == {("Order.Placed", 0)}
        assert all(FAILURES[failure] in p.error.lower() for p in first)
        assert {p.aggregate_id for p in parked} == {p.aggregate_id for p in first}
        assert {p.type for p in parked} == {"Order.Placed", "Order.Cancelled"}
        assert parked != first  # a cancellation of a poisoned order is held behind it
        assert first[0].aggregate_id == str(
            shop.recorder.select_notifications(poison[0], 1)[0].originator_id
        )
        assert any("PARKED" in r.message and "sales" in r.message for r in caplog.records)
        # Every other event, before, between and after them in one batch, is applied once.
        assert read_side.sales.sales_report()["totals"]["orders"] == sold(world, "ann")
        assert set(applied(read_side).values()) == {event_count(shop)}

        # Before the fix, a retry fails again: nothing is written, the error is kept.
        with pytest.raises(StillFailing):
            read_side.retry_parked("sales", poison[0])
        assert read_side.parked("sales")[0].retries == 1

        # A rebuild keeps them parked, and says so; it does not even try them.
        before = read_side.parked("sales")
        outcome = read_side.rebuild_blocking("sales")
        comparison = outcome.comparison
        assert comparison is not None and comparison.equal, outcome
        everything = len(parked)
        assert (comparison.live_parked, comparison.new_parked) == (everything, everything)
        assert comparison.kept_parked == everything
        assert read_side.parked("sales") == before

        monkeypatch.undo()  # the fix is deployed
        for position in poison:
            assert read_side.retry_parked("sales", position).position == position
        with pytest.raises(NotParked):  # exactly once: the second retry finds nothing
            read_side.retry_parked("sales", poison[0])
        assert read_side.parked("sales") == []
        assert state_of(read_side, "sales")["state"] == "live"
        assert read_side.sales.sales_report()["totals"]["orders"] == sold(world)
        # Applied late, exactly once: as if applied in order, by the fixed code.
        again = read_side.rebuild_blocking("sales").comparison
        assert again is not None and again.equal and again.new_parked == 0, again


@pytest.mark.parametrize("failure", ["python"])
def test_with_the_stop_policy_a_poison_event_stops_only_its_read_model_until_fixed(
    url: str, failure: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    poison_bob(monkeypatch, failure)
    monkeypatch.setattr(Sales, "on_failure", STOP)
    caplog.set_level(logging.ERROR, logger="eventshop.projections")
    with opened(url) as (shop, read_side):
        world = World(shop)
        world.seed(4)  # ann's order, then bob's: the poison, then more of both
        poison = bobs_orders(world)[0]
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
        assert sales["last_error"]["position"] == poison
        assert sales["last_error"]["topic"] == PLACED
        assert FAILURES[failure] in sales["last_error"]["error"].lower()
        assert any("STOPPED" in r.message and "sales" in r.message for r in caplog.records)
        assert read_side.parked("sales") == []
        # Everything before the poison is applied, nothing from it on.
        before = shop.recorder.select_notifications(None, 10**6, stop=poison - 1)
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


@pytest.mark.postgres
def test_a_nul_in_an_email_parks_that_order_and_later_orders_still_appear(
    pg_reused_url: str,
) -> None:
    """The reproduction: PostgreSQL text cannot hold NUL, so the orders read model could
    not write an order placed with one in its e-mail, and stopped for everyone."""
    with opened(pg_reused_url) as (shop, read_side):
        world = World(shop)
        world.seed(1)
        template = next(
            n for n in shop.recorder.select_notifications(None, 10**6) if n.topic == PLACED
        )
        placed = shop.mapper.to_domain_event(template)
        # Stored as an old release stored it, before e-mails were checked for NUL.
        forged = dataclasses.replace(
            placed, originator_id=uuid.uuid4(), cart_id=uuid.uuid4(), email="m\x00@x.example"
        )
        shop.recorder.insert_events([shop.mapper.to_stored_event(forged)])
        poison = shop.head()
        world.buy("ann", [("B-2", 1)])
        later = world.orders[-1]
        read_side.start()

        assert read_side.wait_for("orders", shop.head(), timeout=20)
        assert read_side.orders.get_order(later)["status"] == "placed"
        assert len(read_side.orders.list_orders(customer_id="ann")["items"]) == 2
        (parked,) = read_side.parked("orders")
        assert (parked.position, parked.aggregate_id) == (poison, str(forged.originator_id))
        assert "NUL" in parked.error
        assert state_of(read_side, "orders")["state"] == "degraded"

        with pytest.raises(StillFailing):  # no fix for that: it is skipped
            read_side.retry_parked("orders", poison)
        assert read_side.skip_parked("orders", poison, by="admin").position == poison
        assert read_side.parked("orders") == []
        assert state_of(read_side, "orders")["state"] == "live"
        with pytest.raises(NotParked):
            read_side.skip_parked("orders", poison, by="admin")


def test_the_cli_lists_retries_and_skips_parked_events(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with opened(sqlite_url) as (shop, read_side):
        World(shop).seed(1)
        # Two products' events parked by hand for sales, which has no handler for them: a
        # retry applies nothing, and nothing else is parked.
        log = shop.recorder.select_notifications(None, 100)
        products = [n for n in log if "Product" in n.topic]
        assert products[0].originator_id != products[1].originator_id
        sales = read_side.projection("sales")
        with sales.view.writing() as cursor:
            entries = [ParkedEvent.of(n, "parked by a test") for n in products[:2]]
            parking.write(sales.view, cursor, "sales", entries)
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", sqlite_url)
    cli = CliRunner()
    first, second = (str(n.id) for n in products[:2])

    listed = cli.invoke(projections, ["parked", "list", "sales", "--json"])
    assert [item["position"] for item in json.loads(listed.stdout)] == [int(first), int(second)]
    table = cli.invoke(projections, ["parked", "list", "sales"], env={"COLUMNS": "80"}).stdout
    assert "sales: 2 parked event(s)" in table
    # At 80 columns, what each is and why it was parked is there whole.
    assert all(len(line) <= 80 for line in table.splitlines()), table
    aggregate, kind = str(products[0].originator_id), products[0].topic.rsplit(":", 1)[-1]
    for text in (kind, aggregate, "version 1", "parked", "test"):
        assert text in table, text
    assert cli.invoke(projections, ["status"]).stderr.count("2 parked event(s)") == 1
    retried = cli.invoke(projections, ["parked", "retry", "sales", first, "--json"])
    assert retried.exit_code == 0
    assert json.loads(retried.stdout)["applied"]["position"] == int(first)
    again = cli.invoke(projections, ["parked", "retry", "sales", first])
    assert again.exit_code == 2 and "is parked for sales" in again.stderr
    assert cli.invoke(projections, ["parked", "skip", "sales", second, "--yes"]).exit_code == 0
    assert json.loads(cli.invoke(projections, ["parked", "list", "sales", "--json"]).stdout) == []
