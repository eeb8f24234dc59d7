"""Webhook subscriptions and their deliveries, in the read side's database.

A subscription's row holds its position in the log, like a read model's tracking row,
and beside it what its integration-event translator knows at that position (SKUs'
available units, open orders' currencies: ``webhook_stock``, ``webhook_orders``). Each
delivery's outcome (delivered, or parked), the position past its event and the
translator's changes up to it are written in ONE transaction, *fenced* (the row is
locked and must still hold the position the delivery started from, else
:class:`LostOwnership`), so a position is never moved twice nor skipped and the state
always matches it, whatever crashes or second deliverer there is. The HTTP request
itself comes before that transaction: a crash between the two sends the event again,
with the same ``webhook-id`` (at least once, which receivers de-duplicate).

A subscription starts at position 0 with an empty translator and sends nothing up to
``starts_after`` (the log's head when it was made): the translator's state is derived
from the log once, like any read model's, instead of guessed. Each delivery keeps the
body it sent, so that a redelivery sends the same bytes.

These are operational tables, not derived from the log: no rebuild touches them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from domain.errors import NotFound
from projections.engine.base import stamp
from projections.engine.channels import ChannelHealth
from projections.engine.pagination import Keyset
from projections.engine.parking import describe
from projections.engine.tables import LostOwnership, ReadModelStore, Tx
from projections.integration.events import StockLevel, Thresholds, Translator

SUBSCRIPTIONS = "webhook_subscriptions"
DELIVERIES = "webhook_deliveries"
STOCK = "webhook_stock"
ORDERS = "webhook_orders"

Changes = tuple[dict[str, StockLevel | None], dict[str, str | None]]
"""What a translator's state changed by (``Translator.changes()``), to store."""

Status = Literal["delivered", "failing", "parked", "pending"]
DELIVERED: Status = "delivered"
FAILING: Status = "failing"
"""Being retried now."""
PARKED: Status = "parked"
"""Given up on after the last attempt; the subscription went on without it."""
PENDING: Status = "pending"
"""Asked to be delivered again; the deliverer sends it before any new event."""
STATUSES: tuple[Status, ...] = (DELIVERED, FAILING, PARKED, PENDING)


DELIVERER = "webhooks"
"""The deliverer's row in ``channel_health``; each subscription's is :func:`channel`."""


