"""Carts: each cart's lines (quantity, unit price, subtotal), total and status."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from domain.cart import Cart
from domain.errors import NotFound
from projections.engine.base import ReadModel, cents, handles, money, stamp
from projections.engine.writes import Writes


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

    keys: ClassVar[dict[str, tuple[str, ...]]] = {
        "carts": ("cart_id",),
        "cart_lines": ("cart_id", "sku"),
    }

    # --- handlers ------------------------------------------------------------------------

    @handles(Cart.Opened)
    def _opened(self, tx: Writes, event: Cart.Opened) -> None:
        at = stamp(event.timestamp)
        tx.insert(
            "carts",
            {
                "cart_id": str(event.originator_id),
                "customer_id": event.customer_id,
                "status": "open",
                "order_id": None,
                "version": event.originator_version,
                "opened_at": at,
                "updated_at": at,
            },
        )

    @handles(Cart.ItemAdded)
    def _item_added(self, tx: Writes, event: Cart.ItemAdded) -> None:
        # Adding to a line re-captures its price, as the aggregate does.
        line = {"cart_id": str(event.originator_id), "sku": event.sku}
        price = cents(event.unit_price)
        tx.upsert(
            "cart_lines",
            {**line, "quantity": event.quantity, "unit_price_cents": price},
            set={"unit_price_cents": price},
            add={"quantity": event.quantity},
        )
        self._touch(tx, event)

    @handles(Cart.QuantityChanged)
    def _quantity_changed(self, tx: Writes, event: Cart.QuantityChanged) -> None:
        line = {"cart_id": str(event.originator_id), "sku": event.sku}
        tx.update("cart_lines", line, set={"quantity": event.quantity})
        self._touch(tx, event)

    @handles(Cart.ItemRemoved)
    def _item_removed(self, tx: Writes, event: Cart.ItemRemoved) -> None:
        tx.delete("cart_lines", {"cart_id": str(event.originator_id), "sku": event.sku})
        self._touch(tx, event)

    @handles(Cart.CheckedOut)
    def _checked_out(self, tx: Writes, event: Cart.CheckedOut) -> None:
        self._touch(tx, event, status="checked_out", order_id=str(event.order_id))

    def _touch(self, tx: Writes, event: Cart.Event, **columns: Any) -> None:
        tx.update(
            "carts",
            {"cart_id": str(event.originator_id)},
            set={
                **columns,
                "version": event.originator_version,
                "updated_at": stamp(event.timestamp),
            },
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
