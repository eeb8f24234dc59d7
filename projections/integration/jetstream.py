"""The NATS JetStream publisher: every integration event of the log, once, in log order.

It follows the log like a read model: one publisher at a time across all processes (the
engine's locks: a PostgreSQL advisory lock, a lock file next to a SQLite database), the
others standing by to take over; a position kept in the database with the translator's
state (``PublisherState``), written only after JetStream acknowledged every event of the
batch, behind the same fence as a read model's batch (a publisher that lost its lock
cannot move it).

So a publisher that dies between an acknowledgement and storing its position sends those
events again when it (or its successor) resumes. They carry the same CloudEvent id as
``Nats-Msg-Id``, and JetStream drops a message whose id it has seen within the stream's
duplicate window. A restart after that window has passed finds the last event the
stream holds and does not send it, or any before it, again. Events are sent one after
the other, each acknowledged before the next: a failure can never leave a later event in
the stream without an earlier one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

import nats
from eventsourcing.persistence import Mapper, Notification
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from eventstore.log import LOG_NAME
from projections.engine.base import Prepared, ReadModel
from projections.engine.channels import ChannelHealth
from projections.engine.failures import EventFailed
from projections.engine.parking import STOP
from projections.engine.tables import LostOwnership
from projections.integration.events import (
    DEFAULT_SOURCE,
    TOPICS,
    IntegrationEvent,
    StockLevel,
    Thresholds,
    Translator,
)
from projections.readside import ReadSide

log = logging.getLogger("eventshop.integration")

STREAM = "EVENTSHOP"
PREFIX = "eventshop"
DUPLICATE_WINDOW = 120.0
"""Seconds JetStream remembers a message id (its default), for a stream made here."""
ACK_TIMEOUT = 5.0
HEARTBEAT_SECONDS = 2.0
"""How often the publisher writes its state, and its last success, to ``channel_health``."""


class PublisherState(ReadModel):
    """The publisher's position and what its translator knows (stock levels, the
    currencies of open orders), stored together."""

    name = "jetstream"
    tables = ("jetstream_stock", "jetstream_orders")
    ddl = (
        "CREATE TABLE IF NOT EXISTS {jetstream_stock} (stock_id TEXT PRIMARY KEY,"
        " sku TEXT NOT NULL, available INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {jetstream_orders} (order_id TEXT PRIMARY KEY,"
        " currency TEXT NOT NULL)",
    )
    keys: ClassVar[dict[str, tuple[str, ...]]] = {
        "jetstream_stock": ("stock_id",),
        "jetstream_orders": ("order_id",),
    }
    # Nothing may be left out of the stream: a failing event stops the publisher.
    on_failure = STOP

    def translator(self, thresholds: Thresholds) -> Translator:
        """A translator with the state stored at the current position."""
        with self.reading() as tx:
            stocks = tx.execute("SELECT * FROM {jetstream_stock}").rows()
            orders = tx.execute("SELECT * FROM {jetstream_orders}").rows()
        return Translator(
            thresholds,
            {r["stock_id"]: StockLevel(r["sku"], int(r["available"])) for r in stocks},
            {r["order_id"]: r["currency"] for r in orders},
        )

    def translate(
        self, translator: Translator, notifications: Sequence[Notification], mapper: Mapper[Any]
    ) -> tuple[Prepared, list[IntegrationEvent]]:
        """The integration events of a run of the log, and the translator's changed
        state as rows to write with the run's position."""
        events: list[IntegrationEvent] = []
        for notification in notifications:
            if notification.topic not in TOPICS:
                continue
            try:
                event = translator.translate(notification.id, mapper.to_domain_event(notification))
            except Exception as error:
                raise EventFailed(self.name, notification, error) from error
            if event is not None:
                events.append(event)
        writes = self.writes()
        stocks, orders = translator.changes()
        for stock_id, level in stocks.items():
            if level is None:
                writes.delete("jetstream_stock", {"stock_id": stock_id})
            else:
                row = {"stock_id": stock_id, "sku": level.sku, "available": level.available}
                writes.upsert("jetstream_stock", row, set={"available": level.available})
        for order_id, currency in orders.items():
            if currency is None:
                writes.delete("jetstream_orders", {"order_id": order_id})
            else:
                row = {"order_id": order_id, "currency": currency}
                writes.upsert("jetstream_orders", row, set={"currency": currency})
        prepared = Prepared(writes, notifications[0], len(notifications), notifications[-1].id)
        return prepared, events


