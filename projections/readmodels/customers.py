"""Customers: each customer's order history, newest first, and what they have spent."""

from __future__ import annotations

from typing import Any, ClassVar

from domain.order import CANCELLED, DELIVERED, PAID, PLACED, SHIPPED, Order
from projections.engine.base import ReadModel, cents, handles, money, stamp
from projections.engine.pagination import Keyset
from projections.engine.writes import Writes


class Customers(ReadModel):
    name = "customers"
    tables = ("customer_orders",)
    ddl = (
        "CREATE TABLE IF NOT EXISTS {customer_orders} ("
        " customer_id TEXT NOT NULL, order_id TEXT NOT NULL UNIQUE, status TEXT NOT NULL,"
        " total_cents BIGINT NOT NULL, units BIGINT NOT NULL, placed_at TEXT NOT NULL,"
        " updated_at TEXT NOT NULL, PRIMARY KEY (customer_id, placed_at, order_id))",
    )

    keys: ClassVar[dict[str, tuple[str, ...]]] = {"customer_orders": ("order_id",)}

    # --- handlers ------------------------------------------------------------------------

    @handles(Order.Placed)
    def _placed(self, tx: Writes, event: Order.Placed) -> None:
        at = stamp(event.timestamp)
        tx.insert(
            "customer_orders",
            {
                "customer_id": event.customer_id,
                "order_id": str(event.originator_id),
                "status": PLACED,
                "total_cents": cents(event.total),
                "units": sum(line["quantity"] for line in event.lines),
                "placed_at": at,
                "updated_at": at,
            },
        )

    @handles(Order.Paid)
    def _paid(self, tx: Writes, event: Order.Paid) -> None:
        self._status(tx, event, PAID)

    @handles(Order.Shipped)
    def _shipped(self, tx: Writes, event: Order.Shipped) -> None:
        self._status(tx, event, SHIPPED)

    @handles(Order.Delivered)
    def _delivered(self, tx: Writes, event: Order.Delivered) -> None:
        self._status(tx, event, DELIVERED)

    @handles(Order.Cancelled)
    def _cancelled(self, tx: Writes, event: Order.Cancelled) -> None:
        self._status(tx, event, CANCELLED)

    def _status(self, tx: Writes, event: Order.Event, status: str) -> None:
        tx.update(
            "customer_orders",
            {"order_id": str(event.originator_id)},
            set={"status": status, "updated_at": stamp(event.timestamp)},
        )

    # --- queries -------------------------------------------------------------------------

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        """Totals of a customer's orders; ``spent`` leaves cancelled orders out."""
        with self.reading() as tx:
            row = tx.execute(
                "SELECT COUNT(*) AS orders,"
                " SUM(CASE WHEN status = :cancelled THEN 1 ELSE 0 END) AS cancelled,"
                " SUM(CASE WHEN status = :cancelled THEN 0 ELSE total_cents END) AS spent,"
                " MIN(placed_at) AS first_order_at, MAX(placed_at) AS last_order_at"
                " FROM {customer_orders} WHERE customer_id = :customer_id",
                {"customer_id": customer_id, "cancelled": CANCELLED},
            ).row()
        assert row is not None
        return {
            "customer_id": customer_id,
            "orders": int(row["orders"]),
            "cancelled": int(row["cancelled"] or 0),
            "spent": money(row["spent"] or 0),
            "first_order_at": row["first_order_at"],
            "last_order_at": row["last_order_at"],
        }

    def order_history(
        self, customer_id: str, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """A customer's orders, newest first: ``{"items": [...], "next_cursor"}``."""
        keys = Keyset.parse("customer-orders", limit, cursor, 2)
        params: dict[str, Any] = {"customer_id": customer_id, "n": keys.fetch}
        after = ""
        if keys.after:
            after = " AND (placed_at, order_id) < (:after_at, :after_id)"
            params.update(after_at=keys.after[0], after_id=keys.after[1])
        with self.reading() as tx:
            rows = tx.execute(
                f"SELECT * FROM {{customer_orders}} WHERE customer_id = :customer_id{after}"
                " ORDER BY placed_at DESC, order_id DESC LIMIT :n",
                params,
            ).rows()
        return keys.page(rows, lambda row: [row["placed_at"], row["order_id"]], _entry)


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "order_id": row["order_id"],
        "status": row["status"],
        "total": money(row["total_cents"]),
        "units": int(row["units"]),
        "placed_at": row["placed_at"],
        "updated_at": row["updated_at"],
    }
