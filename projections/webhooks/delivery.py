"""The deliverer: follows the log for every webhook subscription, like a read model.

What it sends is the shop's integration-event contract (``projections/integration``):
each subscription has its own :class:`Translator`, whose state is stored with the
subscription's position (``store.py``), so a receiver gets the very CloudEvents the
JetStream publisher sends, byte for byte.

One process at a time delivers (the engine's locks: a PostgreSQL advisory lock, or a
lock file next to a SQLite database; another process takes over when it dies). In it,
each subscription has a thread of its own, so that a receiver being retried holds up
no other. A subscription's events are sent in log order, one at a time: the next only
once the one before was delivered or parked, and each outcome is written with the
subscription's new position in one fenced transaction (``store.py``).

A failed attempt (no answer, a non-2xx answer, a redirect, a target the allow-list
refuses) is tried again after a wait that doubles, with jitter (``eventstore/retry.py``);
after ``attempts`` the delivery is *parked* and the subscription goes on with the next
event. A parked (or delivered) delivery asked to be sent again is sent before any new
event, with the same ``webhook-id`` and the body it was first sent with.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from eventstore.retry import Stopped, on_transient
from projections.engine.feed import Source
from projections.engine.locks import LockKeeper
from projections.engine.tables import LostOwnership
from projections.integration.events import DEFAULT_SOURCE, TOPICS, Thresholds, Translator
from projections.webhooks.sender import DeliveryFailed, Message, Sender
from projections.webhooks.store import (
    DELIVERED,
    DELIVERER,
    FAILING,
    PARKED,
    Delivery,
    DeliveryNotFound,
    Subscription,
    SubscriptionNotFound,
    WebhookStore,
)

log = logging.getLogger("eventshop.webhooks")

LOCK = "webhooks"
"""The name of the lock that one deliverer at a time holds."""
HEARTBEAT_SECONDS = 2.0
"""How often the deliverer holding the lock says so in ``channel_health``."""


@dataclass(frozen=True)
class Policy:
    attempts: int = 8
    """Attempts of one delivery before it is parked."""
    first_wait: float = 1.0
    """Seconds before the second attempt (plus jitter); doubled each time up to ``max_wait``."""
    max_wait: float = 600.0
    poll: float = 0.5
    """Seconds between two looks at the log when a subscription has caught up."""
    batch: int = 100


class Deliverer:
    """Delivers every subscription's events while this process holds the lock."""

    def __init__(
        self,
        store: WebhookStore,
        source: Source,
        sender: Sender,
        locks: LockKeeper,
        policy: Policy,
        *,
        thresholds: Thresholds | None = None,
        event_source: str = DEFAULT_SOURCE,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self.sender = sender
        self.locks = locks
        self.policy = policy
        self.thresholds = thresholds or Thresholds()
        self.event_source = event_source
        """The CloudEvents ``source`` (the publisher's, so both channels send the same)."""
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._beaten = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._followers: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._translators: dict[str, tuple[int, Translator]] = {}
        """Each subscription's translator, at the position it was stored with."""

    # --- control -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._stop_followers(set(self._followers), timeout)
        self.locks.release(LOCK)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.locks.try_acquire(LOCK):
                    self._follow_all()
                    self._beat()
                else:
                    self._stop_followers(set(self._followers))
            except Exception as error:  # the database failed: the next round tries again
                log.warning("webhooks: could not look at the subscriptions: %s", error)
            self._stopping.wait(self.policy.poll)

    def _beat(self) -> None:
        """Say in ``channel_health`` that this process delivers (now and then)."""
        if time.monotonic() - self._beaten < HEARTBEAT_SECONDS:
            return
        self.store.health.beat(DELIVERER, "live", self.worker_id)
        self._beaten = time.monotonic()

    def _follow_all(self) -> None:
        wanted = {subscription.id for subscription in self.store.all()}
        ended = {sid for sid, (thread, _) in self._followers.items() if not thread.is_alive()}
        self._stop_followers((set(self._followers) - wanted) | ended)
        for sid in wanted - set(self._followers):
            stop = threading.Event()
            thread = threading.Thread(
                target=self._follow, args=(sid, stop), name=f"webhook-{sid[:8]}", daemon=True
            )
            self._followers[sid] = (thread, stop)
            thread.start()

    def _stop_followers(self, ids: set[str], timeout: float = 10.0) -> None:
        for sid in ids:
            self._followers[sid][1].set()
        for sid in ids:
            thread, _ = self._followers.pop(sid)
            thread.join(timeout)
            self._translators.pop(sid, None)

    def _follow(self, subscription_id: str, stop: threading.Event) -> None:
        while not (stop.is_set() or self._stopping.is_set()):
            try:
                if self.deliver(subscription_id, stop) >= self.policy.batch:
                    continue  # more to read at once
            except (SubscriptionNotFound, LostOwnership, Stopped) as ended:
                log.info("webhook %s: delivery stops here: %s", subscription_id, ended)
                return
            except Exception as error:  # a database or a decoding failure: again later
                log.warning("webhook %s: delivery failed: %s", subscription_id, error)
            stop.wait(self.policy.poll)

    # --- one round -------------------------------------------------------------------------

    def deliver(self, subscription_id: str, stop: threading.Event | None = None) -> int:
        """Send what the subscription asked to have again, then its next events of the
        log, up to a batch; how many events of the log were read (0 when this process
        does not hold the lock). Raises ``Stopped`` when ``stop`` is set or the lock is
        lost meanwhile, ``LostOwnership`` when another deliverer moved the position."""
        stop = stop or self._stopping
        if not self.locks.try_acquire(LOCK):
            return 0
        subscription = self.store.get(subscription_id)
        for delivery in self.store.pending(subscription_id):
            self._redeliver(subscription, delivery, stop)
        position = subscription.position
        head = self.source.head()
        if head <= position:
            return 0
        translator = self._translator(subscription)
        notifications = self.source.read(position, self.policy.batch, stop=head, topics=TOPICS)
        for notification in notifications:
            domain_event = self.source.mapper.to_domain_event(notification)
            # Every event goes through the translator, sent or not: its state must be
            # the state at the position stored with it.
            event = translator.translate(notification.id, domain_event)
            if (
                event is None
                or notification.id <= subscription.starts_after
                or event.type not in subscription.event_types
            ):
                continue
            outcome = self._send(subscription, position, Message.of(event, self.event_source), stop)
            self.store.advance(
                subscription_id, position, notification.id, outcome, translator.changes()
            )
            position = notification.id
        # Read up to the head: the events up to it that were not sent are passed too.
        through = head if len(notifications) < self.policy.batch else notifications[-1].id
        if through > position:
            self.store.advance(subscription_id, position, through, None, translator.changes())
            position = through
        self._translators[subscription_id] = (position, translator)
        return len(notifications)

    def _translator(self, subscription: Subscription) -> Translator:
        """The subscription's translator at its stored position: the one kept from the
        last round if it got there, else the stored state (a failed round, whose
        translator may be ahead of what was stored, is never reused)."""
        kept = self._translators.pop(subscription.id, None)
        if kept is not None and kept[0] == subscription.position:
            return kept[1]
        return self.store.translator(subscription.id, self.thresholds)

    def _send(
        self, subscription: Subscription, position: int, message: Message, stop: threading.Event
    ) -> Delivery:
        """Attempt a delivery until it succeeds or the attempts are used up; its outcome."""
        tries = 0
        earlier = 0
        if (known := self._known(subscription.id, message.id)) is not None:
            earlier = known.attempts

        def attempt() -> int:
            nonlocal tries
            if stop.is_set() or not self.locks.holds(LOCK):
                raise Stopped("the deliverer stops, or lost its lock")
            tries += 1
            return self.sender.send(subscription.url, subscription.secret, message)

        def failed(error: BaseException) -> None:
            assert isinstance(error, DeliveryFailed)
            self.store.note(
                subscription.id, position, _outcome(message, FAILING, earlier + tries, error)
            )

        policy = on_transient(
            f"webhook {subscription.id}: {message.type} at {message.position}",
            first=self.policy.first_wait,
            cap=self.policy.max_wait,
            attempts=self.policy.attempts,
            stop=stop,
            retry_if=lambda error: isinstance(error, DeliveryFailed),
            before_retry=failed,
            logger=log,
        )
        try:
            status = policy(attempt)
        except DeliveryFailed as error:
            log.error(
                "webhook %s PARKED %s at position %s after %s attempts and goes on: %s",
                subscription.id,
                message.type,
                message.position,
                tries,
                error,
            )
            return _outcome(message, PARKED, earlier + tries, error)
        return Delivery(
            message.id,
            message.position,
            message.type,
            DELIVERED,
            earlier + tries,
            status,
            body=message.body,
        )

    def _known(self, subscription_id: str, delivery_id: str) -> Delivery | None:
        try:
            return self.store.delivery(subscription_id, delivery_id)
        except DeliveryNotFound:  # a first attempt
            return None

    def _redeliver(
        self, subscription: Subscription, delivery: Delivery, stop: threading.Event
    ) -> None:
        if delivery.body is None:
            gone = replace(
                delivery, status=PARKED, last_error="its body was not kept: not sent again"
            )
            self.store.note(subscription.id, subscription.position, gone)
            return
        message = Message(delivery.id, delivery.type, delivery.position, delivery.body)
        outcome = self._send(subscription, subscription.position, message, stop)
        self.store.note(subscription.id, subscription.position, outcome)


def _outcome(message: Message, status: Any, attempts: int, error: DeliveryFailed) -> Delivery:
    return Delivery(
        message.id,
        message.position,
        message.type,
        status,
        attempts,
        error.status,
        error.detail,
        body=message.body,
    )
