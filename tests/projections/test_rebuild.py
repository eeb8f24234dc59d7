"""Blue/green rebuilds while serving, projection versions, resets (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from eventsourcing.utils import get_topic
from typer.testing import CliRunner

from cli.projections import projections
from domain.order import Order
from eventshop.bootstrap import READ_MODELS
from projections import AlreadyRebuilding, ReadSide
from projections.engine.parking import STOP
from projections.readmodels.catalogue import Catalogue
from projections.readmodels.orders import Orders
from tests.projections.support import (
    ROOT,
    SKUS,
    World,
    alive,
    applied,
    descendants,
    dumps,
    event_count,
    opened,
    rebuilt,
    stop_worker,
    until,
)


def answers(read_side: ReadSide, world: World) -> dict[str, Any]:
    """What clients ask each read model: lists and single items, several tables each."""
    return {
        "products": read_side.catalogue.list_products(limit=500),
        "product": read_side.catalogue.get_product(SKUS[0]),
        "stock": read_side.stock.list_stock(limit=500),
        "carts": [read_side.carts.get_cart(c) for c in world.carts[:3]],
        "orders": read_side.orders.list_orders(limit=500),
        "order": [read_side.orders.get_order(o) for o in world.orders[:3]],
        "customer": read_side.customers.order_history("ann", limit=500),
        "sales": read_side.sales.sales_report(),
    }


@contextmanager
def asking(
    ask: Callable[[], Any], check: Callable[[Any], None], pause: float = 0.0
) -> Iterator[dict[str, Any]]:
    """A thread asking in a loop until the block ends; every error and every failed check
    is collected in ``seen["problems"]``; ``seen["asked"]`` counts the answers. Without a
    ``pause`` between questions, as often as it can: for a swap, which takes a moment."""
    seen: dict[str, Any] = {"asked": 0, "problems": []}
    stopping = threading.Event()

    def loop() -> None:
        while not stopping.is_set():
            try:
                check(ask())
            except Exception as error:  # each one is a failure of the test
                seen["problems"].append(repr(error))
            seen["asked"] += 1
            if pause:
                stopping.wait(pause)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stopping.set()
        thread.join(30)


def has_table(read_side: ReadSide, table: str) -> bool:
    view = read_side.orders.view
    with view.writing() as cursor:
        return view.table_exists(cursor, table)


def entry(read_side: ReadSide, name: str) -> dict[str, Any]:
    return next(s for s in read_side.status() if s["name"] == name)


def test_queries_keep_answering_during_rebuilds_and_the_rebuilt_models_equal_the_old(
    url: str,
) -> None:
    with opened(url) as (shop, read_side):
        world = World(shop)
        world.seed(60)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=30)
        before, expected = dumps(read_side), answers(read_side, world)

        def same(found: dict[str, Any]) -> None:
            assert found == expected, "an answer differed from the live copy's"

        with asking(lambda: answers(read_side, world), same) as seen:
            until(lambda: seen["asked"] > 0, 30, "the first answers")
            for name in read_side.names:
                read_side.rebuild(name)
            outcomes = {name: read_side.wait_rebuild(name, timeout=120) for name in read_side.names}
            asked_during = seen["asked"]
            until(lambda: seen["asked"] > asked_during + 2, 30, "answers after the swaps")

        assert seen["problems"] == []
        for name, outcome in outcomes.items():
            assert outcome is not None and outcome.error is None, name
            assert outcome.comparison is not None and outcome.comparison.equal, (name, outcome)
            assert outcome.position == shop.head()
        assert dumps(read_side) == before
        for status in read_side.status():
            assert status["rebuild"] is None
            assert status["last_rebuild"]["comparison"]["equal"]
            assert status["stored_version"] == status["version"]  # as they were: no bump
        assert not has_table(read_side, "next_orders")
        assert not has_table(read_side, "next_orders_tracking")

        # Fed on, in the new tables, from where the copies stood; counted exactly once.
        world.seed(10)
        assert read_side.wait_for(None, shop.head(), timeout=30)
        assert dumps(read_side) == rebuilt(shop, url)
        assert set(applied(read_side).values()) == {event_count(shop)}


def test_a_rebuild_while_commands_keep_coming_swaps_in_step_with_the_live_feeder(
    url: str,
) -> None:
    with opened(url) as (shop, read_side):
        world = World(shop)
        world.seed(30)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=30)
        counted = [len(world.orders)]

        def never_fewer(found: dict[str, Any]) -> None:
            # The orders the shop had before the rebuild are all there, always.
            assert len(found["items"]) >= counted[0] > 0

        writing = threading.Thread(target=world.seed, args=(40,))
        with asking(lambda: read_side.orders.list_orders(limit=500), never_fewer) as seen:
            writing.start()
            read_side.rebuild("orders")
            read_side.rebuild("sales")
            outcomes = [read_side.wait_rebuild(n, timeout=120) for n in ("orders", "sales")]
            writing.join(120)
        assert seen["problems"] == [] and seen["asked"] > 0
        assert all(o is not None and o.error is None for o in outcomes), outcomes
        assert read_side.wait_for(None, shop.head(), timeout=30)
        assert dumps(read_side) == rebuilt(shop, url)
        assert set(applied(read_side).values()) == {event_count(shop)}


def test_the_log_can_be_read_while_the_writer_is_held_and_another_writer_waits(
    sqlite_url: str,
) -> None:
    # A swap reads the log while it holds the read side's writer connection; on SQLite
    # a second swap queued for that connection once blocked the read (two rebuilds at
    # once stood still until the pool's timeout).
    with opened(sqlite_url) as (shop, read_side):
        World(shop).seed(3)
        view, source = read_side.orders.view, read_side.rebuilder.source

        def second_writer() -> None:
            with view.writing():
                pass

        with view.writing():
            other = threading.Thread(target=second_writer)
            other.start()
            until(lambda: _waiting(other), 5, "the second writer to wait")
            reader = threading.Thread(target=lambda: source.read(0, 10))
            reader.start()
            reader.join(5)
            assert not reader.is_alive(), "reading the log waited for the writer"
        other.join(5)


def _waiting(thread: threading.Thread) -> bool:
    """Whether ``thread`` is inside the pool, waiting for a connection."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "get_connection":
            return True
        frame = frame.f_back
    return False