def channel(subscription_id: str) -> str:
    """A subscription's row in ``channel_health``: its last success and failure."""
    return f"{DELIVERER}/{subscription_id}"


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
    """How far the subscription has read the log (delivered, or passed)."""
    created_at: str
    created_by: str | None = None
    starts_after: int = 0
    """Nothing at or before this position is sent: the log's head when it was made."""

    def as_dict(self) -> dict[str, Any]:
        """What the API shows: everything but the secret."""
        return {
            "id": self.id,
            "url": self.url,
            "event_types": list(self.event_types),
            "position": self.position,
            "starts_after": self.starts_after,
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
    body: str | None = field(default=None, repr=False)
    """The request's body as first sent (None: not known), sent again as it was."""

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
            "stock": view.qualify(STOCK),
            "orders": view.qualify(ORDERS),
            "p": "",
        }
        self.health = ChannelHealth(view)

    def sql(self, template: str) -> str:
        return self.view.compile_sql(template, self._tables)

    def create_tables(self) -> None:
        with self.view.writing() as cursor:
            tx = Tx(cursor, self.sql)
            tx.execute(
                "CREATE TABLE IF NOT EXISTS {subs} (id TEXT PRIMARY KEY, url TEXT NOT NULL,"
                " event_types TEXT NOT NULL, secret TEXT NOT NULL, position BIGINT NOT NULL,"
                " created_at TEXT NOT NULL, created_by TEXT,"
                " starts_after BIGINT NOT NULL DEFAULT 0)"
            )
            tx.execute(
                "CREATE TABLE IF NOT EXISTS {deliveries} (subscription_id TEXT NOT NULL,"
                " id TEXT NOT NULL, position BIGINT NOT NULL, type TEXT NOT NULL,"
                " status TEXT NOT NULL, attempts INTEGER NOT NULL, last_status INTEGER,"
                " last_error TEXT, updated_at TEXT NOT NULL, body TEXT,"
                " PRIMARY KEY (subscription_id, id))"
            )
            tx.execute(
                'CREATE INDEX IF NOT EXISTS "webhook_deliveries_in_order" ON {deliveries}'
                " (subscription_id, position, id)"
            )
            # Status counts the parked and failing ones without reading every delivery.
            tx.execute(
                'CREATE INDEX IF NOT EXISTS "webhook_deliveries_by_status" ON {deliveries}'
                " (status, subscription_id)"
            )
            tx.execute(
                "CREATE TABLE IF NOT EXISTS {stock} (subscription_id TEXT NOT NULL,"
                " stock_id TEXT NOT NULL, sku TEXT NOT NULL, available INTEGER NOT NULL,"
                " PRIMARY KEY (subscription_id, stock_id))"
            )
            tx.execute(
                "CREATE TABLE IF NOT EXISTS {orders} (subscription_id TEXT NOT NULL,"
                " order_id TEXT NOT NULL, currency TEXT NOT NULL,"
                " PRIMARY KEY (subscription_id, order_id))"
            )
            self._upgrade(cursor, tx)
            self.health.create_tables(cursor)

    def _upgrade(self, cursor: Any, tx: Tx) -> None:
        """Tables made before the translator's state was kept (no ``starts_after``, no
        ``body``): their subscriptions derive it from the start of the log, sending
        nothing they had not reached."""

        def columns(table: str) -> set[str]:
            cursor.execute(self.sql(f"SELECT * FROM {{{table}}} WHERE 1 = 0"))
            # The library wraps sqlite3's cursor, without its description.
            described = getattr(cursor, "sqlite_cursor", cursor).description
            return {column[0] for column in described}

        if "starts_after" not in columns("subs"):
            tx.execute("ALTER TABLE {subs} ADD COLUMN starts_after BIGINT NOT NULL DEFAULT 0")
            tx.execute("UPDATE {subs} SET starts_after = position, position = 0")
        if "body" not in columns("deliveries"):
            tx.execute("ALTER TABLE {deliveries} ADD COLUMN body TEXT")

    # --- subscriptions -----------------------------------------------------------------

    def add(self, subscription: Subscription) -> None:
        with self._writing() as tx:
            tx.execute(
                "INSERT INTO {subs} (id, url, event_types, secret, position, starts_after,"
                " created_at, created_by) VALUES (:id, :url, :types, :secret, :position,"
                " :starts_after, :at, :by)",
                {
                    "id": subscription.id,
                    "url": subscription.url,
                    "types": json.dumps(list(subscription.event_types)),
                    "secret": subscription.secret,
                    "position": subscription.position,
                    "starts_after": subscription.starts_after,
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
            for table in ("deliveries", "stock", "orders"):
                tx.execute(f"DELETE FROM {{{table}}} WHERE subscription_id = :id", params)
            tx.execute("DELETE FROM {subs} WHERE id = :id", params)
            self.health.forget(channel(subscription_id), tx.cursor)

    # --- the position, fenced ------------------------------------------------------------

    def advance(
        self,
        subscription_id: str,
        expected: int,
        to: int,
        delivery: Delivery | None = None,
        changes: Changes | None = None,
    ) -> None:
        """Move the subscription from position ``expected`` to ``to``, record the
        delivery's outcome and its translator's ``changes`` up to ``to``, in one
        transaction; ``LostOwnership`` if the position is no longer ``expected``
        (another deliverer moved it, or the subscription is gone)."""
        with self._writing() as tx:
            self._fence(tx, subscription_id, expected)
            if delivery is not None:
                self._record(tx, subscription_id, delivery)
            if changes is not None:
                self._store_state(tx, subscription_id, changes)
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
        row = {**delivery.as_dict(), "subscription_id": subscription_id, "body": delivery.body}
        row["last_error"] = None if delivery.last_error is None else describe(delivery.last_error)
        # The body stays as first recorded: every attempt of a delivery sends the same.
        tx.execute(
            f"INSERT INTO {{deliveries}} (subscription_id, {_DELIVERY_COLUMNS}, body) VALUES"
            " (:subscription_id, :id, :position, :type, :status, :attempts, :last_status,"
            " :last_error, :updated_at, :body) ON CONFLICT (subscription_id, id) DO UPDATE SET"
            " status = excluded.status, attempts = excluded.attempts,"
            " last_status = excluded.last_status, last_error = excluded.last_error,"
            " updated_at = excluded.updated_at",
            row,
        )
        at = datetime.fromisoformat(delivery.updated_at)
        if delivery.status == DELIVERED:
            self.health.succeeded(channel(subscription_id), at, tx.cursor)
        elif delivery.status in (FAILING, PARKED):
            error = row["last_error"] or f"HTTP {delivery.last_status}"
            self.health.failed(channel(subscription_id), at, error, tx.cursor)

    # --- the translator's state ------------------------------------------------------------

    def translator(self, subscription_id: str, thresholds: Thresholds) -> Translator:
        """A translator with what the subscription's stored at its position."""
        params = {"sub": subscription_id}
        with self._reading() as tx:
            stocks = tx.execute("SELECT * FROM {stock} WHERE subscription_id = :sub", params).rows()
            orders = tx.execute(
                "SELECT * FROM {orders} WHERE subscription_id = :sub", params
            ).rows()
        return Translator(
            thresholds,
            {r["stock_id"]: StockLevel(r["sku"], int(r["available"])) for r in stocks},
            {r["order_id"]: r["currency"] for r in orders},
        )

    def _store_state(self, tx: Tx, subscription_id: str, changes: Changes) -> None:
        stocks, orders = changes
        sub = {"sub": subscription_id}
        tx.executemany(
            "INSERT INTO {stock} (subscription_id, stock_id, sku, available)"
            " VALUES (:sub, :id, :sku, :available) ON CONFLICT (subscription_id, stock_id)"
            " DO UPDATE SET available = excluded.available",
            [
                {**sub, "id": key, "sku": level.sku, "available": level.available}
                for key, level in stocks.items()
                if level is not None
            ],
        )
        tx.executemany(
            "INSERT INTO {orders} (subscription_id, order_id, currency)"
            " VALUES (:sub, :id, :currency) ON CONFLICT (subscription_id, order_id)"
            " DO UPDATE SET currency = excluded.currency",
            [{**sub, "id": k, "currency": c} for k, c in orders.items() if c is not None],
        )
        for table, forgotten in (("stock", stocks), ("orders", orders)):
            key = "stock_id" if table == "stock" else "order_id"
            tx.executemany(
                f"DELETE FROM {{{table}}} WHERE subscription_id = :sub AND {key} = :id",
                [{**sub, "id": k} for k, v in forgotten.items() if v is None],
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
        """The deliveries asked to be sent again, in log order, with their bodies."""
        with self._reading() as tx:
            rows = tx.execute(
                f"SELECT {_DELIVERY_COLUMNS}, body FROM {{deliveries}}"
                " WHERE subscription_id = :sub AND status = :pending ORDER BY position, id",
                {"sub": subscription_id, "pending": PENDING},
            ).rows()
        return [_delivery(row) for row in rows]

    def unsettled(self) -> dict[str, dict[str, int]]:
        """Per subscription, its deliveries parked and failing (being retried) now."""
        with self._reading() as tx:
            rows = tx.execute(
                "SELECT subscription_id, status, count(*) AS n FROM {deliveries}"
                " WHERE status IN (:parked, :failing) GROUP BY subscription_id, status",
                {"parked": PARKED, "failing": FAILING},
            ).rows()
        found: dict[str, dict[str, int]] = {}
        for row in rows:
            found.setdefault(row["subscription_id"], {})[row["status"]] = int(row["n"])
        return found

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
        starts_after=int(row["starts_after"]),
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
        body=row.get("body"),
    )
