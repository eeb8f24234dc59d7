"""What every eventshop aggregate and event shares."""

from __future__ import annotations

from functools import lru_cache
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import StaleVersion

NAMESPACE = uuid5(NAMESPACE_URL, "https://eventshop.example/")
Expected = int | frozenset[int] | None
"""The version(s) a command may act on (HTTP If-Match): one, any of several (none: the
command can never act), or None for whatever is current."""


@lru_cache(maxsize=65_536)  # asked on every command on a SKU; uuid5 hashes each time
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

    def check_version(self, expected: Expected) -> None:
        """Refuse to act when the client saw another version (HTTP If-Match)."""
        if expected is None:
            return
        if self.version not in (expected if isinstance(expected, frozenset) else (expected,)):
            raise StaleVersion(expected, self.version)