# A rebuild in another process, slowed down so that it can be caught halfway; with
# worker processes (argv[3]) however small the log.
SLOW_REBUILD = """
import sys, time
from projections.engine.feed import Source
def slowed(read):
    def slow(*args, **kwargs):
        time.sleep(0.1)
        return read(*args, **kwargs)
    return slow
Source.read, Source.read_rows = slowed(Source.read), slowed(Source.read_rows)
from tests.projections.support import opened
with opened(sys.argv[1]) as (shop, read_side):
    read_side.rebuilder.batch_size = 5
    read_side.rebuilder.processes = int(sys.argv[3])
    read_side.rebuilder.parallel_from = 0
    read_side.rebuild_blocking(sys.argv[2])
"""


@pytest.mark.parametrize("workers", [0, 2])
def test_a_rebuild_killed_halfway_leaves_the_live_copy_serving_and_can_be_run_again(
    url: str, workers: int
) -> None:
    with opened(url) as (shop, read_side):
        world = World(shop)
        world.seed(60)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=30)
        before = dumps(read_side)
        expected = read_side.orders.list_orders(limit=500)

        def same(found: dict[str, Any]) -> None:
            assert found == expected

        rebuilding = subprocess.Popen(
            [sys.executable, "-c", SLOW_REBUILD, url, "orders", str(workers)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            # No swap to catch here (the rebuild dies before it), only the live copy to
            # keep answering: asking without a pause took a core from the rebuild.
            with asking(lambda: read_side.orders.list_orders(limit=500), same, 0.01) as seen:
                progress = until(
                    lambda: (
                        ((r := entry(read_side, "orders")["rebuild"]) and r["position"] > 0 and r)
                        or rebuilding.poll() is not None
                    ),
                    60,
                    "the other process's rebuild to make progress",
                )
                assert rebuilding.poll() is None, rebuilding.stderr and rebuilding.stderr.read()
                assert progress["position"] < shop.head()  # halfway
                assert entry(read_side, "orders")["state"] == "rebuilding"
                # One rebuild per read model, across processes.
                with pytest.raises(AlreadyRebuilding, match="another process"):
                    read_side.rebuild("orders")
                # With workers: one at least (the pool starts a second when the first is
                # busy), the server they are forked from, and the resource tracker.
                below: set[int] = set()
                if workers:
                    below = until(
                        lambda: len(found := descendants(rebuilding.pid)) >= 3 and found,
                        30,
                        "the workers",
                    )
                rebuilding.send_signal(signal.SIGKILL)
                rebuilding.wait(10)
            assert seen["problems"] == [] and seen["asked"] > 0
        finally:
            stop_worker(rebuilding)
        assert rebuilding.returncode == -signal.SIGKILL
        # Workers watch their parent: none outlives it.
        until(lambda: not any(alive(pid) for pid in below), 30, "the workers to exit")

        # Its lock died with it: no longer "rebuilding", but reported as interrupted.
        status = until(
            lambda: (s := entry(read_side, "orders"))["rebuild"] is None and s, 10, "the lock"
        )
        assert status["state"] == "live"
        assert "interrupted" in status["last_rebuild"]["error"]
        assert has_table(read_side, "next_orders")  # the dead rebuild's copy, unused
        assert dumps(read_side) == before

        world.seed(5)  # the live copy keeps following the log
        assert read_side.wait_for(None, shop.head(), timeout=30)
        outcome = read_side.rebuild_blocking("orders")
        assert outcome.comparison is not None and outcome.comparison.equal, outcome
        assert not has_table(read_side, "next_orders")
        assert dumps(read_side) == rebuilt(shop, url)
        assert set(applied(read_side).values()) == {event_count(shop)}


class Poison(Exception):
    """A handler of the new code fails on some event."""


def test_a_failed_rebuild_leaves_the_live_copy_untouched(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with opened(url) as (shop, read_side):
        World(shop).seed(30)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=30)
        before = dumps(read_side)
        topic = get_topic(Order.Shipped)
        calls: list[Any] = []

        def failing(model: Any, tx: Any, event: Any) -> None:
            calls.append(event)
            if len(calls) == 5:
                raise Poison("bad new code")

        monkeypatch.setitem(Orders.handlers, topic, failing)
        monkeypatch.setattr(Orders, "on_failure", STOP)  # else the event would be parked
        with pytest.raises(Exception, match="bad new code"):
            read_side.rebuild_blocking("orders")
        status = entry(read_side, "orders")
        assert status["state"] == "live"
        assert "bad new code" in status["last_rebuild"]["error"]
        assert not has_table(read_side, "next_orders")  # dropped on failure
        assert dumps(read_side) == before

        monkeypatch.undo()
        comparison = read_side.rebuild_blocking("orders").comparison
        assert comparison is not None and comparison.equal
        assert dumps(read_side) == before


def test_a_second_rebuild_of_one_read_model_is_refused_while_the_first_runs(url: str) -> None:
    with opened(url) as (shop, read_side):
        World(shop).seed(10)
        gate = threading.Event()
        source = read_side.rebuilder.source
        read = source.read

        def held(*args: Any, **kwargs: Any) -> Any:
            gate.wait(30)
            return read(*args, **kwargs)

        source.read = held  # type: ignore[method-assign]
        read_side.rebuild("stock")
        with pytest.raises(AlreadyRebuilding, match="already"):
            read_side.rebuild("stock")
        with pytest.raises(KeyError):
            read_side.rebuild("no_such_model")
        status = entry(read_side, "stock")
        assert status["state"] == "rebuilding" and status["rebuild"]["phase"] == "copying"
        gate.set()
        outcome = read_side.wait_rebuild("stock", timeout=60)
        assert outcome is not None and outcome.error is None
        read_side.rebuild("stock")  # once done, it can be rebuilt again
        assert read_side.wait_rebuild("stock", timeout=60) is not None


class CatalogueV2(Catalogue):
    """The catalogue's next version: its table gains a column."""

    name = "catalogue"  # the library names a Projection subclass after itself otherwise
    version = 2
    ddl = (
        Catalogue.ddl[0].replace(
            "updated_at TEXT NOT NULL)", "updated_at TEXT NOT NULL, note TEXT)"
        ),
    )


MODELS_V2 = tuple(CatalogueV2 if m is Catalogue else m for m in READ_MODELS)


def test_a_changed_projection_version_is_rebuilt_on_start_while_the_old_copy_serves(
    url: str,
) -> None:
    with opened(url) as (shop, read_side):
        world = World(shop)
        world.seed(30)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=30)
        products = read_side.catalogue.list_products(limit=500)
        before = dumps(read_side)

    with opened(url, models=MODELS_V2) as (shop, read_side):
        status = entry(read_side, "catalogue")
        assert (status["version"], status["stored_version"]) == (2, 1)

        def same(found: dict[str, Any]) -> None:
            assert found == products

        # Queries were prepared on the old table; SELECT * then gains a column.
        with asking(lambda: read_side.catalogue.list_products(limit=500), same) as seen:
            until(lambda: seen["asked"] > 5, 30, "answers from the old copy")
            read_side.start()
            until(lambda: entry(read_side, "catalogue")["stored_version"] == 2, 60, "the swap")
            asked = seen["asked"]
            until(lambda: seen["asked"] > asked + 5, 30, "answers from the new copy")
        assert seen["problems"] == []

        outcome = entry(read_side, "catalogue")["last_rebuild"]
        assert (outcome["previous_version"], outcome["version"]) == (1, 2)
        table = outcome["comparison"]["tables"]["catalogue"]
        # The same rows, in a table of another shape: reported, not fatal.
        assert table["live_rows"] == table["new_rows"] == len(SKUS)
        assert outcome["comparison"]["differences"] == ["catalogue"]
        with read_side.catalogue.reading() as tx:
            assert tx.execute("SELECT note FROM {catalogue}").rows()[0] == {"note": None}
        others = [s for s in read_side.status() if s["name"] != "catalogue"]
        assert all(s["last_rebuild"] is None for s in others)
        assert all(s["stored_version"] == s["version"] for s in others)
        assert dumps(read_side) | {"catalogue": None} == before | {"catalogue": None}

        world.shop = shop
        world.run(("change_product", SKUS[0], None, "3.33"))
        assert read_side.wait_for("catalogue", shop.head(), timeout=30)
        assert read_side.catalogue.get_product(SKUS[0])["price"] == "3.33"

    # The old code finds tables of a newer version: it answers, never feeds, never rebuilds.
    with opened(url) as (shop, read_side):
        read_side.start()
        until(lambda: entry(read_side, "catalogue")["state"] == "outdated", 30, "outdated")
        World(shop).run(("change_product", SKUS[0], None, "4.44"))
        assert read_side.wait_for("stock", shop.head(), timeout=30)
        assert not read_side.wait_for("catalogue", shop.head(), timeout=1)
        assert read_side.catalogue.get_product(SKUS[0])["price"] == "3.33"
        assert read_side.rebuilder.progress("catalogue") is None


@pytest.mark.fresh_schema
def test_a_fresh_database_is_built_at_the_current_version(url: str) -> None:
    with opened(url, models=MODELS_V2) as (shop, read_side):
        World(shop).seed(5)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=30)
        status = entry(read_side, "catalogue")
        assert (status["version"], status["stored_version"]) == (2, 2)
        assert status["state"] == "live" and status["last_rebuild"] is None
        assert read_side.rebuilder.progress("catalogue") is None


