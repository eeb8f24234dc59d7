"""One contract, two channels (issue 17): for the same log, a webhook receiver gets the
very CloudEvents a consumer of the JetStream stream gets, each valid against its JSON
Schema. On SQLite and the real NATS server (see ``tests/integration/test_jetstream.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

from eventshop import bootstrap
from eventshop.webhooks import open_webhooks
from projections.integration.events import EVENT_TYPES
from projections.integration.jetstream import Target
from projections.webhooks import Webhooks
from tests.conftest import open_shop, settings_for
from tests.integration.test_jetstream import consumed, publishing, target  # noqa: F401
from tests.projections.support import World
from tests.webhooks.conftest import FAST, Receiver, events


def deliver(webhooks: Webhooks, subscription_id: str) -> None:
    """What a deliverer's thread does, here and now: every event up to the head."""
    while webhooks.deliverer.deliver(subscription_id) >= webhooks.deliverer.policy.batch:
        pass


def test_a_webhook_receiver_gets_what_a_stream_consumer_gets(
    sqlite_url: str,
    tmp_path: Path,
    receiver: Receiver,
    target: Target,  # noqa: F811 (the fixture imported above)
) -> None:
    """The subscription is made mid-history: its translator's state is derived from the
    log (a payment of an order placed before it has its currency); the deliverer is then
    replaced by a new one (another process), which resumes from the state stored with the
    position (stock depleted, a refund's currency)."""
    settings = settings_for(sqlite_url, var_dir=tmp_path, event_source=target.source, **FAST)
    shop = open_shop(sqlite_url)
    read_side = bootstrap.open_read_side(settings, shop)
    webhooks = open_webhooks(settings, read_side)
    try:
        world = World(shop)
        world.add_product("A-1", "2.50")
        world.receive("A-1", 8)
        world.buy("ann", [("A-1", 2)])  # 6 left
        subscription, secret = webhooks.subscribe(receiver.url, EVENT_TYPES)
        world.buy("bob", [("A-1", 2)])  # 4 left: low
        world.pay(0)
        deliver(webhooks, subscription.id)
        webhooks.close()

        webhooks = open_webhooks(settings, read_side)
        world.buy("cy", [("A-1", 4)])  # none left
        world.pay(2)
        world.cancel(2)
        world.ship(0)
        world.deliver(0)
        deliver(webhooks, subscription.id)

        with publishing(sqlite_url, target) as publisher:
            publisher.start()
            assert publisher.wait_for(shop.head())
    finally:
        webhooks.close()
        read_side.close()
        shop.close()

    streamed = consumed(target)
    received = events(receiver, secret)  # signed, and valid against the schemas
    assert received == [e for e in streamed if int(e["sequence"]) > subscription.starts_after]
    assert len(streamed) > len(received)  # the first order was placed before it
    assert sorted({e["type"] for e in received}) == sorted(EVENT_TYPES)
    assert len(receiver.requests) == len(received)
    # Byte for byte what the publisher sends: one encoding of the contract.
    assert [r.body for r in receiver.accepted] == [
        json.dumps(e, separators=(",", ":")).encode() for e in received
    ]