@dataclass(frozen=True)
class Target:
    """Where integration events go: a NATS server, a stream and its subjects' prefix
    (subjects ``<prefix>.<type>``, e.g. ``eventshop.order.placed``)."""

    url: str
    stream: str = STREAM
    prefix: str = PREFIX
    source: str = DEFAULT_SOURCE
    """The CloudEvents ``source`` of every event: the shop."""
    duplicate_window: float = DUPLICATE_WINDOW

    def subject(self, event: IntegrationEvent) -> str:
        return f"{self.prefix}.{event.name}"

    def describe(self) -> str:
        """Where it publishes, as status shows it (never the server's URL: it may hold a
        password)."""
        return f"stream {self.stream}, subjects {self.prefix}.>"


class State(StrEnum):
    STARTING = "starting"
    STANDBY = "standby"  # another process publishes
    LIVE = "live"
    RETRYING = "retrying"  # NATS or the database failed; trying again
    STOPPED = "stopped"


class Publisher:
    """Publishes the log's integration events to JetStream from a thread of its own (an
    asyncio loop for the NATS client), while this process holds the publisher's lock.

    ``read_side`` holds :class:`PublisherState` (``open_publisher`` builds it); it is
    closed with the publisher. While it publishes (or retries) it writes its state, its
    last success and each failure to ``channel_health`` (row ``jetstream``), where any
    process reads them (``projections/deliveries.py``).
    """

    def __init__(
        self,
        read_side: ReadSide,
        target: Target,
        thresholds: Thresholds | None = None,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.1,
        standby_interval: float = 1.0,
    ) -> None:
        self.read_side = read_side
        self.model: PublisherState = read_side.projection(PublisherState.name)  # type: ignore[assignment]
        self.source = read_side.runner.source
        self.locks = read_side.runner.locks
        self.target = target
        self.thresholds = thresholds or Thresholds()
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.standby_interval = standby_interval
        self.state = State.STOPPED
        self.position = 0
        """The position stored, as far as this publisher knows."""
        self.published = 0
        """Events JetStream stored from this publisher."""
        self.duplicates = 0
        """Events JetStream acknowledged as duplicates (sent again after a restart)."""
        self.skipped = 0
        """Events not sent again because the stream held them already (past its window)."""
        self.health = ChannelHealth(self.model.view)
        self.worker_id = read_side.runner.worker_id
        self.heartbeat_interval = HEARTBEAT_SECONDS
        self._success: datetime | None = None
        """The last acknowledgement not yet written to ``channel_health``."""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.model.name

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self.state = State.STARTING
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._run()), name="publisher-jetstream", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the event being sent (its batch is stored if all of it was acked)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.read_side.close()

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """Wait until the stored position reaches ``position`` (whoever publishes)."""
        return self.read_side.wait_for(self.name, position, timeout)

    # --- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.5
        client: Client | None = None
        beating = asyncio.create_task(self._beat())
        try:
            while not self._stopping.is_set():
                try:
                    if not self.locks.try_acquire(self.name):
                        self.state = State.STANDBY
                        await self._sleep(self.standby_interval)
                        continue
                    try:
                        if client is None or not client.is_connected:
                            client = await self._connect(client)
                        await self._publish_while_held(client.jetstream())
                    finally:
                        self.locks.release(self.name)
                    delay = 0.5
                except LostOwnership as lost:
                    log.warning("publisher %s: %s; standing by", self.name, lost)
                    self.state = State.STANDBY
                except Exception as error:
                    level = logging.ERROR if isinstance(error, EventFailed) else logging.WARNING
                    log.log(
                        level, "publisher %s failed; again in %.1f s: %s", self.name, delay, error
                    )
                    self.state = State.RETRYING
                    await asyncio.to_thread(self._failed, error)
                    await self._sleep(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            beating.cancel()
            self.state = State.STOPPED
            if self._success is not None:  # acknowledged since the last beat
                await self._report()
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()

    async def _connect(self, old: Client | None) -> Client:
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        # nats-py never gives up on an unreachable server when max_reconnect_attempts
        # is 0 (it only counts attempts when it is above 0): with 1, connect() raises
        # after a second refusal, and this loop's own backoff takes over.
        return await nats.connect(
            self.target.url,
            connect_timeout=2,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            allow_reconnect=False,
        )

    async def _publish_while_held(self, js: JetStreamContext) -> None:
        """Publish from the stored position until stopped; raises ``LostOwnership``
        when the lock is lost (or the position was moved under this publisher)."""
        await self._ensure_stream(js)
        position = await asyncio.to_thread(self.model.view.position, LOG_NAME)
        translator = await asyncio.to_thread(self.model.translator, self.thresholds)
        held_through = await self._held_through(js, position)
        self.position = position
        self.state = State.LIVE
        await self._report()
        log.info("publisher %s live from position %s", self.name, position)
        while not self._stopping.is_set():
            if not self.locks.holds(self.name):
                raise LostOwnership(f"the lock of {self.name} was lost")
            notifications = await asyncio.to_thread(self.source.read, position, self.batch_size)
            if not notifications:
                await self._sleep(self.poll_interval)
                continue
            prepared, events = self.model.translate(translator, notifications, self.source.mapper)
            for event in events:
                if event.position <= held_through:
                    self.skipped += 1
                    continue
                await self._send(js, event)
            # Only now, with every event acknowledged: behind the fence, so a publisher
            # that lost its lock meanwhile writes nothing.
            position = await asyncio.to_thread(self.model.commit, prepared, LOG_NAME, position)
            self.position = position

    async def _send(self, js: JetStreamContext, event: IntegrationEvent) -> None:
        ack = await js.publish(
            self.target.subject(event),
            event.encode(self.target.source),
            timeout=ACK_TIMEOUT,
            stream=self.target.stream,
            headers={
                "Nats-Msg-Id": event.id,
                "Content-Type": "application/cloudevents+json; charset=utf-8",
            },
        )
        if ack.duplicate:
            self.duplicates += 1
        else:
            self.published += 1
        self._success = datetime.now(UTC)

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        """Make the stream if it is missing; an existing one is left as its operator set it."""
        try:
            await js.stream_info(self.target.stream)
        except NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=self.target.stream,
                    subjects=[f"{self.target.prefix}.>"],
                    duplicate_window=self.target.duplicate_window,
                )
            )

    async def _held_through(self, js: JetStreamContext, position: int) -> int:
        """The log position of the stream's last event, if it is past ``position`` and
        older than half the duplicate window (JetStream no longer drops it when sent
        again): events up to it are in the stream already. Else 0: re-sent events are
        dropped by JetStream itself."""
        info = await js.stream_info(self.target.stream)
        if not info.state.last_seq:
            return 0
        try:
            last = await js.get_msg(self.target.stream, info.state.last_seq)
            through = int(json.loads(last.data or b"{}")["sequence"])
        except (NotFoundError, KeyError, ValueError):
            return 0
        window = info.config.duplicate_window or 0.0
        age = (datetime.now(UTC) - last.time).total_seconds() if last.time else window
        if through <= position or age < window / 2:
            return 0
        log.info(
            "publisher %s: the stream holds events up to position %s already, beyond its"
            " duplicate window: not sending them again",
            self.name,
            through,
        )
        return through

    # --- what it tells of itself ----------------------------------------------------------

    async def _beat(self) -> None:
        """Write the state while this process publishes or retries (a standby writes
        nothing: the row is the holder's)."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self.state in (State.LIVE, State.RETRYING):
                await self._report()

    async def _report(self) -> None:
        # Taken here, on the loop that sets it, then written from a thread.
        success, self._success = self._success, None
        try:
            await asyncio.to_thread(
                self.health.beat,
                self.name,
                self.state.value,
                self.worker_id,
                target=self.target.describe(),
                last_success=success,
            )
        except Exception as error:  # best effort: publishing goes on without it
            self._success = self._success or success
            log.debug("publisher %s: could not write its health: %s", self.name, error)

    def _failed(self, error: BaseException) -> None:
        try:
            self.health.failed(
                self.name,
                datetime.now(UTC),
                error,
                state=self.state.value,
                worker=self.worker_id,
            )
        except Exception as failure:  # the database may be what failed
            log.debug("publisher %s: could not record its failure: %s", self.name, failure)

    async def _sleep(self, seconds: float) -> None:
        end = asyncio.get_running_loop().time() + seconds
        while not self._stopping.is_set():
            remaining = end - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 0.05))
