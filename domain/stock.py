"""Stock: the units of one SKU on hand, and those reserved for orders.

Invariant: ``available = on_hand - reserved`` never goes below zero. A reservation
belongs to one order and ends exactly once: released (cancellation) or committed
(shipment, when its units leave the warehouse).
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import event

from domain.base import ShopAggregate, named_id
from domain.errors import InsufficientStock, InvalidValue, RuleBroken
from domain.values import MAX_QUANTITY, quantity, sku, text


class Stock(ShopAggregate):
    class Created(ShopAggregate.Created):
        sku: str

    class Received(ShopAggregate.Event):
        quantity: int
        note: str

    class Adjusted(ShopAggregate.Event):
        delta: int
        reason: str

    class Reserved(ShopAggregate.Event):
        order_id: str
        quantity: int

    class Released(ShopAggregate.Event):
        order_id: str
        quantity: int

    class Committed(ShopAggregate.Event):
        order_id: str
        quantity: int

    @staticmethod
    def create_id(sku: str) -> UUID:
        return named_id("stock", sku)

    @event(Created)
    def __init__(self, sku: str) -> None:
        self.sku = sku
        self.on_hand = 0
        # order id (str, so that snapshots stay plain JSON) -> units reserved for it
        self.reservations: dict[str, int] = {}

    @classmethod
    def open(cls, sku_: str) -> Stock:
        """The (empty) stock of a new product."""
        return cls(sku=sku(sku_))

    @property
    def reserved(self) -> int:
        return sum(self.reservations.values())

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def receive(self, units: int, note: str = "") -> None:
        """Goods received: on hand grows."""
        self._received(quantity(units), text(note, "note", required=False, multiline=True))

    @event(Received)
    def _received(self, quantity: int, note: str) -> None:
        self.on_hand += quantity

    def adjust(self, delta: int, reason: str) -> None:
        """A stock-count correction; on hand may not fall below what is reserved."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise InvalidValue("delta", "delta must be a whole number")
        if delta == 0 or abs(delta) > MAX_QUANTITY:
            raise InvalidValue("delta", f"delta must be non-zero and at most {MAX_QUANTITY} units")
        reason = text(reason, "reason", multiline=True)
        if self.on_hand + delta < self.reserved:
            raise RuleBroken(
                f"Adjusting {self.sku} by {delta} would leave {self.on_hand + delta} on hand,"
                f" below the {self.reserved} units reserved",
                sku=self.sku,
                on_hand=self.on_hand,
                reserved=self.reserved,
            )
        self._adjusted(delta, reason)

    @event(Adjusted)
    def _adjusted(self, delta: int, reason: str) -> None:
        self.on_hand += delta

    def shortage(self, units: int) -> dict[str, int | str] | None:
        """What is missing to reserve ``units``, or None if they are available."""
        if units <= self.available:
            return None
        return {"sku": self.sku, "requested": units, "available": self.available}

    def reserve(self, order_id: UUID, units: int) -> None:
        """Set ``units`` aside for an order (at checkout)."""
        key = str(order_id)
        if key in self.reservations:
            raise RuleBroken(f"Order {order_id} already holds a reservation of {self.sku}")
        if (short := self.shortage(quantity(units))) is not None:
            raise InsufficientStock([short])
        self._reserved(key, units)

    @event(Reserved)
    def _reserved(self, order_id: str, quantity: int) -> None:
        self.reservations[order_id] = quantity

    @staticmethod
    def reserve_all(order_id: UUID, wanted: dict[str, int], stocks: list[Stock]) -> None:
        """Reserve an order's units of every SKU, or none if any SKU is short.

        The error lists every short SKU, not just the first, so that the customer can
        fix the whole cart at once.
        """
        short = [s for stock in stocks if (s := stock.shortage(wanted[stock.sku])) is not None]
        if short:
            raise InsufficientStock(short)
        for stock in stocks:
            stock.reserve(order_id, wanted[stock.sku])

    def release(self, order_id: UUID) -> None:
        """Give an order's reserved units back (cancellation)."""
        self._released(str(order_id), self._reservation_of(order_id))

    @event(Released)
    def _released(self, order_id: str, quantity: int) -> None:
        del self.reservations[order_id]

    def commit(self, order_id: UUID) -> None:
        """An order's reserved units leave the warehouse (shipment)."""
        self._committed(str(order_id), self._reservation_of(order_id))

    @event(Committed)
    def _committed(self, order_id: str, quantity: int) -> None:
        del self.reservations[order_id]
        self.on_hand -= quantity

    def _reservation_of(self, order_id: UUID) -> int:
        try:
            return self.reservations[str(order_id)]
        except KeyError:
            raise RuleBroken(
                f"Order {order_id} holds no reservation of {self.sku}"
                " (it was never made, or was already released or shipped)"
            ) from None
