"""Customer: a data subject's standing, so far only the erasures of its personal data.

Customers are not registered by the shop (a token's subject is the customer id); this
aggregate exists once a customer's personal data is first erased. It holds the erasures
because an erasure is a fact about the customer, not about any one of its orders, and a
customer may be erased again after ordering anew: the aggregate's version decides
between two admins erasing at once, and it knows whether there is anything left to erase.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import event

from domain.base import ShopAggregate, named_id
from domain.errors import RuleBroken


class AlreadyErased(RuleBroken):
    """The customer's personal data was erased, and none was stored since."""

    title = "Already erased"


class Customer(ShopAggregate):
    class Registered(ShopAggregate.Created):
        customer_id: str

    class Erased(ShopAggregate.Event):
        """The customer's data key was destroyed: its encrypted personal fields read as
        erased from now on. ``still_plain`` names the customer's events stored before
        encryption (``<aggregate id>/<version>``), whose personal fields stay readable."""

        customer_id: str
        still_plain: list[str]

    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return named_id("customer", customer_id)

    @event(Registered)
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.erasures = 0
        self.still_plain: list[str] = []

    @classmethod
    def register(cls, customer_id: str) -> Customer:
        return cls(customer_id=customer_id)

    def erase(self, still_plain: list[str], *, holds_data: bool) -> None:
        """Record an erasure; ``holds_data``: whether personal data of the customer was
        stored since the last one (a customer erased and silent since has nothing left)."""
        if self.erasures and not holds_data:
            raise AlreadyErased(
                f"Customer {self.customer_id}'s personal data is already erased",
                customer_id=self.customer_id,
            )
        self._erased(self.customer_id, sorted(still_plain))

    @event(Erased)
    def _erased(self, customer_id: str, still_plain: list[str]) -> None:
        self.erasures += 1
        self.still_plain = still_plain
