"""Crypto-shredding on the real stores: after a customer's erasure no table, export,
history or replay holds its e-mail or address in any encoding; another customer's data
is intact; verify passes against a receipt signed before; rebuild equals live."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from commands.service import Shop
from domain.customer import Customer
from domain.errors import NotFound
from domain.order import ERASED_ADDRESS
from domain.personal import ERASED
from domain.values import Address
from eventshop import bootstrap
from eventshop.settings import Settings
from eventstore.causes import caused_by
from projections import ReadSide
from projections.audit.auditor import Auditor
from tests.audit.conftest import KEYS, SIGNER
from tests.conftest import settings_for
from tests.personal.support import (
    ALICE_ADDRESS,
    ALICE_EMAIL,
    BOB_ADDRESS,
    BOB_EMAIL,
    alice_needles,
    text_traces,
    traces,
)
from tests.projections.support import dumps, rebuilt


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_reused_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def settings(url: str) -> Settings:
    # An erasure waits out every process's key cache: short here.
    return settings_for(url, personal_key_cache_seconds=0.05)


@pytest.fixture
def opened(settings: Settings) -> Iterator[tuple[Shop, ReadSide, Auditor]]:
    shop = bootstrap.open_shop(settings, POSTGRES_POOL_SIZE="2")
    read_side = bootstrap.open_read_side(settings, shop)
    auditor = bootstrap.open_auditor(shop)
    try:
        yield shop, read_side, auditor
    finally:
        read_side.close()
        shop.close()


def buy(shop: Shop, customer: str, address: Address, email: str) -> UUID:
    with caused_by(customer, "customer"):
        cart = shop.open_cart(customer).aggregate.id
        shop.add_to_cart(cart, "MUG-1", 1, owner=customer)
        return UUID(str(shop.check_out(cart, address, email, owner=customer).aggregate.id))


def history(shop: Shop) -> tuple[UUID, UUID]:
    shop.add_product("MUG-1", "Mug", "12.50")
    shop.receive_stock("MUG-1", 10)
    alice = buy(shop, "alice", ALICE_ADDRESS, ALICE_EMAIL)
    bob = buy(shop, "bob", BOB_ADDRESS, BOB_EMAIL)
    shop.pay(alice, "12.50", "PAY-1")
    return alice, bob


def caught_up(shop: Shop, read_side: ReadSide) -> None:
    read_side.start()
    assert read_side.wait_for(None, shop.head(), timeout=30)


def test_erasure_leaves_no_trace_of_the_customer_and_keeps_the_log_verifiable(
    url: str, settings: Settings, opened: tuple[Shop, ReadSide, Auditor]
) -> None:
    shop, read_side, auditor = opened
    alice, bob = history(shop)
    receipt = auditor.issue_receipt(SIGNER)
    assert receipt is not None
    caught_up(shop, read_side)
    # Before: sealed in the log, readable through every reader.
    assert traces(url, [ALICE_EMAIL]) == [("orders", "email", ALICE_EMAIL)], (
        "only the read model holds it in clear"
    )
    assert read_side.orders.get_order(alice)["email"] == ALICE_EMAIL
    assert text_traces("".join(auditor.export()), [ALICE_EMAIL]) == [ALICE_EMAIL]
    assert shop.plain_personal_events([alice, bob]) == []

    done = shop.erase_customer("alice", [alice])
    assert not done.replayed and isinstance(done.aggregate, Customer)
    assert done.aggregate.still_plain == []
    assert read_side.wait_for(None, shop.head(), timeout=30)

    assert traces(url, alice_needles()) == []
    export = "".join(auditor.export())
    assert text_traces(export, alice_needles()) == []
    for item in auditor.history(alice):
        assert text_traces(json.dumps(item, default=str), alice_needles()) == []
    for version in (1, 2):
        state = auditor.state(alice, version=version)
        assert state["state"]["email"] == ERASED
        assert state["state"]["shipping_address"] == ERASED_ADDRESS
    order = read_side.orders.get_order(alice)
    assert (order["email"], order["shipping_address"]) == (ERASED, ERASED_ADDRESS)
    # Another customer's data is intact.
    assert read_side.orders.get_order(bob)["email"] == BOB_EMAIL
    assert auditor.state(bob)["state"]["shipping_address"] == BOB_ADDRESS.as_dict()
    assert text_traces(export, [BOB_EMAIL]) == [BOB_EMAIL]
    # The log verifies against the receipt signed before the erasure, and after it.
    result = auditor.verify(KEYS, receipts=[receipt])
    assert result.status in ("verified", "unanchored"), result.detail
    assert result.verified_upto == receipt.position
    assert auditor.issue_receipt(SIGNER) is not None
    assert auditor.verify(KEYS).ok
    # Rebuilt from the log now (Alice's key gone), the read models equal the live ones.
    assert dumps(read_side) == rebuilt(shop, url)


def test_no_process_serves_erased_data_once_the_erasure_has_answered(
    settings: Settings, opened: tuple[Shop, ReadSide, Auditor]
) -> None:
    """Another process held the customer's key and its order in memory: once the erasure
    has answered, it reads and answers the order as erased (module doc of
    eventstore/personal.py: the erasure waits out every process's caches)."""
    shop, _, _ = opened
    alice, _ = history(shop)
    other = bootstrap.open_shop(settings, POSTGRES_POOL_SIZE="1")
    try:
        assert other.order(alice).email == ALICE_EMAIL  # key and order cached there
        shop.erase_customer("alice", [alice])
        assert other.order(alice).shipping_address == ERASED_ADDRESS
        shipped = other.ship(alice, "DHL", "T-1").aggregate
        assert (shipped.email, shipped.shipping_address) == (ERASED, ERASED_ADDRESS)
    finally:
        other.close()
    assert shop.order(alice).email == ERASED  # the erasing process forgot its copy at once
    fresh = bootstrap.open_shop(settings, POSTGRES_POOL_SIZE="1")
    try:
        assert fresh.order(alice).email == ERASED
    finally:
        fresh.close()


def test_erasing_again_with_nothing_new_records_nothing(
    opened: tuple[Shop, ReadSide, Auditor],
) -> None:
    shop, _, _ = opened
    alice, _ = history(shop)
    first = shop.erase_customer("alice", [alice])
    head = shop.head()
    again = shop.erase_customer("alice", [alice])
    assert again.replayed and again.aggregate.erasures == 1
    assert shop.head() == head
    # A later order is sealed with a new key, and erased by the next erasure.
    later = buy(shop, "alice", ALICE_ADDRESS, ALICE_EMAIL)
    assert shop.order(later).email == ALICE_EMAIL
    third = shop.erase_customer("alice", [alice, later])
    assert not third.replayed and third.aggregate.erasures == 2
    assert first.aggregate.id == third.aggregate.id


def test_an_unknown_customer_cannot_be_erased(opened: tuple[Shop, ReadSide, Auditor]) -> None:
    shop, _, _ = opened
    head = shop.head()
    with pytest.raises(NotFound, match="nobody"):
        shop.erase_customer("nobody")
    assert shop.head() == head


def test_events_stored_in_plain_text_are_listed(
    settings: Settings, opened: tuple[Shop, ReadSide, Auditor]
) -> None:
    """Events written before encryption (here: with it switched off) keep their text:
    the erasure names them."""
    shop, _, _ = opened
    shop.add_product("MUG-1", "Mug", "12.50")
    shop.receive_stock("MUG-1", 10)
    plain_shop = bootstrap.open_shop(
        settings.model_copy(update={"personal_data_encryption": False}), POSTGRES_POOL_SIZE="1"
    )
    try:
        old = buy(plain_shop, "alice", ALICE_ADDRESS, ALICE_EMAIL)
    finally:
        plain_shop.close()
    new = buy(shop, "alice", ALICE_ADDRESS, ALICE_EMAIL)
    done = shop.erase_customer("alice", [old, new])
    assert done.aggregate.still_plain == [f"{old}/1"]
    assert shop.order(old).email == ALICE_EMAIL  # never rewritten
    assert shop.order(new).email == ERASED


def _stored_state(shop: Shop, order_id: UUID) -> dict[str, Any]:
    stored = shop.recorder.select_events(order_id, limit=1)[0]
    return json.loads(stored.state)


def test_sealed_fields_are_bound_to_their_event(opened: tuple[Shop, ReadSide, Auditor]) -> None:
    shop, _, _ = opened
    alice, _bob = history(shop)
    state = _stored_state(shop, alice)
    assert "email" not in state and "shipping_address" not in state
    assert set(state["__sealed__"]) == {"key", "data"}
    assert state["customer_id"] == "alice"  # the rest stays readable