def test_a_reset_empties_the_tables_and_feeds_them_again_from_the_start(url: str) -> None:
    with opened(url) as (shop, read_side):
        World(shop).seed(20)
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=30)
        read_side.stop()
        before = dumps(read_side)
        read_side.rebuilder.batch_size = 50
        positions: list[int] = []
        read_side.reset_blocking("orders", lambda p: positions.append(p.position))
        assert positions[0] < positions[-1] == shop.head()
        assert dumps(read_side) == before
        assert applied(read_side)["orders"] == event_count(shop)
        assert entry(read_side, "orders")["last_rebuild"]["reset"] is True


def test_the_projections_cli_rebuilds_resets_and_reports(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with opened(url) as (shop, _):
        World(shop).seed(10)
        head = shop.head()
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", url)
    cli = CliRunner()

    done = cli.invoke(projections, ["rebuild", "orders"])
    assert done.exit_code == 0, done.output
    assert "order_history" in done.output and f"{head:,}" in done.output
    assert cli.invoke(projections, ["reset", "carts", "--yes"]).exit_code == 0
    assert cli.invoke(projections, ["rebuild"]).exit_code == 2  # a name, or --all
    assert cli.invoke(projections, ["rebuild", "nope"]).exit_code == 2

    status = {
        s["name"]: s for s in json.loads(cli.invoke(projections, ["status", "--json"]).stdout)
    }
    assert status["orders"]["position"] == status["carts"]["position"] == head
    assert status["orders"]["last_rebuild"]["comparison"]["new_position"] == head
    assert status["carts"]["last_rebuild"]["reset"] is True
    assert status["sales"]["position"] == 0  # nothing here feeds the others
    table = cli.invoke(projections, ["status"])
    assert table.exit_code == 0 and "rebuilding" not in table.stdout


def test_the_checksum_tells_tables_apart_by_their_rows_not_their_order(url: str) -> None:
    with opened(url) as (_, read_side):
        view = read_side.orders.view
        with view.writing() as cursor:
            tables = {
                "sum_a": [(1, "a"), (2, None)],
                "sum_b": [(2, None), (1, "a")],  # the same rows, in another order
                "sum_c": [(1, "a"), (2, "")],  # one value differs
            }
            for name, rows in tables.items():
                cursor.execute(f"CREATE TABLE {view.qualify(name)} (k BIGINT, v TEXT)")
                for k, v in rows:
                    cursor.execute(
                        view.bind(f"INSERT INTO {view.qualify(name)} VALUES (:k, :v)"),
                        {"k": k, "v": v},
                    )
            a, b, c = (view.digest(cursor, name) for name in tables)
    assert a == b and a[0] == c[0] == 2
    assert a[1] != c[1]
