"""Catalogue: every product with its name, price and the units available to order."""

from __future__ import annotations

from typing import Any, ClassVar

from domain.errors import NotFound
from domain.product import Product
from domain.stock import Stock
from projections.engine.base import ReadModel, cents, handles, money, stamp
from projections.engine.pagination import Keyset
from projections.engine.writes import Writes


class Catalogue(ReadModel):
    name = "catalogue"
    tables = ("catalogue",)
    ddl = (
        "CREATE TABLE IF NOT EXISTS {catalogue} ("
        " product_id TEXT PRIMARY KEY, sku TEXT NOT NULL UNIQUE, stock_id TEXT NOT NULL UNIQUE,"
        " name TEXT NOT NULL, price_cents BIGINT NOT NULL, available BIGINT NOT NULL,"
        " version INTEGER NOT NULL, added_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    )

    keys: ClassVar[dict[str, tuple[str, ...]]] = {"catalogue": ("product_id",)}

    # --- handlers ------------------------------------------------------------------------

    @handles(Product.Added)
    def _added(self, tx: Writes, event: Product.Added) -> None:
        at = stamp(event.timestamp)
        tx.insert(
            "catalogue",
            {
                "product_id": str(event.originator_id),
                "sku": event.sku,
                # Stock events name only their stock; its id follows from the SKU.
                "stock_id": str(Stock.create_id(event.sku)),
                "name": event.name,
                "price_cents": cents(event.price),
                "available": 0,
                "version": event.originator_version,
                "added_at": at,
                "updated_at": at,
            },
        )

    @handles(Product.Renamed)
    def _renamed(self, tx: Writes, event: Product.Renamed) -> None:
        self._change(tx, event, name=event.name)

    @handles(Product.Repriced)
    def _repriced(self, tx: Writes, event: Product.Repriced) -> None:
        self._change(tx, event, price_cents=cents(event.price))

    def _change(self, tx: Writes, event: Product.Event, **columns: Any) -> None:
        tx.update(
            "catalogue",
            {"product_id": str(event.originator_id)},
            set={
                **columns,
                "version": event.originator_version,
                "updated_at": stamp(event.timestamp),
            },
        )

    @handles(Stock.Received)
    def _received(self, tx: Writes, event: Stock.Received) -> None:
        self._available(tx, event, event.quantity)

    @handles(Stock.Adjusted)
    def _adjusted(self, tx: Writes, event: Stock.Adjusted) -> None:
        self._available(tx, event, event.delta)

    @handles(Stock.Reserved)
    def _reserved(self, tx: Writes, event: Stock.Reserved) -> None:
        self._available(tx, event, -event.quantity)

    @handles(Stock.Released)
    def _released(self, tx: Writes, event: Stock.Released) -> None:
        self._available(tx, event, event.quantity)

    # Stock.Committed: reserved units leave on hand and reserved alike; available stays.

    def _available(self, tx: Writes, event: Stock.Event, delta: int) -> None:
        tx.update(
            "catalogue",
            {"stock_id": str(event.originator_id)},
            add={"available": delta},
            by=("stock_id",),
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
