"""Reservation expiry (issue 17, item 1): an order unpaid when its payment window ends is
cancelled by the process manager, once, across workers and downtime, and never after it
was paid. A payment window of 0.2 s and a clock the test moves: no long sleeps."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.views import OrderDetail
from commands.expiry import REASON, PaymentExpiry
from commands.process import Fired, Timer
from commands.service import Shop
from domain.errors import RuleBroken
from domain.order import Order
from eventshop import bootstrap
from eventshop.processes import PaymentExpiryTimers, Processes, open_processes
from eventstore.causes import CausedMapper
from projections import ReadSide
from projections.engine.base import stamp
from projections.readmodels.orders import Orders
from projections.readmodels.stock import StockLevels
from tests.conftest import settings_for
from tests.projections.support import ADDRESS, until

# Long enough that an order placed in a test is not due before the test moves the clock
# past it, even on a loaded machine; the serve/worker test waits out a short one for real.
WINDOW = 2.0
SHORT_WINDOW = 0.2
EXPIRY = PaymentExpiryTimers.name


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_reused_url"
    return str(request.getfixturevalue(fixture))


class Clock:
    """Now, or later: the time the firings see."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def past_the_window(self) -> None:
        self.ahead = timedelta(seconds=10 * WINDOW)


@contextlib.contextmanager
def expiring(url: str, *, models: Any = (PaymentExpiryTimers,)) -> Iterator[Any]:
    """A shop, its read side feeding ``models`` (started), and the firings (not started)."""
    settings = settings_for(url, payment_window_seconds=WINDOW)
    shop = bootstrap.open_shop(settings, POSTGRES_POOL_SIZE="2")
    read_side = bootstrap.open_read_side(settings, shop, models=models)
    clock = Clock()
    processes = open_processes(settings.database_url, shop, read_side, clock=clock, interval=0.05)
    read_side.start()
    try:
        yield shop, read_side, processes, clock
    finally:
        processes.stop()
        read_side.close()
        shop.close()


def stocked(shop: Shop, units: int = 10) -> None:
    shop.add_product("MUG-1", "Mug", "5.00")
    shop.receive_stock("MUG-1", units)


def place(shop: Shop, customer: str = "ann", units: int = 2) -> Order:
    cart = shop.open_cart(customer).aggregate.id
    shop.add_to_cart(cart, "MUG-1", units)
    order: Order = shop.check_out(cart, ADDRESS, f"{customer}@example.com").aggregate
    return order


def fed(read_side: ReadSide, shop: Shop, name: str = EXPIRY) -> None:
    assert read_side.wait_for(name, shop.head(), timeout=10)


def cancellations(shop: Shop, order_id: UUID) -> list[tuple[Order.Cancelled, Any]]:
    mapper = shop.mapper
    assert isinstance(mapper, CausedMapper)
    decoded = [mapper.decode(stored) for stored in shop.recorder.select_events(order_id)]
    return [(event, cause) for event, cause in decoded if isinstance(event, Order.Cancelled)]


def test_an_unpaid_order_is_cancelled_by_the_process_manager_and_its_stock_released(
    url: str,
) -> None:
    with expiring(url, models=(Orders, StockLevels, PaymentExpiryTimers)) as (
        shop,
        read_side,
        processes,
        clock,
    ):
        stocked(shop)
        order = place(shop)
        window = order.payment_due_at - order.created_on
        assert abs(window.total_seconds() - WINDOW) < 0.05
        fed(read_side, shop)
        [timer] = read_side.projection(EXPIRY).timers()  # type: ignore[attr-defined]
        assert (timer.key, timer.due_at) == (str(order.id), order.payment_due_at)

        assert processes.fire_due() == 0  # not due yet
        clock.past_the_window()
        assert processes.fire_due() == 1

        cancelled = shop.order(order.id)
        assert (cancelled.status, shop.stock("MUG-1").reserved) == ("cancelled", 0)
        [(event, cause)] = cancellations(shop, order.id)
        assert (event.reason, event.refund) == (REASON, None)
        assert (cause.actor, cause.role) == ("process:payment_expiry", "process")
        fed(read_side, shop, "all")
        assert read_side.projection(EXPIRY).timers() == []  # type: ignore[attr-defined]
        assert processes.fire_due() == 0
        shown = OrderDetail.model_validate(read_side.orders.get_order(order.id))
        assert shown.payment_due_at == stamp(order.payment_due_at)
        assert (shown.status, shown.cancel_reason) == ("cancelled", REASON)
        assert read_side.stock.get_stock("MUG-1")["reserved"] == 0


def test_paid_shipped_and_cancelled_orders_are_not_expired(url: str) -> None:
    with expiring(url) as (shop, read_side, processes, clock):
        stocked(shop)
        paid, shipped, cancelled, unpaid = (place(shop, c) for c in ("ann", "bob", "cy", "di"))
        shop.pay(paid.id, "10.00", "pay-1")
        shop.pay(shipped.id, "10.00", "pay-2")
        shop.ship(shipped.id, "DHL", "T-1")
        shop.cancel(cancelled.id, "changed my mind")
        fed(read_side, shop)
        timers = read_side.projection(EXPIRY).timers()  # type: ignore[attr-defined]
        assert [t.key for t in timers] == [str(unpaid.id)]
        clock.past_the_window()
        assert processes.fire_due() == 1
        statuses = [shop.order(o.id).status for o in (paid, shipped, cancelled, unpaid)]
        assert statuses == ["paid", "shipped", "cancelled", "cancelled"]
        assert [len(cancellations(shop, o.id)) for o in (paid, shipped, cancelled)] == [0, 0, 1]


