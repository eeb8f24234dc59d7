"""The integration events webhooks deliver: the public contract, apart from the domain events.

THE SEAM: webhooks use only :func:`integration_events`, :data:`TYPES` and :data:`TOPICS`
of this module. When the shop's own integration-event contract (issue 17, items 2-3:
CloudEvents for NATS JetStream, with JSON Schemas) lands, this module is to re-export
that one instead, and webhooks deliver exactly what the stream carries.

Each is a CloudEvents 1.0 JSON object: ``id`` (the source event's, the same for every
delivery of it: receivers de-duplicate on it), ``source``, ``type``
(``eventshop.order.placed`` ...), ``subject`` (the order id), ``time``, ``sequence``
(the event's position in the log) and ``data``: what the type needs and no personal
data (an order's id, lines and total, never its address or e-mail).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import uuid5

from eventsourcing.utils import get_topic

from domain.base import NAMESPACE
from domain.order import Order

SOURCE = "urn:eventshop"
SPEC_VERSION = "1.0"
PREFIX = "eventshop."


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _placed(event: Order.Placed) -> dict[str, Any]:
    return {
        "order_id": str(event.originator_id),
        "total": _amount(event.total),
        "currency": event.currency,
        "lines": [{"sku": line["sku"], "quantity": line["quantity"]} for line in event.lines],
        "payment_due_at": event.payment_due_at.isoformat(),
    }


def _paid(event: Order.Paid) -> dict[str, Any]:
    return {"order_id": str(event.originator_id), "amount": _amount(event.amount)}


def _shipped(event: Order.Shipped) -> dict[str, Any]:
    return {
        "order_id": str(event.originator_id),
        "carrier": event.carrier,
        "tracking_number": event.tracking_number,
    }


def _delivered(event: Order.Delivered) -> dict[str, Any]:
    return {"order_id": str(event.originator_id)}


def _cancelled(event: Order.Cancelled) -> dict[str, Any]:
    # The refund owed (None: the order was not paid); the reason is free text, which may
    # hold personal data, and stays inside.
    return {"order_id": str(event.originator_id), "refund": _amount(event.refund)}


_MAPPINGS: dict[type, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    Order.Placed: ("order.placed", _placed),
    Order.Paid: ("order.paid", _paid),
    Order.Shipped: ("order.shipped", _shipped),
    Order.Delivered: ("order.delivered", _delivered),
    Order.Cancelled: ("order.cancelled", _cancelled),
}

TYPES: tuple[str, ...] = tuple(PREFIX + name for name, _ in _MAPPINGS.values())
"""Every integration event type, e.g. ``eventshop.order.placed``."""
TOPICS: tuple[str, ...] = tuple(get_topic(cls) for cls in _MAPPINGS)
"""The topics of the domain events that map to integration events (to read only those)."""
_BY_TOPIC = {get_topic(cls): mapping for cls, mapping in _MAPPINGS.items()}


def integration_events(domain_event: Any, position: int) -> list[dict[str, Any]]:
    """The integration events (CloudEvents dicts) a domain event at ``position`` of the
    log stands for; none for events that are not part of the contract."""
    mapping = _BY_TOPIC.get(get_topic(type(domain_event)))
    if mapping is None:
        return []
    name, data = mapping
    return [
        {
            "specversion": SPEC_VERSION,
            "id": str(
                uuid5(NAMESPACE, f"{domain_event.originator_id}:{domain_event.originator_version}")
            ),
            "source": SOURCE,
            "type": PREFIX + name,
            "subject": str(domain_event.originator_id),
            "time": domain_event.timestamp.isoformat(),
            "sequence": position,
            "datacontenttype": "application/json",
            "data": data(domain_event),
        }
    ]
