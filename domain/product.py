"""Product: an entry of the catalogue, keyed by SKU, with a name and a price.

The price is counted in the product's currency, fixed when it is added (``Added``
carries it since v2); a repricing keeps it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import ShopAggregate, named_id
from domain.errors import RuleBroken
from domain.values import V1_CURRENCY, currency_code, money, sku, text


class Product(ShopAggregate):
    class Added(ShopAggregate.Created):
        # v2 names the currency the price is counted in; v1 did not.
        class_version = 2

        sku: str
        name: str
        price: Decimal
        currency: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """A v1 price was in euros, the only currency the shop had before v2."""
            state["currency"] = V1_CURRENCY

    class Renamed(ShopAggregate.Event):
        name: str

    class Repriced(ShopAggregate.Event):
        price: Decimal

    @staticmethod
    def create_id(sku: str) -> UUID:
        return named_id("product", sku)

    @classmethod
    def add(cls, sku_: str, name: str, price: Decimal | str, *, currency: str) -> Product:
        """Add a product priced in ``currency`` to the catalogue; the values are checked first."""
        return cls(
            sku=sku(sku_),
            name=text(name, "name"),
            price=money(price, "price"),
            currency=currency_code(currency),
        )

    @event(Added)
    def __init__(self, sku: str, name: str, price: Decimal, currency: str) -> None:
        self.sku = sku
        self.name = name
        self.price = price
        self.currency = currency

    def price_in(self, currency: str) -> Decimal:
        """The price, for a sale in ``currency``; refused if the product is priced otherwise.

        Guards a cart against capturing, say, a euro price as dollars after the shop's
        currency was reconfigured.
        """
        if currency != self.currency:
            raise RuleBroken(
                f"Product {self.sku} is priced in {self.currency}, not in {currency}",
                sku=self.sku,
                currency=self.currency,
            )
        return self.price

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
