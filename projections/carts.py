"""Carts: each cart's lines (quantity, unit price, subtotal), total and status."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.cart import Cart
from domain.errors import NotFound
from projections.base import ReadModel, cents, handles, money, stamp
from projections.store import Tx


class Carts(ReadModel):
    name = "carts"
    tables = ("carts", "cart_lines")
    ddl = (
        "CREATE TABLE IF NOT EXISTS {carts} ("
        " cart_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,"
        " order_id TEXT, version INTEGER NOT NULL, opened_at TEXT NOT NULL,"
        " updated_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {cart_lines} ("
        " cart_id TEXT NOT NULL, sku TEXT NOT NULL, quantity BIGINT NOT NULL,"
        " unit_price_cents BIGINT NOT NULL, PRIMARY KEY (cart_id, sku))",
    )

    # --- handlers ------------------------------------------------------------------------

    @handles(Cart.Opened)
    def _opened(self, tx: Tx, event: Cart.Opened) -> None:
        tx.execute(
            "INSERT INTO {carts} (cart_id, customer_id, status, version, opened_at, updated_at)"
            " VALUES (:id, :customer_id, 'open', :version, :at, :at)",
            {**_touch(event), "customer_id": event.customer_id},
        )

    @handles(Cart.ItemAdded)
    def _item_added(self, tx: Tx, event: Cart.ItemAdded) -> None:
        # Adding to a line re-captures its price, as the aggregate does.
        tx.execute(
            "INSERT INTO {cart_lines} AS l (cart_id, sku, quantity, unit_price_cents)"
            " VALUES (:id, :sku, :quantity, :price) ON CONFLICT (cart_id, sku) DO UPDATE"
            " SET quantity = l.quantity + excluded.quantity,"
            " unit_price_cents = excluded.unit_price_cents",
            {
                "id": str(event.originator_id),
                "sku": event.sku,
                "quantity": event.quantity,
                "price": cents(event.unit_price),
            },
        )
        self._touch(tx, event)

    @handles(Cart.QuantityChanged)
    def _quantity_changed(self, tx: Tx, event: Cart.QuantityChanged) -> None:
        tx.execute(
            "UPDATE {cart_lines} SET quantity = :quantity WHERE cart_id = :id AND sku = :sku",
            {"id": str(event.originator_id), "sku": event.sku, "quantity": event.quantity},
        )
        self._touch(tx, event)

    @handles(Cart.ItemRemoved)
    def _item_removed(self, tx: Tx, event: Cart.ItemRemoved) -> None:
        tx.execute(
            "DELETE FROM {cart_lines} WHERE cart_id = :id AND sku = :sku",
            {"id": str(event.originator_id), "sku": event.sku},
        )
        self._touch(tx, event)

    @handles(Cart.CheckedOut)
    def _checked_out(self, tx: Tx, event: Cart.CheckedOut) -> None:
        tx.execute(
            "UPDATE {carts} SET status = 'checked_out', order_id = :order_id,"
            " version = :version, updated_at = :at WHERE cart_id = :id",
            {**_touch(event), "order_id": str(event.order_id)},
        )

    def _touch(self, tx: Tx, event: Cart.Event) -> None:
        tx.execute(
            "UPDATE {carts} SET version = :version, updated_at = :at WHERE cart_id = :id",
            _touch(event),
        )

    # --- queries -------------------------------------------------------------------------

    def get_cart(self, cart_id: UUID | str, owner: str | None = None) -> dict[str, Any]:
        """A cart with its lines and total; with ``owner``, NotFound unless it is theirs."""
        with self.reading() as tx:
            cart = tx.execute(
                "SELECT * FROM {carts} WHERE cart_id = :id", {"id": str(cart_id)}
            ).row()
            lines = tx.execute(
                "SELECT * FROM {cart_lines} WHERE cart_id = :id ORDER BY sku", {"id": str(cart_id)}
            ).rows()
        if cart is None or (owner is not None and cart["customer_id"] != owner):
            raise NotFound(f"Cart {cart_id} does not exist")
        shaped = [
            {
                "sku": line["sku"],
                "quantity": int(line["quantity"]),
                "unit_price": money(line["unit_price_cents"]),
                "subtotal": money(line["quantity"] * line["unit_price_cents"]),
            }
            for line in lines
        ]
        return {
            "id": cart["cart_id"],
            "customer_id": cart["customer_id"],
            "status": cart["status"],
            "order_id": cart["order_id"],
            "lines": shaped,
            "total": money(sum(line["quantity"] * line["unit_price_cents"] for line in lines)),
            "version": int(cart["version"]),
            "opened_at": cart["opened_at"],
            "updated_at": cart["updated_at"],
        }


def _touch(event: Cart.Event) -> dict[str, Any]:
    return {
        "id": str(event.originator_id),
        "version": event.originator_version,
        "at": stamp(event.timestamp),
    }
