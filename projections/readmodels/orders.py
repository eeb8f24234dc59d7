"""Orders: summaries to list and filter, newest first; details with lines, totals,
address, and the time of every status change."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, ClassVar
from uuid import UUID

from domain.customer import Customer
from domain.errors import InvalidValue, NotFound
from domain.order import (
    CANCELLED,
    DELIVERED,
    ERASED_ADDRESS,
    PAID,
    PLACED,
    SHIPPED,
    STATUSES,
    Order,
)
from domain.personal import ERASED
from projections.engine.base import ReadModel, cents, handles, money, parse_moment, stamp
from projections.engine.pagination import Keyset
from projections.engine.writes import Writes


class Orders(ReadModel):
    name = "orders"
    version = 2  # 2: payment_due_at
    tables = ("orders", "order_lines", "order_history")
    ddl = (
        "CREATE TABLE IF NOT EXISTS {orders} ("
        " order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, cart_id TEXT NOT NULL,"
        " status TEXT NOT NULL, total_cents BIGINT NOT NULL, units BIGINT NOT NULL,"
        " email TEXT NOT NULL, shipping_address TEXT NOT NULL, payment_reference TEXT,"
        " carrier TEXT, tracking_number TEXT, cancel_reason TEXT, refund_cents BIGINT,"
        " version INTEGER NOT NULL, placed_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " payment_due_at TEXT NOT NULL)",
        'CREATE INDEX IF NOT EXISTS "{p}orders_by_time" ON {orders} (placed_at, order_id)',
        'CREATE INDEX IF NOT EXISTS "{p}orders_by_customer" ON {orders}'
        " (customer_id, placed_at, order_id)",
        'CREATE INDEX IF NOT EXISTS "{p}orders_by_status" ON {orders}'
        " (status, placed_at, order_id)",
        "CREATE TABLE IF NOT EXISTS {order_lines} ("
        " order_id TEXT NOT NULL, sku TEXT NOT NULL, quantity BIGINT NOT NULL,"
        " unit_price_cents BIGINT NOT NULL, subtotal_cents BIGINT NOT NULL,"
        " PRIMARY KEY (order_id, sku))",
        "CREATE TABLE IF NOT EXISTS {order_history} ("
        " order_id TEXT NOT NULL, version INTEGER NOT NULL, status TEXT NOT NULL,"
        " at TEXT NOT NULL, PRIMARY KEY (order_id, version))",
    )

    keys: ClassVar[dict[str, tuple[str, ...]]] = {
        "orders": ("order_id",),
        "order_lines": ("order_id", "sku"),
        "order_history": ("order_id", "version"),
    }

    # --- handlers ------------------------------------------------------------------------

    @handles(Order.Placed)
    def _placed(self, tx: Writes, event: Order.Placed) -> None:
        order_id, at = str(event.originator_id), stamp(event.timestamp)
        tx.insert(
            "orders",
            {
                "order_id": order_id,
                "customer_id": event.customer_id,
                "cart_id": str(event.cart_id),
                "status": PLACED,
                "total_cents": cents(event.total),
                "units": sum(line["quantity"] for line in event.lines),
                "email": event.email,
                "shipping_address": json.dumps(event.shipping_address, sort_keys=True),
                "version": event.originator_version,
                "placed_at": at,
                "updated_at": at,
                "payment_due_at": stamp(event.payment_due_at),
            },
        )
        for line in event.lines:
            tx.insert(
                "order_lines",
                {
                    "order_id": order_id,
                    "sku": line["sku"],
                    "quantity": line["quantity"],
                    "unit_price_cents": cents(line["unit_price"]),
                    "subtotal_cents": cents(line["subtotal"]),
                },
            )
        self._history(tx, order_id, event.originator_version, PLACED, at)

    @handles(Order.Paid)
    def _paid(self, tx: Writes, event: Order.Paid) -> None:
        self._status(tx, event, PAID, payment_reference=event.reference)

    @handles(Order.Shipped)
    def _shipped(self, tx: Writes, event: Order.Shipped) -> None:
        self._status(
            tx, event, SHIPPED, carrier=event.carrier, tracking_number=event.tracking_number
        )

    @handles(Order.Delivered)
    def _delivered(self, tx: Writes, event: Order.Delivered) -> None:
        self._status(tx, event, DELIVERED)

    @handles(Order.Cancelled)
    def _cancelled(self, tx: Writes, event: Order.Cancelled) -> None:
        refund = None if event.refund is None else cents(event.refund)
        self._status(tx, event, CANCELLED, cancel_reason=event.reason, refund_cents=refund)

    @handles(Customer.Erased)
    def _erased(self, tx: Writes, event: Customer.Erased) -> None:
        # What the events of the customer's orders read as from now on: a rebuild,
        # reading them after the key is gone, finds the same.
        tx.execute(
            "UPDATE {orders} SET email = :email, shipping_address = :address"
            " WHERE customer_id = :customer_id",
            {
                "email": ERASED,
                "address": json.dumps(ERASED_ADDRESS, sort_keys=True),
                "customer_id": event.customer_id,
            },
        )

    def _status(self, tx: Writes, event: Order.Event, status: str, **columns: Any) -> None:
        order_id, version, at = (
            str(event.originator_id),
            event.originator_version,
            stamp(event.timestamp),
        )
        tx.update(
            "orders",
            {"order_id": order_id},
            set={**columns, "status": status, "version": version, "updated_at": at},
        )
        self._history(tx, order_id, version, status, at)

    @staticmethod
    def _history(tx: Writes, order_id: str, version: int, status: str, at: str) -> None:
        row = {"order_id": order_id, "version": version, "status": status, "at": at}
        tx.insert("order_history", row)

    # --- queries -------------------------------------------------------------------------

    def list_orders(
        self,
        customer_id: str | None = None,
        status: str | None = None,
        placed_from: datetime | date | str | None = None,
        placed_to: datetime | date | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Order summaries, newest first, keyset-paginated; every filter is optional.

        ``placed_from``/``placed_to`` are inclusive; a bare date covers its whole day.
        """
        keys = Keyset.parse("orders", limit, cursor, 2)
        if status is not None and status not in STATUSES:
            raise InvalidValue("status", f"status must be one of {', '.join(STATUSES)}")
        bounds = {
            "customer_id": customer_id,
            "status": status,
            "placed_from": parse_moment(placed_from, "placed_from"),
            "placed_to": parse_moment(placed_to, "placed_to", end=True),
        }
        tests = {
            "customer_id": "customer_id = :customer_id",
            "status": "status = :status",
            "placed_from": "placed_at >= :placed_from",
            "placed_to": "placed_at <= :placed_to",
        }
        clauses = [tests[key] for key, value in bounds.items() if value is not None]
        params: dict[str, Any] = {k: v for k, v in bounds.items() if v is not None}
        if keys.after:
            clauses.append("(placed_at, order_id) < (:after_at, :after_id)")
            params.update(after_at=keys.after[0], after_id=keys.after[1])
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.reading() as tx:
            rows = tx.execute(
                f"SELECT * FROM {{orders}} {where} ORDER BY placed_at DESC, order_id DESC LIMIT :n",
                {**params, "n": keys.fetch},
            ).rows()
        return keys.page(rows, lambda row: [row["placed_at"], row["order_id"]], _summary)

    def personal_data(self, customer_id: str) -> list[dict[str, Any]]:
        """The personal data of each of the customer's orders, oldest first."""
        with self.reading() as tx:
            rows = tx.execute(
                "SELECT order_id, placed_at, email, shipping_address FROM {orders}"
                " WHERE customer_id = :customer_id ORDER BY placed_at, order_id",
                {"customer_id": customer_id},
            ).rows()
        return [
            {
                "order_id": row["order_id"],
                "placed_at": row["placed_at"],
                "email": row["email"],
                "shipping_address": json.loads(row["shipping_address"]),
            }
            for row in rows
        ]

    def get_order(self, order_id: UUID | str, owner: str | None = None) -> dict[str, Any]:
        """An order in full; with ``owner``, NotFound unless it is that customer's."""
        params = {"id": str(order_id)}
        with self.reading() as tx:
            order = tx.execute("SELECT * FROM {orders} WHERE order_id = :id", params).row()
            lines = tx.execute(
                "SELECT * FROM {order_lines} WHERE order_id = :id ORDER BY sku", params
            ).rows()
            history = tx.execute(
                "SELECT * FROM {order_history} WHERE order_id = :id ORDER BY version", params
            ).rows()
        if order is None or (owner is not None and order["customer_id"] != owner):
            raise NotFound(f"Order {order_id} does not exist")
        refund = order["refund_cents"]
        return {
            **_summary(order),
            "cart_id": order["cart_id"],
            "lines": [
                {
                    "sku": line["sku"],
                    "quantity": int(line["quantity"]),
                    "unit_price": money(line["unit_price_cents"]),
                    "subtotal": money(line["subtotal_cents"]),
                }
                for line in lines
            ],
            "shipping_address": json.loads(order["shipping_address"]),
            "email": order["email"],
            "payment_reference": order["payment_reference"],
            "carrier": order["carrier"],
            "tracking_number": order["tracking_number"],
            "cancel_reason": order["cancel_reason"],
            "refund": None if refund is None else money(refund),
            "status_history": [
                {"status": h["status"], "at": h["at"], "version": int(h["version"])}
                for h in history
            ],
        }


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["order_id"],
        "customer_id": row["customer_id"],
        "status": row["status"],
        "total": money(row["total_cents"]),
        "units": int(row["units"]),
        "version": int(row["version"]),
        "placed_at": row["placed_at"],
        "updated_at": row["updated_at"],
        "payment_due_at": row["payment_due_at"],
    }
