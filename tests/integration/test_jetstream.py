"""The JetStream publisher (issue 17, item 3), against the real NATS server on
127.0.0.1:4222 (EVENTSHOP_TEST_NATS names another) and real SQLite and PostgreSQL.

Each test publishes to a stream and subjects of its own, deleted at the end, and reads
them back as a consumer would: every integration event once, in log order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import nats
import pytest

from commands.service import Shop
from eventshop.bootstrap import open_publisher
from projections.integration.events import schemas
from projections.integration.jetstream import Publisher, State, Target
from tests.conftest import open_shop, settings_for
from tests.projections.support import World, until

NATS_URL = os.environ.get("EVENTSHOP_TEST_NATS", "nats://127.0.0.1:4222")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_reused_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def target() -> Iterator[Target]:
    """A stream and subject prefix of this test alone; the stream is deleted afterwards."""
    tag = uuid.uuid4().hex[:12]
    target = Target(NATS_URL, stream=f"T_{tag}", prefix=f"t{tag}", source="/test")
    try:
        asyncio.run(_connected(lambda js: js.stream_info(target.stream), missing_ok=True))
    except OSError as error:  # the server is down: say how to start it, never skip
        pytest.fail(f"NATS at {NATS_URL} does not answer ({error}); start it: bash .ci/run")
    yield target
    asyncio.run(_connected(lambda js: js.delete_stream(target.stream), missing_ok=True))


async def _connected(call: Any, *, missing_ok: bool = False) -> Any:
    client = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
    try:
        return await call(client.jetstream())
    except nats.js.errors.NotFoundError:
        if not missing_ok:
            raise
        return None
    finally:
        await client.close()


def consumed(target: Target) -> list[dict[str, Any]]:
    """Every CloudEvent in the stream, as a consumer of its subjects receives them."""

    async def read(js: Any) -> list[dict[str, Any]]:
        info = await js.stream_info(target.stream)
        sub = await js.subscribe(f"{target.prefix}.>", stream=target.stream, ordered_consumer=True)
        events = []
        for _ in range(info.state.messages):
            msg = await sub.next_msg(timeout=2)
            event = json.loads(msg.data)
            assert msg.subject == f"{target.prefix}.{event['type'].removeprefix('eventshop.')}"
            assert msg.headers["Nats-Msg-Id"] == event["id"]
            events.append(event)
        await sub.unsubscribe()
        return events

    return list(asyncio.run(_connected(read)))


def stocked(shop: Shop) -> World:
    """A product with 8 units in stock."""
    world = World(shop)
    world.add_product("A-1", "2.50")
    world.receive("A-1", 8)
    return world


def trade(world: World, rounds: int = 1) -> None:
    """Orders of 2 units: paid and shipped, or cancelled."""
    for i in range(rounds):
        world.buy("ann", [("A-1", 2)])
        if i % 2:
            world.cancel(-1)
        else:
            world.pay(-1)
            world.ship(-1)


def expected(shop: Shop) -> list[str]:
    """The integration event ids the whole log must give, in log order."""
    from projections.integration.events import Translator

    translator = Translator()
    found = [
        translator.translate(n.id, shop.mapper.to_domain_event(n))
        for n in shop.recorder.select_notifications(None, 10**6)
    ]
    return [event.id for event in found if event is not None]


@contextlib.contextmanager
def publishing(url: str, target: Target, **options: Any) -> Iterator[Publisher]:
    publisher = open_publisher(
        settings_for(url), target=target, poll_interval=0.02, standby_interval=0.05, **options
    )
    try:
        yield publisher
    finally:
        publisher.close()


def checked(events: list[dict[str, Any]]) -> list[str]:
    """The ids of a stream's events, each valid against its schema, in log order."""
    for event in events:
        jsonschema_rs.validate(schemas()[event["type"]], event)
    sequences = [int(event["sequence"]) for event in events]
    assert sequences == sorted(set(sequences))
    return [event["id"] for event in events]


