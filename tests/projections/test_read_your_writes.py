"""wait_for: a query asked with a command's position sees that command's effect."""

from __future__ import annotations

from typing import Any

import pytest

from eventshop.bootstrap import open_read_side
from projections.engine import worker
from tests.conftest import settings_for
from tests.projections.support import ADDRESS, opened, until


def test_each_read_model_is_fresh_right_after_a_command(url: str) -> None:
    with opened(url) as (shop, read_side):
        read_side.start()

        done = shop.add_product("MUG-1", "Mug", "12.50")
        assert read_side.wait_for("catalogue", done.position, timeout=5)
        assert read_side.catalogue.get_product("MUG-1")["price"] == "12.50"

        done = shop.change_product("MUG-1", price="9.99")
        assert read_side.wait_for("catalogue", done.position, timeout=5)
        assert read_side.catalogue.get_product("MUG-1")["price"] == "9.99"

        done = shop.receive_stock("MUG-1", 5)
        assert read_side.wait_for("stock", done.position, timeout=5)
        assert read_side.stock.get_stock("MUG-1")["on_hand"] == 5
        assert read_side.wait_for("catalogue", done.position, timeout=5)
        assert read_side.catalogue.get_product("MUG-1")["available"] == 5

        # The catalogue ignores carts, but still gets past their events.
        cart = shop.open_cart("ann")
        assert read_side.wait_for("catalogue", cart.position, timeout=5)
        done = shop.add_to_cart(cart.aggregate.id, "MUG-1", 2)
        assert read_side.wait_for("carts", done.position, timeout=5)
        assert read_side.carts.get_cart(cart.aggregate.id)["total"] == "19.98"

        order = shop.check_out(cart.aggregate.id, ADDRESS, "ann@example.com")
        assert read_side.wait_for(None, order.position, timeout=5)
        assert read_side.orders.get_order(order.aggregate.id)["status"] == "placed"
        assert read_side.carts.get_cart(cart.aggregate.id)["status"] == "checked_out"
        assert read_side.stock.get_stock("MUG-1")["reserved"] == 2
        assert read_side.customers.get_customer("ann")["orders"] == 1
        assert read_side.sales.sales_report()["totals"]["revenue"] == "19.98"

        done = shop.pay(order.aggregate.id, "19.98", "pay-1")
        assert read_side.wait_for("orders", done.position, timeout=5)
        history = read_side.orders.get_order(order.aggregate.id)["status_history"]
        assert [h["status"] for h in history] == ["placed", "paid"]

        assert read_side.wait_for("orders", shop.head() + 1000, timeout=0.2) is False


def test_a_process_that_does_not_feed_the_read_models_still_waits_and_reads(url: str) -> None:
    # The API process with its projections in `eventshop worker` processes.
    with opened(url) as (shop, api_side):
        worker_side = open_read_side(settings_for(url), shop, worker_id="worker-1")
        try:
            worker_side.start()
            done = shop.add_product("MUG-1", "Mug", "12.50")
            assert api_side.wait_for("catalogue", done.position, timeout=5)
            assert api_side.catalogue.get_product("MUG-1")["name"] == "Mug"
            assert api_side.position("catalogue") >= done.position

            done = shop.receive_stock("MUG-1", 3)
            assert api_side.wait_for(None, done.position, timeout=5)
            stock = until(
                lambda: next(
                    (s for s in api_side.status() if s["name"] == "stock" and s["state"] == "live"),
                    None,
                ),
                10,
                "the worker's heartbeat",
            )
            assert (stock["position"], stock["lag"]) == (done.position, 0)
            assert stock["worker"] == "worker-1"
        finally:
            worker_side.close()
        stopped = {s["name"]: s["state"] for s in api_side.status()}
        assert set(stopped.values()) == {"stopped"}


def test_under_load_a_live_read_model_gathers_events_into_fewer_transactions(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough that only a waiting reader or the stop makes a read model write.
    monkeypatch.setattr(worker, "QUIET_SECONDS", 5.0)
    monkeypatch.setattr(worker, "LINGER_SECONDS", 60.0)
    monkeypatch.setattr(worker, "DEFER_SECONDS", 60.0)
    with opened(url) as (shop, read_side):
        read_side.start()
        shop.add_product("MUG-1", "Mug", "12.50")
        assert read_side.wait_for(None, shop.head(), timeout=5)
        until(lambda: {s["state"] for s in read_side.status()} == {"live"}, 10, "live")
        commits: dict[str, list[int]] = {"stock": [], "carts": []}
        for name, events in commits.items():
            model = read_side.projection(name)

            def counted(prepared: Any, *args: Any, _c: Any = model.commit, _e: Any = events) -> int:
                _e.append(prepared.events)
                return int(_c(prepared, *args))

            monkeypatch.setattr(model, "commit", counted)
        before = read_side.position("carts")
        for _ in range(20):
            done = shop.receive_stock("MUG-1", 1)  # rows for the stock model, none for carts
        # A reader waiting makes a read model write what it gathered, in one transaction.
        assert read_side.wait_for("stock", done.position, timeout=2)
        assert read_side.stock.get_stock("MUG-1")["on_hand"] == 20
        # Whatever had reached the worker when the reader came (all of it, or nearly).
        assert sum(commits["stock"]) == 20 and len(commits["stock"]) < 5, commits
        assert commits["carts"] == []
        assert read_side.position("carts") == before  # gathered, not written
        assert read_side.wait_for("carts", done.position, timeout=2)
        assert read_side.position("carts") == done.position
        assert sum(commits["carts"]) == 20 and len(commits["carts"]) < 5, commits
        applied = {s["name"]: s["events_applied"] for s in read_side.status()}
        assert applied["carts"] == applied["stock"]
        # Stopped with events gathered, started again: each applied once.
        for _ in range(3):
            last = shop.receive_stock("MUG-1", 1)
        read_side.stop()
        read_side.start()
        assert read_side.wait_for(None, last.position, timeout=5)
        applied = {s["name"]: s["events_applied"] for s in read_side.status()}
        assert applied["carts"] == applied["stock"] == applied["catalogue"]
        assert read_side.stock.get_stock("MUG-1")["on_hand"] == 23
