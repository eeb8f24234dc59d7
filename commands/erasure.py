"""Erasing a customer's personal data (GDPR Art. 17): commands of the Shop.

The customer's personal fields are sealed with its data key (eventstore/personal.py);
an erasure destroys that key, then records ``Customer.Erased``. The key is destroyed
first, and the event is recorded only once no process can still hold the key, or a copy
of what it decrypted, in a cache (``KeyRing.wait_out_caches``): every event after it
reads as erased everywhere, and read models purge what they copied before it. A crash
in between leaves the key destroyed and no event; the erasure, asked again, records it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.utils import resolve_topic

from commands.outcome import Done
from domain.customer import AlreadyErased, Customer
from domain.errors import NotFound
from domain.personal import personal_data
from eventstore.personal import SEALED_KEY

if TYPE_CHECKING:
    from commands.service import Shop


def erase_customer(shop: Shop, customer_id: str, aggregate_ids: Iterable[UUID] = ()) -> Done:
    """Erase the customer's personal data and record ``Customer.Erased``, naming which
    events of ``aggregate_ids`` (its orders, as the read side knows them) still hold it
    in plain text (stored before encryption). A customer erased before, with no data
    stored since, is answered with that erasure (``replayed``); one the shop holds
    nothing of is NotFound."""
    with shop.turns.of(Customer.create_id(customer_id)):
        customer = shop.customer(customer_id)
        holds_data = shop.data_keys.has_key(customer_id)
        ids = sorted(set(aggregate_ids))
        plain = plain_personal_events(shop, ids)
        if customer is None:
            if not (holds_data or ids):
                raise NotFound(
                    f"Customer {customer_id} does not exist (no personal data is held)",
                    customer_id=customer_id,
                )
            customer = Customer.register(customer_id)
        try:
            customer.erase(plain, holds_data=holds_data)
        except AlreadyErased:
            return Done(customer, shop.head(), replayed=True)
        shop.data_keys.destroy(customer_id)
        shop.data_keys.wait_out_caches()
        shop.aggregates.forget(ids)
        return shop._save(customer)


def plain_personal_events(shop: Shop, aggregate_ids: Iterable[UUID]) -> list[str]:
    """The events of these aggregates (``<id>/<version>``) whose personal fields are
    stored in plain text: stored before encryption, or with it switched off."""
    found = []
    for aggregate_id in aggregate_ids:
        for stored in shop.recorder.select_events(aggregate_id):
            declared = personal_data(resolve_topic(stored.topic))
            if declared is None:
                continue
            state = shop.mapper.transcoder.decode(stored.state)
            if SEALED_KEY not in state and any(f in state for f in declared.fields):
                found.append(f"{aggregate_id}/{stored.originator_version}")
    return found


def customer(shop: Shop, customer_id: str) -> Customer | None:
    """The customer's record of erasures (None: never erased)."""
    try:
        return shop._get(Customer, Customer.create_id(customer_id), "")
    except NotFound:
        return None