def test_every_integration_event_is_published_once_in_log_order(url: str, target: Target) -> None:
    shop = open_shop(url, POSTGRES_POOL_SIZE="2")
    try:
        world = stocked(shop)
        trade(world, rounds=3)
        with publishing(url, target) as publisher:
            publisher.start()
            assert publisher.wait_for(shop.head())
            world.receive("A-1", 1)  # and what comes while it runs
            trade(world, rounds=1)
            assert publisher.wait_for(shop.head())
            assert publisher.duplicates == 0
        events = consumed(target)
        assert checked(events) == expected(shop)
        assert {e["type"] for e in events} >= {
            "eventshop.order.placed",
            "eventshop.order.paid",
            "eventshop.order.shipped",
            "eventshop.order.cancelled",
            "eventshop.stock.low",
        }
        assert publisher.published == len(events)
    finally:
        shop.close()


class Crash(Exception):
    """The publisher's process dies here."""


def crash_before_storing(publisher: Publisher) -> None:
    """The next batch is acknowledged by JetStream, then the process dies before its
    position is stored."""

    def commit(*args: Any) -> int:
        publisher._stopping.set()  # nothing after this runs in a dead process
        raise Crash("killed after the acks, before the position was stored")

    publisher.model.commit = commit  # type: ignore[method-assign]


def test_a_crash_after_publishing_sends_again_and_jetstream_drops_the_duplicates(
    sqlite_url: str, target: Target
) -> None:
    shop = open_shop(sqlite_url)
    try:
        world = stocked(shop)
        trade(world, rounds=2)
        with publishing(sqlite_url, target) as first:
            crash_before_storing(first)
            first.start()
            until(lambda: first.state == State.STOPPED, 10, "the crash")
            sent = first.published
        assert sent == len(expected(shop)) > 0
        with publishing(sqlite_url, target) as second:
            assert second.model.view.position("Shop") == 0  # nothing was stored
            second.start()
            assert second.wait_for(shop.head())
            trade(world, rounds=1)
            assert second.wait_for(shop.head())
        assert second.duplicates == sent  # sent again, and dropped by JetStream
        assert checked(consumed(target)) == expected(shop)
    finally:
        shop.close()


def test_past_the_duplicate_window_a_restart_skips_what_the_stream_holds(
    sqlite_url: str, target: Target
) -> None:
    short = Target(target.url, target.stream, target.prefix, target.source, duplicate_window=0.2)
    shop = open_shop(sqlite_url)
    try:
        trade(stocked(shop), rounds=1)
        with publishing(sqlite_url, short) as first:
            crash_before_storing(first)
            first.start()
            until(lambda: first.state == State.STOPPED, 10, "the crash")
            sent = first.published
        time.sleep(0.25)  # past the window: JetStream forgets the ids
        with publishing(sqlite_url, short) as second:
            second.start()
            assert second.wait_for(shop.head())
        assert (second.skipped, second.duplicates, second.published) == (sent, 0, 0)
        assert checked(consumed(short)) == expected(shop)
    finally:
        shop.close()


def test_one_publisher_at_a_time_and_the_standby_takes_over(url: str, target: Target) -> None:
    shop = open_shop(url, POSTGRES_POOL_SIZE="2")
    try:
        world = stocked(shop)
        trade(world, rounds=1)
        with publishing(url, target) as one, publishing(url, target) as two:
            one.start()
            until(lambda: one.state == State.LIVE, 10, "the first publisher live")
            two.start()
            assert one.wait_for(shop.head())
            until(lambda: two.state == State.STANDBY, 10, "the second standing by")
            one.stop()  # it dies; its lock goes with it
            trade(world, rounds=2)
            until(lambda: two.state == State.LIVE, 10, "the standby taking over")
            assert two.wait_for(shop.head())
            assert one.published > 0 and two.published > 0
        assert checked(consumed(target)) == expected(shop)
    finally:
        shop.close()
