"""Cart: a customer's basket of lines (SKU, quantity, unit price) until checkout.

Rules: only an open cart changes; a line's quantity is a positive whole number of at
most MAX_QUANTITY units; a cart holds at most MAX_LINES lines; the unit price is
captured from the catalogue when units are added, so a later repricing does not
change what the customer was shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import event

from domain.base import ShopAggregate
from domain.errors import InvalidValue, NotFound, RuleBroken
from domain.values import MAX_QUANTITY, money, quantity, sku, text

MAX_LINES = 100


@dataclass
class CartLine:
    quantity: int
    unit_price: Decimal

    @property
    def subtotal(self) -> Decimal:
        return self.quantity * self.unit_price


class Cart(ShopAggregate):
    class Opened(ShopAggregate.Created):
        customer_id: str

    class ItemAdded(ShopAggregate.Event):
        sku: str
        quantity: int
        unit_price: Decimal

    class QuantityChanged(ShopAggregate.Event):
        sku: str
        quantity: int

    class ItemRemoved(ShopAggregate.Event):
        sku: str

    class CheckedOut(ShopAggregate.Event):
        order_id: UUID

    @event(Opened)
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.lines: dict[str, CartLine] = {}
        self.order_id: UUID | None = None

    @classmethod
    def open(cls, customer_id: str) -> Cart:
        return cls(customer_id=text(customer_id, "customer_id", max_length=100))

    @property
    def is_open(self) -> bool:
        return self.order_id is None

    @property
    def status(self) -> str:
        return "open" if self.is_open else "checked_out"

    @property
    def total(self) -> Decimal:
        return sum((line.subtotal for line in self.lines.values()), Decimal("0.00"))

    def add_item(self, sku_: str, units: int, unit_price: Decimal) -> None:
        """Add units of a product at its current catalogue price.

        Adding to an existing line re-captures the price for the whole line: the
        customer is always charged what the catalogue said at the last addition.
        """
        self._require_open()
        sku_, units = sku(sku_), quantity(units)
        unit_price = money(unit_price, "unit_price")
        line = self.lines.get(sku_)
        if line is None and len(self.lines) >= MAX_LINES:
            raise RuleBroken(f"A cart holds at most {MAX_LINES} lines")
        if line is not None and line.quantity + units > MAX_QUANTITY:
            raise InvalidValue(
                "quantity",
                f"{sku_} would reach {line.quantity + units} units; a line holds at most"
                f" {MAX_QUANTITY}",
            )
        self._item_added(sku_, units, unit_price)

    @event(ItemAdded)
    def _item_added(self, sku: str, quantity: int, unit_price: Decimal) -> None:
        line = self.lines.get(sku)
        held = line.quantity if line else 0
        self.lines[sku] = CartLine(held + quantity, unit_price)

    def set_quantity(self, sku_: str, units: int) -> None:
        """Set a line's quantity; zero removes the line."""
        self._require_open()
        units = quantity(units, allow_zero=True)
        line = self._line(sku_)
        if units == 0:
            self._item_removed(sku_)
        elif units != line.quantity:
            self._quantity_changed(sku_, units)

    @event(QuantityChanged)
    def _quantity_changed(self, sku: str, quantity: int) -> None:
        self.lines[sku].quantity = quantity

    def remove_item(self, sku_: str) -> None:
        self._require_open()
        self._line(sku_)
        self._item_removed(sku_)

    @event(ItemRemoved)
    def _item_removed(self, sku: str) -> None:
        del self.lines[sku]

    def check_out(self, order_id: UUID) -> None:
        """Close the cart for good; its lines become the order ``order_id``."""
        self._require_open()
        if not self.lines:
            raise RuleBroken("An empty cart cannot be checked out", cart_id=str(self.id))
        self._checked_out(order_id)

    @event(CheckedOut)
    def _checked_out(self, order_id: UUID) -> None:
        self.order_id = order_id

    def _require_open(self) -> None:
        if not self.is_open:
            raise RuleBroken(
                f"Cart {self.id} is checked out (order {self.order_id}) and can no longer change",
                cart_id=str(self.id),
                status=self.status,
            )

    def _line(self, sku_: str) -> CartLine:
        try:
            return self.lines[sku_]
        except KeyError:
            raise NotFound(f"Cart {self.id} has no line for SKU {sku_}") from None
