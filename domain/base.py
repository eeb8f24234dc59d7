"""What every eventshop aggregate and event shares."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import StaleVersion

NAMESPACE = uuid5(NAMESPACE_URL, "https://eventshop.example/")
NO_VERSION = 0
"""A version no aggregate ever has (the first is 1): what a precondition that can never
hold names, such as an HTTP If-Match of weak entity tags only."""


def named_id(kind: str, key: str) -> UUID:
    """A deterministic id, so that e.g. the Stock of a SKU is found without a lookup."""
    return uuid5(NAMESPACE, f"{kind}:{key}")


class ShopAggregate(Aggregate):
    """An eventsourcing aggregate whose events all carry ``class_version``."""

    class Event(Aggregate.Event):
        # Stored with every event; raise it and add ``upcast_v1_v2`` when the shape changes.
        class_version = 1

    class Created(Event, Aggregate.Created):
        pass

    def check_version(self, expected: int | None) -> None:
        """Refuse to act when the client saw another version (HTTP If-Match)."""
        if expected is not None and expected != self.version:
            raise StaleVersion(expected, self.version)
