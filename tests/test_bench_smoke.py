"""The benchmark suite works end to end at tiny sizes, so CI catches a broken benchmark.

No timing is asserted: speed is measured by ``make bench``, not judged by tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg

from bench import append_growth, delivery_lag, history_length, order_list, run_all, write_path
from bench.common import ADMIN_URL, bulk_append
from eventshop.bootstrap import open_read_side
from eventstore.url import StoreURL
from projections.readmodels.orders import Orders
from tests.conftest import open_shop, settings_for


def _databases_of_this_process() -> set[str]:
    with psycopg.connect(StoreURL.parse(ADMIN_URL).dsn(), autocommit=True) as conn:
        rows = conn.execute(
            # The test run's own database (tests/conftest.py) is not the benchmarks'.
            "SELECT datname FROM pg_database WHERE datname LIKE %s"
            " AND datname NOT LIKE 'eventshop\\_test\\_%%'",
            (f"eventshop\\_%\\_{os.getpid()}\\_%",),
        ).fetchall()
    return {row[0] for row in rows}


def test_quick_suite_measures_everything_and_saves_table_json_and_plot(tmp_path: Path) -> None:
    echoed: list[str] = []
    results = run_all.run_suite(quick=True, echo=echoed.append)

    assert results["errors"] == {}
    # The write path: each scenario ran both sides, alternating, every request answered
    # (no figures judged: a quick run's mean nothing).
    p1 = results["p1"]
    assert set(p1["scenarios"]) == set(write_path.QUICK["only"])
    for name, scenario in p1["scenarios"].items():
        sides = [run["side"] for run in scenario["runs"]]
        assert sides == ["shop", "floor"] * write_path.QUICK["rounds"], name
        for run in scenario["runs"]:
            assert run["requests_per_second"] > 0, (name, run["side"])
            assert run["server_ms_per_command"] > 0, (name, run["side"])
            if name != "appends":
                assert run["unfinished"] == run["failures"] == 0, (name, run["side"])
        assert scenario["ratio"] > 0
    for name in ("spread", "flash"):
        shop_runs = [run for run in p1["scenarios"][name]["runs"] if run["side"] == "shop"]
        # Read models watched through GET /api/projections, and caught up after each round.
        assert all(run["lag_polls"] > 0 and run["caught_up"] for run in shop_runs), name
    assert p1["scenarios"]["spread"]["shop"]["non_2xx"] == 0
    flash = p1["scenarios"]["flash"]
    assert flash["shop"]["cycles"] > 0 and flash["floor"]["cycles"] > 0
    assert flash["events_per_step"]["checkout"] >= 2  # at least the order and the reservation

    history = results["history"]
    quick = history_length.QUICK
    assert [row["length"] for row in history["rows"]] == list(quick["lengths"])
    for row in history["rows"]:
        assert row["stock_service"]["n"] == quick["commands"]
        assert row["stock_http"]["n"] == quick["http_commands"]
        assert row["cart_service"]["n"] == quick["cart_commands"]

    orders = results["orders"]
    assert [row["size"] for row in orders["rows"]] == list(order_list.QUICK["sizes"])
    for row in orders["rows"]:
        assert {row[kind]["n"] for kind in order_list.QUERIES} == {order_list.QUICK["rounds"]}

    growth = results["append"]
    assert growth["log_before"]["empty"] == 0
    assert growth["log_before"]["grown"] >= append_growth.QUICK["events"]
    assert growth["summary"]["empty"]["appends_per_second"] > 0
    assert growth["summary"]["grown"]["appends_per_second"] > 0

    # Every benchmark dropped the database it made.
    assert _databases_of_this_process() == set()

    paths = run_all.save(results, tmp_path)
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(results))
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = run_all.summary(results)
    assert len(paths["md"].read_text().splitlines()) == 2 + len(rows)
    assert {row[0] for row in rows} == {"P1", "flash", "appends", "P3a", "P3b", "append"}
    assert "FAILED" not in run_all.table(results)


def test_delivery_lag_quick_run_sees_every_event_once_in_log_order() -> None:
    """python -m bench.delivery_lag --quick: the shop and its publisher deployed, one
    tiny round of the flash sale, every CloudEvent of the log received and measured."""
    echoed: list[str] = []
    result = delivery_lag.run(**delivery_lag.QUICK, echo=echoed.append)

    (measured,) = result["rounds"]
    assert measured["checkouts"] > 0 and measured["non_2xx"] == 0
    assert measured["events"] > 0 and measured["to_ack_ms"]["n"] == measured["events"]
    assert measured["to_consumer_ms"]["n"] == measured["events"]
    assert measured["lag_polls"] > 0  # GET /api/deliveries answered during the round
    assert (result["missing"], result["unexpected"], result["in_log_order"]) == (0, 0, True)
    assert result["all"]["duplicates"] == result["all"]["out_of_order"] == 0
    assert any(line.startswith("round 1:") for line in echoed)
    assert _databases_of_this_process() == set()


def test_bulk_built_histories_are_what_the_shop_would_have_stored(pg_url: str) -> None:
    shop = open_shop(pg_url)
    try:
        history_length.build_stock(shop, "LONG-1", 250)
        stock = shop.stock("LONG-1")
        assert (stock.version, stock.on_hand) == (250, 249)
        snapshots = shop.snapshots.get(stock.id) if shop.snapshots else []
        assert [s.originator_version for s in snapshots] == [100, 200]
        # The next command carries on from the bulk-built state.
        assert shop.receive_stock("LONG-1", 5).aggregate.on_hand == 254

        cart = history_length.build_cart(shop, 40)
        assert shop.cart(cart.id).version == 40

        head = shop.head()
        stored = bulk_append(shop, append_growth.cart_events(30), chunk=7)
        assert stored == 32  # whole carts of four events
        assert len(shop.recorder.select_notifications(head + 1, 100)) == 32

        read_side = open_read_side(settings_for(pg_url), shop, models=[Orders])
        try:
            order_list.fill(pg_url, StoreURL.parse(pg_url).schema, 120)
            page = read_side.orders.list_orders(limit=100)
            assert len(page["items"]) == 100 and page["next_cursor"] is not None
            rest = read_side.orders.list_orders(limit=100, cursor=page["next_cursor"])
            assert len(rest["items"]) == 20 and rest["next_cursor"] is None
            order = read_side.orders.get_order(page["items"][0]["id"])
            assert order["shipping_address"]["country"] in {"DE", "FR", "ES"}
        finally:
            read_side.close()
    finally:
        shop.close()