def test_a_payment_and_the_expiry_racing_have_one_winner_and_a_clear_answer(url: str) -> None:
    with expiring(url) as (shop, read_side, processes, clock):
        stocked(shop)
        manager = PaymentExpiry()
        # The payment first: the timer, still there, is refused (the order moved on).
        first = place(shop, "ann")
        timer = Timer(str(first.id), first.payment_due_at, {"version": first.version})
        shop.pay(first.id, "10.00", "pay-1")
        refused = manager.fire(shop, timer)
        assert refused.outcome == Fired.REFUSED
        assert "current version is 2" in refused.detail
        assert shop.order(first.id).status == "paid"
        # The expiry first: the payment is refused, and a second firing (the firer died
        # before deleting the timer) replays the first instead of cancelling again.
        second = place(shop, "bob")
        timer = Timer(str(second.id), second.payment_due_at, {"version": second.version})
        assert manager.fire(shop, timer).outcome == Fired.DONE
        with pytest.raises(RuleBroken, match="is cancelled; only a placed order can be paid"):
            shop.pay(second.id, "10.00", "pay-2")
        assert manager.fire(shop, timer).outcome == Fired.REPLAYED
        assert len(cancellations(shop, second.id)) == 1
        # At the same moment: exactly one of them is recorded, and the other was refused.
        third = place(shop, "cy")
        fed(read_side, shop)
        clock.past_the_window()
        answers: list[str] = []
        start = threading.Barrier(2)

        def pay() -> None:
            start.wait()
            try:
                shop.pay(third.id, "10.00", "pay-3")
                answers.append("paid")
            except RuleBroken:
                answers.append("payment refused")

        payer = threading.Thread(target=pay)
        payer.start()
        start.wait()
        fired = processes.fire_due()
        payer.join()
        stored = [e.topic.rsplit(".", 1)[1] for e in shop.recorder.select_events(third.id)]
        assert stored in (["Placed", "Paid"], ["Placed", "Cancelled"])
        assert answers == (["paid"] if stored[-1] == "Paid" else ["payment refused"])
        assert fired == 1  # done, or refused as paid: either way the timer is gone
        fed(read_side, shop)
        assert read_side.projection(EXPIRY).timers() == []  # type: ignore[attr-defined]


def test_two_workers_fire_each_timer_once(url: str) -> None:
    with expiring(url) as (shop, read_side, processes, clock), expiring(url) as other:
        _, other_side, other_processes, other_clock = other
        stocked(shop)
        orders = [place(shop, c) for c in ("ann", "bob", "cy", "di")]
        fed(read_side, shop)
        fed(other_side, shop)
        clock.past_the_window()
        other_clock.past_the_window()
        counts: list[int] = []
        start = threading.Barrier(2)

        def fire(firing: Processes) -> None:
            start.wait()
            counts.append(firing.fire_due())

        threads = [threading.Thread(target=fire, args=(p,)) for p in (processes, other_processes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(counts) == len(orders)
        assert [len(cancellations(shop, o.id)) for o in orders] == [1, 1, 1, 1]


def test_timers_due_while_no_worker_ran_fire_when_one_starts(url: str) -> None:
    settings = settings_for(url, payment_window_seconds=WINDOW)
    with bootstrap.open_shop(settings) as shop:
        stocked(shop)
        order = place(shop)  # nothing runs: no timer yet, and none fired
    with expiring(url) as (shop, _, processes, clock):
        clock.past_the_window()  # the worker was down for longer than the window
        processes.start()
        until(lambda: shop.order(order.id).status == "cancelled", 10, "the late expiry")
        assert shop.stock("MUG-1").reserved == 0


def test_the_timers_rebuilt_from_the_log_equal_the_live_ones(url: str) -> None:
    with expiring(url) as (shop, read_side, processes, clock):
        stocked(shop)
        expired, paid, by_hand = (place(shop, c) for c in ("ann", "bob", "cy"))
        shop.pay(paid.id, "10.00", "pay-1")
        shop.cancel(by_hand.id, "changed my mind")
        fed(read_side, shop)
        clock.past_the_window()
        assert processes.fire_due() == 1
        pending = place(shop, "di")  # not due at the clock's time: stays
        clock.ahead = timedelta(0)
        assert processes.fire_due() == 0
        fed(read_side, shop)
        live = read_side.projection(EXPIRY).timers()  # type: ignore[attr-defined]
        assert [t.key for t in live] == [str(pending.id)]
        outcome = read_side.rebuild_blocking(EXPIRY)
        assert outcome.comparison is not None and outcome.comparison.equal
        assert read_side.projection(EXPIRY).timers() == live  # type: ignore[attr-defined]
        assert shop.order(expired.id).status == "cancelled"


def test_serve_and_worker_run_the_expiry(sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_for(sqlite_url, payment_window_seconds=SHORT_WINDOW, var_dir=tmp_path)
    app = create_app(settings)
    shop: Shop = app.state.shop
    stocked(shop)
    served = place(shop, "ann")
    time.sleep(SHORT_WINDOW)  # overdue before it starts: fired in its first round
    with TestClient(app):  # serve, with the projections inside
        until(lambda: shop.order(served.id).status == "cancelled", 10, "the expiry in serve")
    with bootstrap.open_shop(settings) as shop:
        worked = place(shop, "bob")
        time.sleep(SHORT_WINDOW)
        stop = threading.Event()
        worker = threading.Thread(target=bootstrap.run_worker, args=(settings, shop, stop))
        worker.start()
        try:
            until(lambda: shop.order(worked.id).status == "cancelled", 10, "the worker's expiry")
        finally:
            stop.set()
            worker.join()
