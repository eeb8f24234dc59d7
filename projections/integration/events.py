"""Integration events: the public, versioned contract, distinct from the domain events.

Each is a CloudEvents 1.0 event in the JSON format: ``id`` the source event's id (its
aggregate's id and version, ``<uuid>/<version>``: unique, and the same each time it is
sent), ``source`` the shop, ``type`` ``eventshop.<name>``, ``subject`` the order id or
the SKU, ``time`` when the source event happened, ``sequence`` its position in the log
(20 digits: CloudEvents orders sequences as text), ``dataschema`` the versioned schema
of its ``data`` (one JSON Schema per type in ``schemas/``, served at
``GET /api/integration/schemas``). No personal data: order ids, amounts and SKUs, never
a customer, an address or an e-mail.

At most one integration event comes of one domain event, so the id is unique. The
stock types need to know the units available before and after a Stock event, and the
amounts of a payment or refund the order's currency: a :class:`Translator` keeps that
state (a SKU's available units; an open order's currency), which a publisher stores
with its position, so that after a restart it translates the same events the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from eventsourcing.utils import get_topic

from domain.order import Order
from domain.stock import Stock
from projections.engine.base import cents, money, stamp

SPEC_VERSION = "1.0"
TYPE_PREFIX = "eventshop."
DEFAULT_SOURCE = "/eventshop"
SCHEMA_VERSION = 1
"""The version of every type's data schema. A compatible change (a new optional field)
keeps it; a breaking one publishes a new version beside the old."""
TYPES = (
    "order.placed",
    "order.paid",
    "order.shipped",
    "order.delivered",
    "order.cancelled",
    "stock.low",
    "stock.depleted",
)
EVENT_TYPES = tuple(TYPE_PREFIX + name for name in TYPES)
"""Every CloudEvent ``type``, e.g. ``eventshop.order.placed`` (what a webhook subscribes to)."""


def dataschema(name: str) -> str:
    """The URI naming the schema of a type's data (each schema's ``$id``)."""
    return f"urn:eventshop:schema:{name}:{SCHEMA_VERSION}"


def sequence(position: int) -> str:
    """A log position as a CloudEvents ``sequence``: text that sorts as the number does."""
    return f"{position:020d}"


@dataclass(frozen=True)
class IntegrationEvent:
    """One integration event, before it is given a source."""

    name: str
    """Its type without the prefix, e.g. ``order.placed``."""
    id: str
    subject: str
    time: datetime
    position: int
    data: Mapping[str, Any]

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.name

    def cloudevent(self, source: str = DEFAULT_SOURCE) -> dict[str, Any]:
        """The CloudEvent, as the JSON object that is sent."""
        return {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": source,
            "type": self.type,
            "subject": self.subject,
            "time": stamp(self.time),
            "sequence": sequence(self.position),
            "datacontenttype": "application/json",
            "dataschema": dataschema(self.name),
            "data": dict(self.data),
        }

    def encode(self, source: str = DEFAULT_SOURCE) -> bytes:
        return json.dumps(self.cloudevent(source), separators=(",", ":")).encode()


@dataclass(frozen=True)
class Thresholds:
    """Below how many available units a SKU is low on stock (0: never low)."""

    default: int = 5
    per_sku: Mapping[str, int] = field(default_factory=dict)

    def of(self, sku: str) -> int:
        return self.per_sku.get(sku, self.default)


@dataclass
class StockLevel:
    sku: str
    available: int


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else money(cents(value))


class Translator:
    """Turns domain events into integration events, in log order, keeping the state that
    needs (``stocks``: stock id -> SKU and available units; ``orders``: order id -> its
    currency, while a payment or a refund may still come). ``changes()`` says which
    entries changed since it was last asked, for the caller to store."""

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        stocks: Mapping[str, StockLevel] | None = None,
        orders: Mapping[str, str] | None = None,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self.stocks = dict(stocks or {})
        self.orders = dict(orders or {})
        self._stocks_changed: set[str] = set()
        self._orders_changed: set[str] = set()

    def translate(self, position: int, event: Any) -> IntegrationEvent | None:
        """The integration event of the domain event at ``position`` (None for most)."""
        rule = _RULES.get(get_topic(type(event)))
        return None if rule is None else rule(self, position, event)

    def changes(self) -> tuple[dict[str, StockLevel | None], dict[str, str | None]]:
        """The stock levels and order currencies changed since the last call (None:
        forgotten)."""
        stocks = {key: self.stocks.get(key) for key in self._stocks_changed}
        orders = {key: self.orders.get(key) for key in self._orders_changed}
        self._stocks_changed.clear()
        self._orders_changed.clear()
        return stocks, orders

    # --- orders --------------------------------------------------------------------------

    def _placed(self, position: int, event: Order.Placed) -> IntegrationEvent:
        self._remember(event, event.currency)
        lines = [
            {
                "sku": line["sku"],
                "quantity": line["quantity"],
                "unit_price": money(cents(line["unit_price"])),
            }
            for line in event.lines
        ]
        return self._order(
            "order.placed",
            position,
            event,
            total=_amount(event.total),
            currency=event.currency,
            lines=lines,
            payment_due_at=stamp(event.payment_due_at),
        )

    def _paid(self, position: int, event: Order.Paid) -> IntegrationEvent:
        currency = self._currency(event)
        return self._order(
            "order.paid", position, event, amount=_amount(event.amount), currency=currency
        )

    def _shipped(self, position: int, event: Order.Shipped) -> IntegrationEvent:
        self._forget(event)  # no amount follows a shipment
        return self._order(
            "order.shipped",
            position,
            event,
            carrier=event.carrier,
            tracking_number=event.tracking_number,
        )

    def _delivered(self, position: int, event: Order.Delivered) -> IntegrationEvent:
        return self._order("order.delivered", position, event)

    def _cancelled(self, position: int, event: Order.Cancelled) -> IntegrationEvent:
        currency = self._currency(event)
        self._forget(event)
        # The reason is free text someone typed: it may name a person, so it stays inside.
        return self._order(
            "order.cancelled", position, event, refund=_amount(event.refund), currency=currency
        )

    def _order(self, name: str, position: int, event: Any, **data: Any) -> IntegrationEvent:
        order_id = str(event.originator_id)
        return IntegrationEvent(
            name,
            _event_id(event),
            order_id,
            event.timestamp,
            position,
            {"order_id": order_id, **data},
        )

    def _remember(self, event: Any, currency: str) -> None:
        key = str(event.originator_id)
        self.orders[key] = currency
        self._orders_changed.add(key)

    def _forget(self, event: Any) -> None:
        key = str(event.originator_id)
        if self.orders.pop(key, None) is not None:
            self._orders_changed.add(key)

    def _currency(self, event: Any) -> str:
        try:
            return self.orders[str(event.originator_id)]
        except KeyError:
            # Every order's Placed comes first in the log, and the state is stored with
            # the position: a missing one is a bug, not something to publish around.
            raise LookupError(f"no currency known for order {event.originator_id}") from None

    # --- stock ---------------------------------------------------------------------------

    def _stock_created(self, position: int, event: Stock.Created) -> None:
        key = str(event.originator_id)
        self.stocks[key] = StockLevel(event.sku, 0)
        self._stocks_changed.add(key)
        return None

    def _stock_moved(self, position: int, event: Any) -> IntegrationEvent | None:
        key = str(event.originator_id)
        level = self.stocks[key]
        before = level.available
        level.available += _AVAILABLE_DELTA[type(event)](event)
        self._stocks_changed.add(key)
        after = level.available
        threshold = self.thresholds.of(level.sku)
        data: dict[str, Any]
        if after <= 0 < before:
            name, data = "stock.depleted", {"sku": level.sku}
        elif after < threshold <= before:
            name, data = "stock.low", {"sku": level.sku, "available": after, "threshold": threshold}
        else:
            return None
        return IntegrationEvent(name, _event_id(event), level.sku, event.timestamp, position, data)


def _event_id(event: Any) -> str:
    return f"{event.originator_id}/{event.originator_version}"


_AVAILABLE_DELTA: dict[type, Callable[[Any], int]] = {
    Stock.Received: lambda e: e.quantity,
    Stock.Adjusted: lambda e: e.delta,
    Stock.Reserved: lambda e: -e.quantity,
    Stock.Released: lambda e: e.quantity,
    Stock.Committed: lambda e: 0,  # on hand and reserved both fall: available stays
}
_RULES: dict[str, Callable[[Translator, int, Any], IntegrationEvent | None]] = {
    get_topic(Order.Placed): Translator._placed,
    get_topic(Order.Paid): Translator._paid,
    get_topic(Order.Shipped): Translator._shipped,
    get_topic(Order.Delivered): Translator._delivered,
    get_topic(Order.Cancelled): Translator._cancelled,
    get_topic(Stock.Created): Translator._stock_created,
    **{get_topic(cls): Translator._stock_moved for cls in _AVAILABLE_DELTA},
}
TOPICS: tuple[str, ...] = tuple(_RULES)
"""The domain events a translator reads (every other event of the log only moves on)."""


# --- the schemas ------------------------------------------------------------------------


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """Every type's JSON Schema (of the whole CloudEvent), by CloudEvent type."""
    folder = resources.files(__package__).joinpath("schemas")
    return {
        TYPE_PREFIX + name: json.loads(folder.joinpath(f"{name}.json").read_text())
        for name in TYPES
    }
