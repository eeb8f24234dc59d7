"""Customers: each customer's order history, newest first, and what they have spent."""

from __future__ import annotations

from typing import Any, ClassVar

from domain.order import CANCELLED, DELIVERED, PAID, PLACED, SHIPPED, Order
from projections.engine.base import ReadModel, cents, handles, money, stamp
from projections.engine.pagination import DEFAULT_LIMIT, Keyset
from projections.engine.tables import Tx
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

    def list_customers(
        self, limit: int | None = None, cursor: str | None = None, only: str | None = None
    ) -> dict[str, Any]:
        """Every customer who has ordered, by id, with the totals of :meth:`get_customer`:
        ``{"items": [...], "next_cursor"}``; with ``only``, just that customer."""
        keys = Keyset.parse("customers", limit, cursor, 1)
        clauses: list[str] = []
        params: dict[str, Any] = {"n": keys.fetch}
        if only is not None:
            clauses.append("customer_id = :only")
            params["only"] = only
        if keys.after:
            clauses.append("customer_id > :after")
            params["after"] = keys.after[0]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.reading() as tx:
            rows = _totals(tx, where, params)
        return keys.page(rows, lambda row: [row["customer_id"]], _customer)

    def get_customer(self, customer_id: str, recent: int = DEFAULT_LIMIT) -> dict[str, Any]:
        """A customer's totals, last order and ``recent`` newest orders (all zero, None and
        empty for a customer who never ordered).

        ``orders`` counts every order, ``cancelled`` the cancelled ones. ``spent`` is what
        the customer paid and kept paid: the totals of orders paid, shipped or delivered.
        A cancelled order counts nothing (a paid one was refunded in full); a placed one
        counts under ``awaiting_payment`` until it is paid (or cancelled).
        """
        keys = Keyset.parse("customer-orders", recent, None, 2)
        with self.reading() as tx:
            where = "WHERE customer_id = :customer_id"
            rows = _totals(tx, where, {"customer_id": customer_id, "n": 1})
            history = _history(tx, customer_id, keys)
        found = _customer(rows[0]) if rows else _customer({"customer_id": customer_id})
        return {**found, "recent_orders": keys.page(history, _history_key, _entry)["items"]}

    def order_ids(self, customer_id: str) -> list[str]:
        """The ids of every order of the customer."""
        with self.reading() as tx:
            rows = tx.execute(
                "SELECT order_id FROM {customer_orders} WHERE customer_id = :customer_id"
                " ORDER BY order_id",
                {"customer_id": customer_id},
            ).rows()
        return [row["order_id"] for row in rows]

    def order_history(
        self, customer_id: str, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """A customer's orders, newest first: ``{"items": [...], "next_cursor"}``."""
        keys = Keyset.parse("customer-orders", limit, cursor, 2)
        with self.reading() as tx:
            rows = _history(tx, customer_id, keys)
        return keys.page(rows, _history_key, _entry)


# One row per customer, by id, with the newest of its orders (ties of placed_at broken by
# order_id, as in the history): the aggregate walks the primary key in its order.
_TOTALS = (
    "WITH page AS ("
    " SELECT customer_id, COUNT(*) AS orders,"
    " SUM(CASE WHEN status = :cancelled THEN 1 ELSE 0 END) AS cancelled,"
    " SUM(CASE WHEN status IN (:paid, :shipped, :delivered) THEN total_cents ELSE 0 END)"
    " AS spent_cents,"
    " SUM(CASE WHEN status = :placed THEN total_cents ELSE 0 END) AS awaiting_cents,"
    " MIN(placed_at) AS first_order_at, MAX(placed_at) AS last_order_at"
    " FROM {{customer_orders}} {where}"
    " GROUP BY customer_id ORDER BY customer_id LIMIT :n)"
    " SELECT page.*, o.order_id AS last_order_id, o.status AS last_order_status"
    " FROM page JOIN {{customer_orders}} o"
    " ON o.customer_id = page.customer_id AND o.placed_at = page.last_order_at"
    " WHERE o.order_id = (SELECT MAX(t.order_id) FROM {{customer_orders}} t"
    " WHERE t.customer_id = page.customer_id AND t.placed_at = page.last_order_at)"
    " ORDER BY page.customer_id"
)
_STATUS_PARAMS = {
    "placed": PLACED,
    "paid": PAID,
    "shipped": SHIPPED,
    "delivered": DELIVERED,
    "cancelled": CANCELLED,
}


def _totals(tx: Tx, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return tx.execute(_TOTALS.format(where=where), {**params, **_STATUS_PARAMS}).rows()


def _history(tx: Tx, customer_id: str, keys: Keyset) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"customer_id": customer_id, "n": keys.fetch}
    after = ""
    if keys.after:
        after = " AND (placed_at, order_id) < (:after_at, :after_id)"
        params.update(after_at=keys.after[0], after_id=keys.after[1])
    return tx.execute(
        f"SELECT * FROM {{customer_orders}} WHERE customer_id = :customer_id{after}"
        " ORDER BY placed_at DESC, order_id DESC LIMIT :n",
        params,
    ).rows()


def _history_key(row: dict[str, Any]) -> list[Any]:
    return [row["placed_at"], row["order_id"]]


def _customer(row: dict[str, Any]) -> dict[str, Any]:
    last = row.get("last_order_id")
    return {
        "customer_id": row["customer_id"],
        "orders": int(row.get("orders") or 0),
        "cancelled": int(row.get("cancelled") or 0),
        "spent": money(row.get("spent_cents") or 0),
        "awaiting_payment": money(row.get("awaiting_cents") or 0),
        "first_order_at": row.get("first_order_at"),
        "last_order": None
        if last is None
        else {"id": last, "placed_at": row["last_order_at"], "status": row["last_order_status"]},
    }


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["order_id"],
        "status": row["status"],
        "total": money(row["total_cents"]),
        "units": int(row["units"]),
        "placed_at": row["placed_at"],
        "updated_at": row["updated_at"],
    }
