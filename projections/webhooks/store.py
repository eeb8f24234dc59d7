"""Webhook subscriptions and their deliveries, in the read side's database.

A subscription's row holds its position in the log, like a read model's tracking row:
each delivery's outcome (delivered, or parked) and the position past its event are
written in ONE transaction, *fenced* (the row is locked and must still hold the
position the delivery started from, else :class:`LostOwnership`), so a position is
never moved twice nor skipped, whatever crashes or second deliverer there is. The HTTP
request itself comes before that transaction: a crash between the two sends the event
again, with the same ``webhook-id`` (at least once, which receivers de-duplicate).

These are operational tables, not derived from the log: no rebuild touches them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from domain.errors import NotFound
from projections.engine.base import stamp
from projections.engine.pagination import Keyset
from projections.engine.parking import describe
from projections.engine.tables import LostOwnership, ReadModelStore, Tx

SUBSCRIPTIONS = "webhook_subscriptions"
DELIVERIES = "webhook_deliveries"

Status = Literal["delivered", "failing", "parked", "pending"]
DELIVERED: Status = "delivered"
FAILING: Status = "failing"
"""Being retried now."""
PARKED: Status = "parked"
"""Given up on after the last attempt; the subscription went on without it."""
PENDING: Status = "pending"
"""Asked to be delivered again; the deliverer sends it before any new event."""
STATUSES: tuple[Status, ...] = (DELIVERED, FAILING, PARKED, PENDING)


class SubscriptionNotFound(NotFound):
    title = "Webhook subscription not found"


class DeliveryNotFound(NotFound):
    title = "Webhook delivery not found"


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    event_types: tuple[str, ...]
    secret: str
    position: int
    created_at: str
    created_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """What the API shows: everything but the secret."""
        return {
            "id": self.id,
            "url": self.url,
            "event_types": list(self.event_types),
            "position": self.position,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class Delivery:
    """One integration event to one subscription: its outcome so far."""

    id: str
    """The ``webhook-id`` (the CloudEvent's id): the same on every attempt."""
    position: int
    type: str
    status: Status
    attempts: int = 0
    last_status: int | None = None
    """The receiver's last HTTP status (None: no answer)."""
    last_error: str | None = None
    updated_at: str = field(default_factory=lambda: stamp(datetime.now(UTC)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "position": self.position,
            "type": self.type,
            "status": self.status,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "updated_at": self.updated_at,
        }


_DELIVERY_COLUMNS = "id, position, type, status, attempts, last_status, last_error, updated_at"


class WebhookStore:
    """The subscriptions' and deliveries' tables, through a read-side recorder's
    transactions (``view``: any read model's recorder of the database)."""

    def __init__(self, view: ReadModelStore) -> None:
        self.view = view
        self._tables = {
            "subs": view.qualify(SUBSCRIPTIONS),
            "deliveries": view.qualify(DELIVERIES),
            "p": "",
        }

    def sql(self, template: str) -> str:
        return self.view.compile_sql(template, self._tables)

    def create_tables(self) -> None:
        with self._writing() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS {subs} (id TEXT PRIMARY KEY, url TEXT NOT NULL,"
                " event_types TEXT NOT NULL, secret TEXT NOT NULL, position BIGINT NOT NULL,"
                " created_at TEXT NOT NULL, created_by TEXT)"
            )
            tx.execute(
                "CREATE TABLE IF NOT EXISTS {deliveries} (subscription_id TEXT NOT NULL,"
                " id TEXT NOT NULL, position BIGINT NOT NULL, type TEXT NOT NULL,"
                " status TEXT NOT NULL, attempts INTEGER NOT NULL, last_status INTEGER,"
                " last_error TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (subscription_id, id))"
            )
            tx.execute(
                'CREATE INDEX IF NOT EXISTS "webhook_deliveries_in_order" ON {deliveries}'
                " (subscription_id, position, id)"
            )

    # --- subscriptions -----------------------------------------------------------------

    def add(self, subscription: Subscription) -> None:
        with self._writing() as tx:
            tx.execute(
                "INSERT INTO {subs} (id, url, event_types, secret, position, created_at,"
                " created_by) VALUES (:id, :url, :types, :secret, :position, :at, :by)",
                {
                    "id": subscription.id,
                    "url": subscription.url,
                    "types": json.dumps(list(subscription.event_types)),
                    "secret": subscription.secret,
                    "position": subscription.position,
                    "at": subscription.created_at,
                    "by": subscription.created_by,
                },
            )

    def get(self, subscription_id: str) -> Subscription:
        """The subscription; ``SubscriptionNotFound`` (404) if there is none."""
        with self._reading() as tx:
            row = tx.execute("SELECT * FROM {subs} WHERE id = :id", {"id": subscription_id}).row()
        if row is None:
            raise SubscriptionNotFound(f"there is no webhook subscription {subscription_id!r}")
        return _subscription(row)

    def all(self) -> list[Subscription]:
        with self._reading() as tx:
            rows = tx.execute("SELECT * FROM {subs} ORDER BY created_at, id").rows()
        return [_subscription(row) for row in rows]

    def page(self, keyset: Keyset) -> dict[str, Any]:
        after = "" if keyset.after is None else " WHERE (created_at, id) > (:at, :id)"
        params: dict[str, Any] = {"n": keyset.fetch}
        if keyset.after is not None:
            params["at"], params["id"] = keyset.after
        with self._reading() as tx:
            rows = tx.execute(
                "SELECT * FROM {subs}" + after + " ORDER BY created_at, id LIMIT :n", params
            ).rows()
        return keyset.page(
            rows, lambda r: (r["created_at"], r["id"]), lambda r: _subscription(r).as_dict()
        )

    def remove(self, subscription_id: str) -> None:
        """Delete the subscription and its deliveries (its deliverer stops at its next
        write); ``SubscriptionNotFound`` if there is none."""
        with self._writing() as tx:
            params = {"id": subscription_id}
            if tx.execute("SELECT id FROM {subs} WHERE id = :id", params).row() is None:
                raise SubscriptionNotFound(f"there is no webhook subscription {subscription_id!r}")
            tx.execute("DELETE FROM {deliveries} WHERE subscription_id = :id", params)
            tx.execute("DELETE FROM {subs} WHERE id = :id", params)

    # --- the position, fenced ------------------------------------------------------------

    def advance(
        self, subscription_id: str, expected: int, to: int, delivery: Delivery | None = None
    ) -> None:
        """Move the subscription from position ``expected`` to ``to`` and record the
        delivery's outcome, in one transaction; ``LostOwnership`` if the position is no
        longer ``expected`` (another deliverer moved it, or the subscription is gone)."""
        with self._writing() as tx:
            self._fence(tx, subscription_id, expected)
            if delivery is not None:
                self._record(tx, subscription_id, delivery)
            if to != expected:
                tx.execute(
                    "UPDATE {subs} SET position = :to WHERE id = :id",
                    {"to": to, "id": subscription_id},
                )

    def note(self, subscription_id: str, expected: int, delivery: Delivery) -> None:
        """Record how a delivery stands without moving the position (an attempt failed,
        a redelivery ended), fenced like :meth:`advance`."""
        self.advance(subscription_id, expected, expected, delivery)

    def _fence(self, tx: Tx, subscription_id: str, expected: int) -> None:
        lock = " FOR UPDATE" if self.view.dialect == "postgres" else ""
        row = tx.execute(
            "SELECT position FROM {subs} WHERE id = :id" + lock, {"id": subscription_id}
        ).row()
        if row is None:
            raise LostOwnership(f"the webhook subscription {subscription_id} is gone")
        if int(row["position"]) != expected:
            raise LostOwnership(
                f"the webhook subscription {subscription_id} is at {row['position']}, not"
                f" {expected}: another deliverer sent these events"
            )

    def _record(self, tx: Tx, subscription_id: str, delivery: Delivery) -> None:
        row = {**delivery.as_dict(), "subscription_id": subscription_id}
        row["last_error"] = None if delivery.last_error is None else describe(delivery.last_error)
        tx.execute(
            f"INSERT INTO {{deliveries}} (subscription_id, {_DELIVERY_COLUMNS}) VALUES"
            " (:subscription_id, :id, :position, :type, :status, :attempts, :last_status,"
            " :last_error, :updated_at) ON CONFLICT (subscription_id, id) DO UPDATE SET"
            " status = excluded.status, attempts = excluded.attempts,"
            " last_status = excluded.last_status, last_error = excluded.last_error,"
            " updated_at = excluded.updated_at",
            row,
        )

    # --- deliveries ----------------------------------------------------------------------

    def deliveries(
        self, subscription_id: str, keyset: Keyset, status: Status | None = None
    ) -> dict[str, Any]:
        """A page of the subscription's deliveries in log order (only ``status`` ones)."""
        self.get(subscription_id)
        where = "subscription_id = :sub"
        params: dict[str, Any] = {"sub": subscription_id, "n": keyset.fetch}
        if status is not None:
            where, params["status"] = where + " AND status = :status", status
        if keyset.after is not None:
            where += " AND (position, id) > (:after_position, :after_id)"
            params["after_position"], params["after_id"] = keyset.after
        with self._reading() as tx:
            rows = tx.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM {{deliveries}} WHERE {where}"
                " ORDER BY position, id LIMIT :n",
                params,
            ).rows()
        return keyset.page(
            rows, lambda r: (r["position"], r["id"]), lambda r: _delivery(r).as_dict()
        )

    def delivery(self, subscription_id: str, delivery_id: str) -> Delivery:
        with self._reading() as tx:
            row = tx.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM {{deliveries}}"
                " WHERE subscription_id = :sub AND id = :id",
                {"sub": subscription_id, "id": delivery_id},
            ).row()
        if row is None:
            self.get(subscription_id)
            raise DeliveryNotFound(
                f"the webhook subscription {subscription_id} has no delivery {delivery_id!r}"
            )
        return _delivery(row)

    def request_redelivery(self, subscription_id: str, delivery_id: str) -> Delivery:
        """Mark a delivered or parked delivery to be sent again (one being retried or
        already pending stays as it is)."""
        self.delivery(subscription_id, delivery_id)
        with self._writing() as tx:
            tx.execute(
                "UPDATE {deliveries} SET status = :pending, updated_at = :now"
                " WHERE subscription_id = :sub AND id = :id AND status IN (:delivered, :parked)",
                {
                    "pending": PENDING,
                    "delivered": DELIVERED,
                    "parked": PARKED,
                    "now": stamp(datetime.now(UTC)),
                    "sub": subscription_id,
                    "id": delivery_id,
                },
            )
        return self.delivery(subscription_id, delivery_id)

    def pending(self, subscription_id: str) -> list[Delivery]:
        """The deliveries asked to be sent again, in log order."""
        with self._reading() as tx:
            rows = tx.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM {{deliveries}}"
                " WHERE subscription_id = :sub AND status = :pending ORDER BY position, id",
                {"sub": subscription_id, "pending": PENDING},
            ).rows()
        return [_delivery(row) for row in rows]

    def counts(self, subscription_id: str) -> dict[str, int]:
        """How many deliveries the subscription has, per status."""
        with self._reading() as tx:
            rows = tx.execute(
                "SELECT status, count(*) AS n FROM {deliveries} WHERE subscription_id = :sub"
                " GROUP BY status",
                {"sub": subscription_id},
            ).rows()
        found = {row["status"]: int(row["n"]) for row in rows}
        return {status: found.get(status, 0) for status in STATUSES}

    # --- transactions --------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Tx]:
        with self.view.writing() as cursor:
            yield Tx(cursor, self.sql)

    @contextmanager
    def _reading(self) -> Iterator[Tx]:
        with self.view.reading() as cursor:
            yield Tx(cursor, self.sql)


def _subscription(row: dict[str, Any]) -> Subscription:
    return Subscription(
        id=row["id"],
        url=row["url"],
        event_types=tuple(json.loads(row["event_types"])),
        secret=row["secret"],
        position=int(row["position"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
    )


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(
        id=row["id"],
        position=int(row["position"]),
        type=row["type"],
        status=row["status"],
        attempts=int(row["attempts"]),
        last_status=None if row["last_status"] is None else int(row["last_status"]),
        last_error=row["last_error"],
        updated_at=row["updated_at"],
    )


__all__: Sequence[str] = (
    "DELIVERED",
    "FAILING",
    "PARKED",
    "PENDING",
    "Delivery",
    "DeliveryNotFound",
    "Subscription",
    "SubscriptionNotFound",
    "WebhookStore",
)
