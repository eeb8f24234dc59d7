"""Group commit and turns on real PostgreSQL: many saves, one transaction, no collateral.

The recorder is driven directly with saves that conflict at random (taken versions,
repeated idempotency keys), from many threads at once, while a reader tails the log:
every save must be entirely in or entirely out, the reader must never skip a position,
and a key must be stored at most once. Then the service: racers on one aggregate take
turns instead of failing.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.group_commit import GroupCommitRecorder
from commands.idempotency import KeyRecord
from commands.service import Done, Shop
from tests.conftest import open_shop
from tests.projections.support import until
from tests.test_concurrency_postgres import ADDRESS, race, stored_rows

RACERS = 32


@pytest.fixture
def pg_shop(pg_reused_url: str) -> Iterator[Shop]:
    shop = open_shop(f"{pg_reused_url}&pool_size={RACERS}&max_overflow=8")
    yield shop
    shop.close()


class Retries:
    """Counts what the service tells its observers."""

    def __init__(self) -> None:
        self.retried = 0

    def command_retried(self, command: str) -> None:
        self.retried += 1

    def command_finished(self, command: str, outcome: str) -> None:
        pass


# --- the recorder --------------------------------------------------------------------------

# A save: for each of up to three aggregates (indexes into a small pool), the version its
# first event claims (1 to 3: some taken by then, some not), how many events; and
# perhaps an idempotency key (from a small pool, so that keys collide).
saves_strategy = st.lists(
    st.tuples(
        st.lists(
            st.tuples(st.integers(0, 5), st.integers(1, 3), st.integers(1, 2)),
            min_size=1,
            max_size=3,
            unique_by=lambda t: t[0],
        ),
        st.one_of(st.none(), st.integers(0, 3)),
    ),
    min_size=4,
    max_size=24,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=saves_strategy, rnd=st.randoms(use_true_random=False))
def test_concurrent_saves_are_each_all_or_nothing_and_readers_skip_nothing(
    pg_shop: Shop,
    plan: list[tuple[list[tuple[int, int, int]], int | None]],
    rnd: random.Random,
) -> None:
    recorder = pg_shop.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    run = uuid.uuid4().hex[:8]
    aggregates = [uuid.uuid4() for _ in range(6)]
    start = recorder.max_notification_id() or 0

    def stored(n: int, events: list[tuple[int, int, int]]) -> list[StoredEvent]:
        return [
            StoredEvent(aggregates[a], first + i, "tests:Event", f"{run}/{n}/{a}/{i}".encode())
            for a, first, count in events
            for i in range(count)
        ]

    def key(n: int, k: int | None) -> dict[str, Any]:
        if k is None:
            return {}
        record = KeyRecord("caller", f"{run}-{k}", "f", aggregates[0], 1, datetime.now(UTC))
        return {"idempotency_key": record}

    saves = [stored(n, events) for n, (events, _) in enumerate(plan)]
    tasks = [
        partial(recorder.insert_events, saves[n], **key(n, k)) for n, (_, k) in enumerate(plan)
    ]
    seen: list[int] = []
    stop = threading.Event()

    def tail() -> None:
        last = start
        while True:
            finished = stop.is_set()
            batch = recorder.select_notifications(last + 1, 1000)
            seen.extend(n.id for n in batch)
            last = batch[-1].id if batch else last
            if finished and not batch:
                return

    reader = threading.Thread(target=tail)
    reader.start()
    rnd.shuffle(tasks)
    try:
        results = dict(zip(map(id, tasks), race(tasks), strict=True))
    finally:
        stop.set()
        reader.join(timeout=30)
    outcome = [results[id(t)] for t in sorted(tasks, key=lambda t: saves.index(t.args[0]))]

    in_log = {
        (n.originator_id, n.originator_version): (n.id, n.state)
        for n in recorder.select_notifications(start + 1, 100_000)
    }
    for save, result in zip(saves, outcome, strict=True):
        if isinstance(result, Exception):
            assert isinstance(result, IntegrityError), repr(result)
            # Entirely out: none of its events is in the log.
            assert all(
                in_log.get((e.originator_id, e.originator_version), (0, b""))[1] != e.state
                for e in save
            )
        else:
            # Entirely in, at the positions it was told.
            assert [in_log[(e.originator_id, e.originator_version)] for e in save] == [
                (position, e.state) for position, e in zip(result, save, strict=True)
            ]
    # Every position the log holds, the reader saw, in order, none skipped.
    assert seen == sorted(position for position, _ in in_log.values())
    # A key is kept once, by the one save that stored it.
    for k in range(4):
        kept = recorder.select_key("caller", f"{run}-{k}")
        winners = [
            result
            for (events, key_index), result in zip(plan, outcome, strict=True)
            if key_index == k and not isinstance(result, Exception)
        ]
        assert len(winners) == (kept is not None)
        if kept is not None:
            assert kept.position == winners[0][-1]


# --- the service ---------------------------------------------------------------------------


def test_thirty_two_checkouts_of_one_sku_with_ample_stock_all_succeed(pg_shop: Shop) -> None:
    shop = pg_shop
    retries = Retries()
    shop.observers.append(retries)
    shop.add_product("HOT-1", "Hot", "5.00")
    shop.receive_stock("HOT-1", 1000)
    carts = []
    for n in range(RACERS):
        cart_id = shop.open_cart(f"cus-{n}").aggregate.id
        shop.add_to_cart(cart_id, "HOT-1", 1)
        carts.append(cart_id)

    results = race([partial(shop.check_out, c, ADDRESS, "a@example.org") for c in carts])

    assert [r for r in results if not isinstance(r, Done)] == []
    assert retries.retried == 0  # they took turns on the stock, none lost a race
    stock = shop.stock("HOT-1")
    assert (stock.reserved, stock.available) == (RACERS, 1000 - RACERS)
    assert len({r.position for r in results if isinstance(r, Done)}) == RACERS


def test_thirty_two_receipts_to_one_sku_take_turns(pg_shop: Shop) -> None:
    shop = pg_shop
    retries = Retries()
    shop.observers.append(retries)
    shop.add_product("HOT-2", "Hot", "5.00")

    results = race([partial(shop.receive_stock, "HOT-2", 1) for _ in range(RACERS)])

    assert [r for r in results if not isinstance(r, Done)] == []
    assert retries.retried == 0
    assert shop.stock("HOT-2").on_hand == RACERS
    # Each decided while the ones before it were being written: written together.
    transactions = {
        xid for xid, kind, _ in stored_rows(shop.store.url()) if kind == "Stock.Received"
    }
    assert len(transactions) < RACERS


def test_a_command_decided_after_a_save_that_fails_runs_again_from_the_log(
    pg_shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = pg_shop
    retries = Retries()
    shop.observers.append(retries)
    shop.add_product("HOT-3", "Hot", "5.00")
    recorder = shop.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    write_in = recorder._write_hopeful
    writing, fail = threading.Event(), threading.Event()

    def failing_once(conn: Any, pipeline: Any, batch: Any) -> None:
        if not writing.is_set():  # the first receipt's batch: held, then it fails
            writing.set()
            assert fail.wait(10)
            raise RuntimeError("the database went away")
        write_in(conn, pipeline, batch)

    monkeypatch.setattr(recorder, "_write_hopeful", failing_once)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(shop.receive_stock, "HOT-3", 5)
        assert writing.wait(10)
        # Decided on the 5 units the first receipt is writing (it gave its turn up).
        second = pool.submit(shop.receive_stock, "HOT-3", 10)
        until(lambda: len(recorder._pending) == 1, 10, "the second save to be queued")
        fail.set()
        with pytest.raises(RuntimeError):
            first.result(10)
        # Its save (version 3, after the 5 units' version 2) was refused; it ran again.
        assert second.result(10).aggregate.on_hand == 10
    assert retries.retried == 1
    stock = shop.stock("HOT-3")
    assert (stock.on_hand, stock.version) == (10, 2)


def test_saves_of_different_aggregates_share_transactions(pg_shop: Shop) -> None:
    """Under concurrent load, saves arrive together and are committed together."""
    shop = pg_shop
    for n in range(RACERS):
        shop.add_product(f"SKU-{n}", "Spread", "1.00")
    results = race([partial(shop.receive_stock, f"SKU-{n}", 1) for n in range(RACERS)])
    assert [r for r in results if not isinstance(r, Done)] == []
    transactions = {
        xid for xid, kind, _ in stored_rows(shop.store.url()) if kind == "Stock.Received"
    }
    assert len(transactions) < RACERS


def test_a_command_decided_after_a_save_another_process_beat_is_not_written(
    pg_shop: Shop, pg_reused_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version check alone is not enough: another process may take the version of a
    queued save, and the save decided on its state then has the next version free."""
    shop = pg_shop
    other = open_shop(pg_reused_url)  # another process
    shop.add_product("HOT-4", "Hot", "5.00")
    recorder = shop.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    write_in = recorder._write_hopeful
    writing, go = threading.Event(), threading.Event()

    def held_once(conn: Any, pipeline: Any, batch: Any) -> None:
        if not writing.is_set():  # the first receipt's batch waits, then finds v2 taken
            writing.set()
            assert go.wait(10)
        write_in(conn, pipeline, batch)

    monkeypatch.setattr(recorder, "_write_hopeful", held_once)
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(shop.receive_stock, "HOT-4", 5)
            assert writing.wait(10)
            second = pool.submit(shop.receive_stock, "HOT-4", 10)  # on the first's state
            until(lambda: len(recorder._pending) == 1, 10, "the second save to be queued")
            other.receive_stock("HOT-4", 7)  # takes version 2 meanwhile
            go.set()
            answers = [first.result(10), second.result(10)]
    finally:
        other.close()
    stock_id = answers[0].aggregate.id
    # Every answer is what the log holds at its version: none was decided on a state the
    # log never had.
    for done in answers:
        logged = shop.repository.get(stock_id, version=done.version)
        assert logged.on_hand == done.aggregate.on_hand, (done.version, done.aggregate.on_hand)
    stock = shop.stock("HOT-4")
    assert (stock.on_hand, stock.version) == (22, 4)
