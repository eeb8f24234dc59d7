"""Sales: orders, units and revenue per day and per SKU; cancelled orders excluded.

A day is the UTC day the order was placed. Totals are kept pre-aggregated per day and
per (day, SKU); each order's own lines are kept too, so that a cancellation can take
exactly its share back out.
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

from domain.errors import InvalidValue
from domain.order import Order
from projections.engine.base import ReadModel, cents, handles, money, parse_day
from projections.engine.writes import Writes


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

    keys: ClassVar[dict[str, tuple[str, ...]]] = {
        "sales_orders": ("order_id",),
        "sales_lines": ("order_id", "sku"),
        "sales_days": ("day",),
        "sales_skus": ("day", "sku"),
    }

    # --- handlers ------------------------------------------------------------------------

    @handles(Order.Placed)
    def _placed(self, tx: Writes, event: Order.Placed) -> None:
        order_id = str(event.originator_id)
        day = event.timestamp.date().isoformat()
        units = sum(line["quantity"] for line in event.lines)
        amounts = {"units": units, "revenue_cents": cents(event.total)}
        tx.insert("sales_orders", {"order_id": order_id, "day": day, **amounts})
        order = {"orders": 1, **amounts}
        tx.upsert("sales_days", {"day": day, **order}, add=order)
        for line in event.lines:
            sku, quantity, revenue = line["sku"], line["quantity"], cents(line["subtotal"])
            tx.insert(
                "sales_lines",
                {
                    "order_id": order_id,
                    "sku": sku,
                    "day": day,
                    "quantity": quantity,
                    "revenue_cents": revenue,
                },
            )
            share = {"orders": 1, "units": quantity, "revenue_cents": revenue}
            tx.upsert("sales_skus", {"day": day, "sku": sku, **share}, add=share)

    @handles(Order.Cancelled)
    def _cancelled(self, tx: Writes, event: Order.Cancelled) -> None:
        # The order's own rows say what to take back out. These statements commute with
        # every other write of a batch, so they run after its rows are written, once for
        # all the orders the batch cancels.
        for statement in _TAKE_BACK:
            tx.defer_for(statement, str(event.originator_id))

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


_TAKE_BACK = (
    "UPDATE {sales_days} AS d SET orders = d.orders - o.orders, units = d.units - o.units,"
    " revenue_cents = d.revenue_cents - o.revenue_cents FROM (SELECT day, count(*) AS orders,"
    " sum(units) AS units, sum(revenue_cents) AS revenue_cents FROM {sales_orders}"
    " WHERE order_id IN ({values}) GROUP BY day) AS o WHERE d.day = o.day",
    # An order has one line per SKU: count(*) counts orders.
    "UPDATE {sales_skus} AS s SET orders = s.orders - l.orders, units = s.units - l.units,"
    " revenue_cents = s.revenue_cents - l.revenue_cents FROM (SELECT day, sku,"
    " count(*) AS orders, sum(quantity) AS units, sum(revenue_cents) AS revenue_cents"
    " FROM {sales_lines} WHERE order_id IN ({values}) GROUP BY day, sku) AS l"
    " WHERE s.day = l.day AND s.sku = l.sku",
    "DELETE FROM {sales_lines} WHERE order_id IN ({values})",
    "DELETE FROM {sales_orders} WHERE order_id IN ({values})",
)


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "orders": int(row["orders"]),
        "units": int(row["units"]),
        "revenue": money(row["revenue_cents"]),
    }
