"""Catalogue: every product with its name, price and the units available to order."""

from __future__ import annotations

from typing import Any

from domain.errors import NotFound
from domain.product import Product
from domain.stock import Stock
from projections.base import ReadModel, cents, handles, money, stamp
from projections.pagination import Keyset
from projections.store import Tx


class Catalogue(ReadModel):
    name = "catalogue"
    tables = ("catalogue",)
    ddl = (
        "CREATE TABLE IF NOT EXISTS {catalogue} ("
        " product_id TEXT PRIMARY KEY, sku TEXT NOT NULL UNIQUE, stock_id TEXT NOT NULL UNIQUE,"
        " name TEXT NOT NULL, price_cents BIGINT NOT NULL, available BIGINT NOT NULL,"
        " version INTEGER NOT NULL, added_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    )

    # --- handlers ------------------------------------------------------------------------

    @handles(Product.Added)
    def _added(self, tx: Tx, event: Product.Added) -> None:
        at = stamp(event.timestamp)
        tx.execute(
            "INSERT INTO {catalogue} (product_id, sku, stock_id, name, price_cents, available,"
            " version, added_at, updated_at)"
            " VALUES (:id, :sku, :stock_id, :name, :price, 0, :version, :at, :at)",
            {
                "id": str(event.originator_id),
                "sku": event.sku,
                # Stock events name only their stock; its id follows from the SKU.
                "stock_id": str(Stock.create_id(event.sku)),
                "name": event.name,
                "price": cents(event.price),
                "version": event.originator_version,
                "at": at,
            },
        )

    @handles(Product.Renamed)
    def _renamed(self, tx: Tx, event: Product.Renamed) -> None:
        self._change(tx, event, "name = :value", event.name)

    @handles(Product.Repriced)
    def _repriced(self, tx: Tx, event: Product.Repriced) -> None:
        self._change(tx, event, "price_cents = :value", cents(event.price))

    def _change(self, tx: Tx, event: Product.Event, assignment: str, value: Any) -> None:
        tx.execute(
            f"UPDATE {{catalogue}} SET {assignment}, version = :version, updated_at = :at"
            " WHERE product_id = :id",
            {
                "value": value,
                "version": event.originator_version,
                "at": stamp(event.timestamp),
                "id": str(event.originator_id),
            },
        )

    @handles(Stock.Received)
    def _received(self, tx: Tx, event: Stock.Received) -> None:
        self._available(tx, event, event.quantity)

    @handles(Stock.Adjusted)
    def _adjusted(self, tx: Tx, event: Stock.Adjusted) -> None:
        self._available(tx, event, event.delta)

    @handles(Stock.Reserved)
    def _reserved(self, tx: Tx, event: Stock.Reserved) -> None:
        self._available(tx, event, -event.quantity)

    @handles(Stock.Released)
    def _released(self, tx: Tx, event: Stock.Released) -> None:
        self._available(tx, event, event.quantity)

    # Stock.Committed: reserved units leave on hand and reserved alike; available stays.

    def _available(self, tx: Tx, event: Stock.Event, delta: int) -> None:
        tx.execute(
            "UPDATE {catalogue} SET available = available + :delta WHERE stock_id = :id",
            {"delta": delta, "id": str(event.originator_id)},
        )

    # --- queries -------------------------------------------------------------------------

    def list_products(self, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """The catalogue by SKU: ``{"items": [product, ...], "next_cursor"}``."""
        keys = Keyset.parse("products", limit, cursor, 1)
        where, params = ("WHERE sku > :after", {"after": keys.after[0]}) if keys.after else ("", {})
        with self.reading() as tx:
            rows = tx.execute(
                f"SELECT * FROM {{catalogue}} {where} ORDER BY sku LIMIT :n",
                {**params, "n": keys.fetch},
            ).rows()
        return keys.page(rows, lambda row: [row["sku"]], _product)

    def get_product(self, sku: str) -> dict[str, Any]:
        """One product: sku, name, price, available units, version; NotFound if unknown."""
        with self.reading() as tx:
            row = tx.execute("SELECT * FROM {catalogue} WHERE sku = :sku", {"sku": sku}).row()
        if row is None:
            raise NotFound(f"Product {sku} does not exist")
        return _product(row)


def _product(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "sku": row["sku"],
        "name": row["name"],
        "price": money(row["price_cents"]),
        "available": int(row["available"]),
        "version": int(row["version"]),
        "added_at": row["added_at"],
        "updated_at": row["updated_at"],
    }
