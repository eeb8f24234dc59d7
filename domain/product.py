"""Product: an entry of the catalogue, keyed by SKU, with a name and a price."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import event

from domain.base import ShopAggregate, named_id
from domain.values import money, sku, text


class Product(ShopAggregate):
    class Added(ShopAggregate.Created):
        sku: str
        name: str
        price: Decimal

    class Renamed(ShopAggregate.Event):
        name: str

    class Repriced(ShopAggregate.Event):
        price: Decimal

    @staticmethod
    def create_id(sku: str) -> UUID:
        return named_id("product", sku)

    @classmethod
    def add(cls, sku_: str, name: str, price: Decimal | str) -> Product:
        """Add a product to the catalogue; the values are checked first."""
        return cls(sku=sku(sku_), name=text(name, "name"), price=money(price, "price"))

    @event(Added)
    def __init__(self, sku: str, name: str, price: Decimal) -> None:
        self.sku = sku
        self.name = name
        self.price = price

    def change(self, name: str | None = None, price: Decimal | str | None = None) -> None:
        """Rename and/or reprice; an unchanged value records nothing."""
        # Check both values before recording either, so that a bad price leaves no rename.
        name = None if name is None else text(name, "name")
        price = None if price is None else money(price, "price")
        if name is not None and name != self.name:
            self._rename(name)
        if price is not None and price != self.price:
            self._reprice(price)

    @event(Renamed)
    def _rename(self, name: str) -> None:
        self.name = name

    @event(Repriced)
    def _reprice(self, price: Decimal) -> None:
        self.price = price
