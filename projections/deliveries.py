"""Where the integration events stand on their way out of the shop: for each outbound
channel (the NATS JetStream publisher; each webhook subscription) its state, its
position in the log and the log's head, how far behind it is in events and in seconds,
its last success and last failure (with the error), and its deliveries parked or being
retried.

Everything is read from the database (positions from the channels' tracking rows,
states and outcomes from ``channel_health``), so any process answers, whichever
process delivers: an API host, a metrics scrape.

Lag in seconds is the age of the oldest event the channel has not passed yet (now
minus the time that event was recorded), 0 once it has passed the head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from eventstore.log import LOG_NAME
from projections.engine.channels import NOT_RUNNING, ChannelHealth, Health
from projections.engine.feed import Source
from projections.integration.jetstream import PublisherState
from projections.webhooks.store import DELIVERER, FAILING, PARKED, WebhookStore, channel

JETSTREAM = PublisherState.name


class ChannelState(StrEnum):
    """What an outbound channel is doing. The JetStream publisher's are its own
    (``jetstream.State``, as its process last wrote them to ``channel_health``); a webhook
    subscription's are worked out here from its lag and deliveries; either is
    ``not_running`` when no process has said lately that it delivers."""

    STARTING = "starting"
    STANDBY = "standby"
    LIVE = "live"
    CATCHING_UP = "catching_up"
    RETRYING = "retrying"
    DEGRADED = "degraded"
    """A subscription that follows the log with deliveries parked (like a read model's)."""
    STOPPED = "stopped"
    NOT_RUNNING = NOT_RUNNING


@dataclass(frozen=True)
class ChannelStatus:
    channel: Literal["jetstream", "webhook"]
    name: str
    """``jetstream``, or ``webhooks/<subscription id>``."""
    subscription_id: str | None
    target: str | None
    """Where it sends: the stream and subjects, or the webhook's URL."""
    state: ChannelState
    worker: str | None
    """The process that delivers (None: none has said so)."""
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    last_success_at: str | None
    last_failure_at: str | None
    last_error: str | None
    parked: int
    """Deliveries given up after their last attempt (webhooks; JetStream parks none)."""
    retrying: int
    """Deliveries being tried again now."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Deliveries:
    """The outbound channels' status, from the database of ``webhooks`` (its recorder)."""

    def __init__(
        self,
        source: Source,
        webhooks: WebhookStore,
        *,
        publishing: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self.webhooks = webhooks
        self.view = webhooks.view
        self.health = ChannelHealth(self.view)
        self.publishing = publishing
        """Whether a JetStream publisher is configured here: it is listed even before
        one has run (otherwise only once one has)."""
        self.clock = clock

    def status(self) -> list[ChannelStatus]:
        """The JetStream publisher (if configured or ever run), then each webhook
        subscription, oldest first."""
        now = self.clock()
        head = self.source.head()
        health = self.health.read()
        ages = _Ages(self.source, head, now)
        found = []
        if self.publishing or JETSTREAM in health:
            found.append(self._jetstream(head, health.get(JETSTREAM), ages, now))
        deliverer = health.get(DELIVERER, Health(DELIVERER))
        unsettled = self.webhooks.unsettled()
        for subscription in self.webhooks.all():
            row = health.get(channel(subscription.id), Health(channel(subscription.id)))
            counts = unsettled.get(subscription.id, {})
            parked, retrying = counts.get(PARKED, 0), counts.get(FAILING, 0)
            lag = max(head - subscription.position, 0)
            state = ChannelState.NOT_RUNNING
            if deliverer.current_state(now) != NOT_RUNNING:
                state = _subscription_state(lag, parked, retrying)
            found.append(
                ChannelStatus(
                    channel="webhook",
                    name=row.name,
                    subscription_id=subscription.id,
                    target=subscription.url,
                    state=state,
                    worker=deliverer.worker,
                    position=subscription.position,
                    head=head,
                    lag_events=lag,
                    lag_seconds=ages.behind(subscription.position),
                    last_success_at=row.last_success_at,
                    last_failure_at=row.last_failure_at,
                    last_error=row.last_error,
                    parked=parked,
                    retrying=retrying,
                )
            )
        return found

    def _jetstream(
        self, head: int, row: Health | None, ages: _Ages, now: datetime
    ) -> ChannelStatus:
        row = row or Health(JETSTREAM)
        position = self._publisher_position()
        # Every state the publisher writes is one of ChannelState's (tests/api/test_openapi.py).
        state = ChannelState(row.current_state(now))
        return ChannelStatus(
            channel="jetstream",
            name=JETSTREAM,
            subscription_id=None,
            target=row.target,
            state=state,
            worker=row.worker,
            position=position,
            head=head,
            lag_events=max(head - position, 0),
            lag_seconds=ages.behind(position),
            last_success_at=row.last_success_at,
            last_failure_at=row.last_failure_at,
            last_error=row.last_error,
            parked=0,
            retrying=1 if state == ChannelState.RETRYING else 0,
        )

    def _publisher_position(self) -> int:
        """The publisher's tracking position (0 if no publisher ever made its tables)."""
        table = f"{JETSTREAM}_tracking"
        with self.view.reading() as cursor:
            if not self.view.table_exists(cursor, table):
                return 0
            cursor.execute(
                self.view.bind(
                    f"SELECT max(notification_id) AS n FROM {self.view.qualify(table)}"
                    " WHERE application_name = :a"
                ),
                {"a": LOG_NAME},
            )
            row = cursor.fetchone()
        return int((row["n"] if row is not None else None) or 0)


def _subscription_state(lag: int, parked: int, retrying: int) -> ChannelState:
    if retrying:
        return ChannelState.RETRYING
    if parked:
        return ChannelState.DEGRADED
    return ChannelState.LIVE if lag == 0 else ChannelState.CATCHING_UP


class _Ages:
    """How old the first event after a position is, each position read once."""

    def __init__(self, source: Source, head: int, now: datetime) -> None:
        self.source = source
        self.head = head
        self.now = now
        self._seen: dict[int, float] = {}

    def behind(self, position: int) -> float:
        if position >= self.head:
            return 0.0
        if position not in self._seen:
            after = self.source.read(position, 1, stop=self.head)
            age = 0.0
            if after:
                event: Any = self.source.mapper.to_domain_event(after[0])
                recorded: datetime = event.timestamp
                age = max((self.now - recorded).total_seconds(), 0.0)
            self._seen[position] = round(age, 3)
        return self._seen[position]
