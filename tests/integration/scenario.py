"""A fixed history (ids, times and amounts never change) and the integration events it
must give: the golden examples in each type's schema (``projections/integration/schemas``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.order import Order
from domain.stock import Stock

SKU = "MUG-1"
STOCK = Stock.create_id(SKU)
FIRST = UUID("6f1d3c9a-2b4e-4f7a-9c1d-0e5b8a7f3d21")
SECOND = UUID("a3c5e7f9-1b2d-4e6f-8a0c-2d4f6b8d0e1a")
CART = UUID("c0ffee00-0000-4000-8000-000000000001")
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def history() -> list[Any]:
    """Stock of ten mugs; an order of six (stock low), paid, shipped, delivered; an
    order of the last four (stock depleted), paid, then cancelled with a refund."""
    versions: dict[UUID, int] = {}
    minutes = iter(range(100))

    def made(cls: type, aggregate: UUID, **state: Any) -> Any:
        versions[aggregate] = versions.get(aggregate, 0) + 1
        extra = {
            "originator_topic": get_topic(Stock if cls.__qualname__.startswith("Stock") else Order)
        }
        return cls(
            originator_id=aggregate,
            originator_version=versions[aggregate],
            timestamp=T0 + timedelta(minutes=next(minutes)),
            **(extra if issubclass(cls, (Stock.Created, Order.Placed)) else {}),
            **state,
        )

    def placed(order: UUID, units: int) -> Any:
        price = Decimal("12.50")
        return made(
            Order.Placed,
            order,
            customer_id="alice",
            cart_id=CART,
            lines=[{"sku": SKU, "quantity": units, "unit_price": price, "subtotal": units * price}],
            total=units * price,
            shipping_address={
                "name": "Alice",
                "line1": "1 Main St",
                "city": "Berlin",
                "postal_code": "10115",
                "country": "DE",
            },
            email="alice@example.com",
            currency="EUR",
            payment_due_at=T0 + timedelta(minutes=30),
        )

    return [
        made(Stock.Created, STOCK, sku=SKU),
        made(Stock.Received, STOCK, quantity=10, note="first delivery"),
        placed(FIRST, 6),
        made(Stock.Reserved, STOCK, order_id=str(FIRST), quantity=6),
        made(Order.Paid, FIRST, amount=Decimal("75.00"), reference="PAY-1"),
        made(Stock.Committed, STOCK, order_id=str(FIRST), quantity=6),
        made(Order.Shipped, FIRST, carrier="DHL", tracking_number="00340434161234567890"),
        made(Order.Delivered, FIRST),
        placed(SECOND, 4),
        made(Stock.Reserved, STOCK, order_id=str(SECOND), quantity=4),
        made(Order.Paid, SECOND, amount=Decimal("50.00"), reference="PAY-2"),
        made(
            Order.Cancelled,
            SECOND,
            reason="Alice Example called to cancel",
            refund=Decimal("50.00"),
        ),
        made(Stock.Released, STOCK, order_id=str(SECOND), quantity=4),
    ]
