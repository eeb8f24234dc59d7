"""Webhooks: the shop's integration events, sent to the URLs subscribers registered.

``Webhooks`` is what the API (admin only) and the composition root use: subscribe,
list, unsubscribe, list a subscription's deliveries, ask for one again; ``start()``
delivers in threads of this process (``delivery.py``), ``stop()`` stops. What is sent
is the shop's one integration-event contract (``projections/integration``: the same
CloudEvents as on NATS JetStream); where it may be sent, from the operator's allow-list
(``targets.py``); each request is signed per the Standard Webhooks specification
(``sender.py``); positions, translator state and outcomes are kept like a read model's
(``store.py``).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from domain.errors import InvalidValue
from projections.engine.base import stamp
from projections.engine.feed import Source
from projections.engine.pagination import Keyset
from projections.integration.events import EVENT_TYPES
from projections.webhooks.delivery import Deliverer
from projections.webhooks.store import Delivery, Status, Subscription, WebhookStore
from projections.webhooks.targets import AllowList

SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)
"""The Standard Webhooks specification's bounds for a secret's length, in bytes."""


class Webhooks:
    """The webhook subscriptions of the shop and their deliverer."""

    def __init__(
        self, store: WebhookStore, source: Source, allow: AllowList, deliverer: Deliverer
    ) -> None:
        self.store = store
        self.source = source
        self.allow = allow
        self.deliverer = deliverer

    def subscribe(
        self,
        url: str,
        event_types: Sequence[str],
        secret: str | None = None,
        by: str | None = None,
    ) -> tuple[Subscription, str]:
        """Subscribe ``url`` to these integration event types from the next event of the
        log on; the subscription and its secret (``secret``, or a new one). 422 for a
        URL the allow-list refuses, an unknown type, or a malformed secret.

        Its position starts at 0: the deliverer derives its translator's state from the
        log up to the head of now, sending nothing of it (``starts_after``)."""
        target = self.allow.check_url(url)
        types = tuple(dict.fromkeys(event_types))
        if not types or any(t not in EVENT_TYPES for t in types):
            raise InvalidValue(
                "event_types", f"event_types must be some of {', '.join(EVENT_TYPES)}"
            )
        secret = _checked_secret(secret) if secret is not None else _new_secret()
        subscription = Subscription(
            id=str(uuid.uuid4()),
            url=target.url,
            event_types=types,
            secret=secret,
            position=0,
            created_at=stamp(datetime.now(UTC)),
            created_by=by,
            starts_after=self.source.head(),
        )
        self.store.add(subscription)
        return subscription, secret

    def subscriptions(self, keyset: Keyset) -> dict[str, Any]:
        return self.store.page(keyset)

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        """A subscription, its progress (``head``, ``lag``) and its deliveries per status."""
        subscription = self.store.get(subscription_id)
        head = self.source.head()
        return {
            **subscription.as_dict(),
            "head": head,
            "lag": max(head - subscription.position, 0),
            "deliveries": self.store.counts(subscription_id),
        }

    def unsubscribe(self, subscription_id: str) -> None:
        self.store.remove(subscription_id)

    def deliveries(
        self, subscription_id: str, keyset: Keyset, status: Status | None = None
    ) -> dict[str, Any]:
        return self.store.deliveries(subscription_id, keyset, status)

    def redeliver(self, subscription_id: str, delivery_id: str) -> Delivery:
        """Have a delivered or parked delivery sent again, before any new event."""
        return self.store.request_redelivery(subscription_id, delivery_id)

    def start(self) -> None:
        self.deliverer.start()

    def stop(self) -> None:
        self.deliverer.stop()

    def close(self) -> None:
        self.deliverer.stop()
        self.deliverer.sender.close()
        self.deliverer.locks.close()


def _new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _checked_secret(secret: str) -> str:
    low, high = SECRET_BYTES
    problem = InvalidValue(
        "secret",
        f"secret must be {SECRET_PREFIX} and the base64 of {low} to {high} random bytes"
        " (leave it out to have one made)",
    )
    if not secret.startswith(SECRET_PREFIX):
        raise problem
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise problem from None
    if not low <= len(key) <= high:
        raise problem
    return secret


__all__ = ["AllowList", "Deliverer", "Delivery", "Subscription", "WebhookStore", "Webhooks"]
