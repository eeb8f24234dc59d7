"""Sales: orders, units and revenue per day and per SKU; cancelled orders excluded.

A day is the UTC day the order was placed. Totals are kept pre-aggregated per day and
per (day, SKU); each order's own lines are kept too, so that a cancellation can take
exactly its share back out.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from domain.errors import InvalidValue
from domain.order import Order
from projections.base import ReadModel, cents, handles, money, parse_day
from projections.store import Tx


class Sales(ReadModel):
    name = "sales"
    tables = ("sales_orders", "sales_lines", "sales_days", "sales_skus")
    ddl = (
        "CREATE TABLE IF NOT EXISTS {sales_orders} ("
        " order_id TEXT PRIMARY KEY, day TEXT NOT NULL, units BIGINT NOT NULL,"
        " revenue_cents BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {sales_lines} ("
        " order_id TEXT NOT NULL, sku TEXT NOT NULL, day TEXT NOT NULL,"
        " quantity BIGINT NOT NULL, revenue_cents BIGINT NOT NULL, PRIMARY KEY (order_id, sku))",
        "CREATE TABLE IF NOT EXISTS {sales_days} ("
        " day TEXT PRIMARY KEY, orders BIGINT NOT NULL, units BIGINT NOT NULL,"
        " revenue_cents BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {sales_skus} ("
        " day TEXT NOT NULL, sku TEXT NOT NULL, orders BIGINT NOT NULL, units BIGINT NOT NULL,"
        " revenue_cents BIGINT NOT NULL, PRIMARY KEY (day, sku))",
    )

    # --- handlers ------------------------------------------------------------------------

    @handles(Order.Placed)
    def _placed(self, tx: Tx, event: Order.Placed) -> None:
        order_id = str(event.originator_id)
        day = event.timestamp.date().isoformat()
        lines = [
            {
                "id": order_id,
                "day": day,
                "sku": line["sku"],
                "quantity": line["quantity"],
                "revenue": cents(line["subtotal"]),
            }
            for line in event.lines
        ]
        order = {
            "id": order_id,
            "day": day,
            "units": sum(line["quantity"] for line in lines),
            "revenue": cents(event.total),
        }
        tx.execute(
            "INSERT INTO {sales_orders} (order_id, day, units, revenue_cents)"
            " VALUES (:id, :day, :units, :revenue)",
            order,
        )
        tx.executemany(
            "INSERT INTO {sales_lines} (order_id, sku, day, quantity, revenue_cents)"
            " VALUES (:id, :sku, :day, :quantity, :revenue)",
            lines,
        )
        tx.execute(
            "INSERT INTO {sales_days} AS d (day, orders, units, revenue_cents)"
            " VALUES (:day, 1, :units, :revenue) ON CONFLICT (day) DO UPDATE SET"
            " orders = d.orders + 1, units = d.units + excluded.units,"
            " revenue_cents = d.revenue_cents + excluded.revenue_cents",
            order,
        )
        tx.executemany(
            "INSERT INTO {sales_skus} AS s (day, sku, orders, units, revenue_cents)"
            " VALUES (:day, :sku, 1, :quantity, :revenue) ON CONFLICT (day, sku) DO UPDATE SET"
            " orders = s.orders + 1, units = s.units + excluded.units,"
            " revenue_cents = s.revenue_cents + excluded.revenue_cents",
            lines,
        )

    @handles(Order.Cancelled)
    def _cancelled(self, tx: Tx, event: Order.Cancelled) -> None:
        params = {"id": str(event.originator_id)}
        tx.execute(
            "UPDATE {sales_days} AS d SET orders = d.orders - 1, units = d.units - o.units,"
            " revenue_cents = d.revenue_cents - o.revenue_cents FROM {sales_orders} AS o"
            " WHERE o.order_id = :id AND d.day = o.day",
            params,
        )
        tx.execute(
            "UPDATE {sales_skus} AS s SET orders = s.orders - 1, units = s.units - l.quantity,"
            " revenue_cents = s.revenue_cents - l.revenue_cents FROM {sales_lines} AS l"
            " WHERE l.order_id = :id AND s.day = l.day AND s.sku = l.sku",
            params,
        )
        tx.execute("DELETE FROM {sales_lines} WHERE order_id = :id", params)
        tx.execute("DELETE FROM {sales_orders} WHERE order_id = :id", params)

    # --- queries -------------------------------------------------------------------------

    def sales_report(
        self, day_from: date | str | None = None, day_to: date | str | None = None
    ) -> dict[str, Any]:
        """Per day (inclusive bounds) and per SKU within each day, plus totals.

        ``{"from", "to", "days": [{"day", "orders", "units", "revenue", "skus": [...]}],
        "skus": [per SKU over the range], "totals": {...}}``; days without sales are left out.
        """
        low, high = parse_day(day_from, "from"), parse_day(day_to, "to")
        if low and high and low > high:
            raise InvalidValue("from", "from must not be after to")
        clauses, params = ["orders > 0"], {}
        if low:
            clauses.append("day >= :low")
            params["low"] = low
        if high:
            clauses.append("day <= :high")
            params["high"] = high
        where = " AND ".join(clauses)
        with self.reading() as tx:
            days = tx.execute(
                f"SELECT * FROM {{sales_days}} WHERE {where} ORDER BY day", params
            ).rows()
            skus = tx.execute(
                f"SELECT * FROM {{sales_skus}} WHERE {where} ORDER BY day, sku", params
            ).rows()
        by_day: dict[str, list[dict[str, Any]]] = {}
        overall: dict[str, dict[str, int]] = {}
        for row in skus:
            by_day.setdefault(row["day"], []).append({"sku": row["sku"], **_figures(row)})
            total = overall.setdefault(row["sku"], {"orders": 0, "units": 0, "revenue_cents": 0})
            for key in total:
                total[key] += int(row[key])
        return {
            "from": low,
            "to": high,
            "days": [
                {"day": d["day"], **_figures(d), "skus": by_day.get(d["day"], [])} for d in days
            ],
            "skus": [{"sku": sku, **_figures(figures)} for sku, figures in sorted(overall.items())],
            "totals": _figures(
                {
                    key: sum(int(d[key]) for d in days)
                    for key in ("orders", "units", "revenue_cents")
                }
            ),
        }


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "orders": int(row["orders"]),
        "units": int(row["units"]),
        "revenue": money(row["revenue_cents"]),
    }
