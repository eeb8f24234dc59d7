"""Exactly once across crashes: nothing lost, nothing applied twice, nothing half applied."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from eventsourcing.utils import get_topic

from domain.stock import Stock
from projections.readmodels.stock import StockLevels
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


def test_a_worker_killed_mid_catch_up_resumes_where_it_stopped(url: str) -> None:
    with opened(url) as (shop, read_side):
        World(shop).seed(120)
        head = shop.head()
        worker = spawn_worker(url, "--batch-size", "10")
        try:
            until(
                lambda: (
                    max(read_side.position(n) for n in read_side.names) > 0
                    or worker.poll() is not None
                ),
                60,
                "the worker to commit its first batch",
            )
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        finally:
            stop_worker(worker)
        assert worker.returncode == -signal.SIGKILL
        positions = [read_side.position(n) for n in read_side.names]
        assert any(0 < p < head for p in positions), positions  # killed part-way

        read_side.start()
        assert read_side.wait_for(None, head, timeout=60)
        assert dumps(read_side) == rebuilt(shop, url)
        assert set(applied(read_side).values()) == {event_count(shop)}


class Crash(BaseException):
    """Stands for the process dying inside a transaction."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crash_inside_a_batch_leaves_nothing_of_it_applied(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = get_topic(Stock.Reserved)
    handler = StockLevels.handlers[topic]
    calls: list[Any] = []

    def crashing(model: Any, tx: Any, event: Any) -> None:
        calls.append(event)
        handler(model, tx, event)
        if len(calls) == 25:  # after some events of a batch have been written
            raise Crash

    monkeypatch.setitem(StockLevels.handlers, topic, crashing)
    with opened(url, batch_size=50) as (shop, read_side):
        World(shop).seed(40)
        head = shop.head()
        read_side.start()
        worker = read_side.runner.workers["stock"]
        until(lambda: len(calls) >= 25 and worker.state == "stopped", 30, "the crash")
        crashed_at = read_side.position("stock")
        assert crashed_at < head
        assert applied(read_side)["stock"] == len(
            shop.recorder.select_notifications(None, 10**6, stop=crashed_at)
        )

        monkeypatch.undo()
        read_side.runner.restart("stock")
        assert read_side.wait_for(None, head, timeout=60)
        assert dumps(read_side) == rebuilt(shop, url)
        assert set(applied(read_side).values()) == {event_count(shop)}
