"""Stock levels: units on hand, reserved for orders, and available, per SKU."""

from __future__ import annotations

from typing import Any, ClassVar

from domain.errors import InvalidValue, NotFound
from domain.stock import Stock
from projections.engine.base import ReadModel, handles, stamp
from projections.engine.pagination import Keyset
from projections.engine.writes import Writes


class StockLevels(ReadModel):
    name = "stock"
    tables = ("stock_levels",)
    ddl = (
        "CREATE TABLE IF NOT EXISTS {stock_levels} ("
        " stock_id TEXT PRIMARY KEY, sku TEXT NOT NULL UNIQUE, on_hand BIGINT NOT NULL,"
        " reserved BIGINT NOT NULL, version INTEGER NOT NULL, updated_at TEXT NOT NULL)",
    )

    keys: ClassVar[dict[str, tuple[str, ...]]] = {"stock_levels": ("stock_id",)}

    # --- handlers ------------------------------------------------------------------------

    @handles(Stock.Created)
    def _created(self, tx: Writes, event: Stock.Created) -> None:
        tx.insert(
            "stock_levels",
            {
                "stock_id": str(event.originator_id),
                "sku": event.sku,
                "on_hand": 0,
                "reserved": 0,
                "version": event.originator_version,
                "updated_at": stamp(event.timestamp),
            },
        )

    @handles(Stock.Received)
    def _received(self, tx: Writes, event: Stock.Received) -> None:
        self._move(tx, event, on_hand=event.quantity)

    @handles(Stock.Adjusted)
    def _adjusted(self, tx: Writes, event: Stock.Adjusted) -> None:
        self._move(tx, event, on_hand=event.delta)

    @handles(Stock.Reserved)
    def _reserved(self, tx: Writes, event: Stock.Reserved) -> None:
        self._move(tx, event, reserved=event.quantity)

    @handles(Stock.Released)
    def _released(self, tx: Writes, event: Stock.Released) -> None:
        self._move(tx, event, reserved=-event.quantity)

    @handles(Stock.Committed)
    def _committed(self, tx: Writes, event: Stock.Committed) -> None:
        self._move(tx, event, on_hand=-event.quantity, reserved=-event.quantity)

    def _move(self, tx: Writes, event: Stock.Event, on_hand: int = 0, reserved: int = 0) -> None:
        tx.update(
            "stock_levels",
            {"stock_id": str(event.originator_id)},
            set={"version": event.originator_version, "updated_at": stamp(event.timestamp)},
            add={"on_hand": on_hand, "reserved": reserved},
        )

    # --- queries -------------------------------------------------------------------------

    def list_stock(
        self, below: int | None = None, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """Stock levels by SKU; with ``below``, only those with fewer units available."""
        keys = Keyset.parse("stock", limit, cursor, 1)
        clauses, params = [], {"n": keys.fetch}
        if below is not None:
            if isinstance(below, bool) or not isinstance(below, int):
                raise InvalidValue("below", "below must be a whole number")
            clauses.append("on_hand - reserved < :below")
            params["below"] = below
        if keys.after:
            clauses.append("sku > :after")
            params["after"] = keys.after[0]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.reading() as tx:
            rows = tx.execute(
                f"SELECT * FROM {{stock_levels}} {where} ORDER BY sku LIMIT :n", params
            ).rows()
        return keys.page(rows, lambda row: [row["sku"]], _level)

    def get_stock(self, sku: str) -> dict[str, Any]:
        """One SKU's on hand, reserved and available units; NotFound if unknown."""
        with self.reading() as tx:
            row = tx.execute("SELECT * FROM {stock_levels} WHERE sku = :sku", {"sku": sku}).row()
        if row is None:
            raise NotFound(f"Product {sku} does not exist")
        return _level(row)


def _level(row: dict[str, Any]) -> dict[str, Any]:
    on_hand, reserved = int(row["on_hand"]), int(row["reserved"])
    return {
        "sku": row["sku"],
        "on_hand": on_hand,
        "reserved": reserved,
        "available": on_hand - reserved,
        "version": int(row["version"]),
        "updated_at": row["updated_at"],
    }
