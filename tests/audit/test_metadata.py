"""Who and why: every stored event records its cause; domain events never see it."""

from __future__ import annotations

import contextvars
import json
from concurrent.futures import ThreadPoolExecutor

from commands.service import Shop
from eventstore.causes import CAUSE_KEY, caused_by, current_cause, identify
from projections.audit.auditor import Auditor


def causes(auditor: Auditor) -> list[dict[str, str | None] | None]:
    return [item["metadata"] for item in auditor.events(limit=500).items]


def test_events_record_their_actor_role_and_correlation_id(shop: Shop, auditor: Auditor) -> None:
    with caused_by("staff-1", "staff", "req-1"):
        shop.add_product("MUG-1", "Mug", "12.50")
    with caused_by("staff-2", "admin,staff", "req-2"):
        shop.receive_stock("MUG-1", 3)
    assert causes(auditor) == [
        {"actor": "staff-1", "role": "staff", "correlation_id": "req-1"},
        {"actor": "staff-1", "role": "staff", "correlation_id": "req-1"},
        {"actor": "staff-2", "role": "admin,staff", "correlation_id": "req-2"},
    ]


def test_events_written_outside_any_request_are_the_systems(shop: Shop, auditor: Auditor) -> None:
    with caused_by("staff-1", "staff", "req-1"):
        shop.add_product("MUG-1", "Mug", "12.50")
    shop.receive_stock("MUG-1", 3)
    assert current_cause().actor == "system"
    assert causes(auditor)[-1] == {"actor": "system", "role": None, "correlation_id": None}


def test_the_cause_is_in_the_stored_bytes_but_not_in_domain_events(shop: Shop) -> None:
    with caused_by("staff-1", "staff", "req-1"):
        done = shop.add_product("MUG-1", "Mug", "12.50")
    stored = shop.recorder.select_notifications(1, 1)[0]
    assert json.loads(stored.state)[CAUSE_KEY]["actor"] == "staff-1"
    for event in shop.events.get(done.aggregate.id):
        assert CAUSE_KEY not in vars(event)
    assert shop.product("MUG-1").name == "Mug"
    assert CAUSE_KEY not in vars(shop.product("MUG-1"))


def test_snapshots_of_long_lived_stock_load_as_before(shop: Shop) -> None:
    shop.add_product("MUG-1", "Mug", "12.50")
    with caused_by("staff-1", "staff", "req-1"):
        for _ in range(120):
            shop.receive_stock("MUG-1", 1)
    assert shop.snapshots is not None
    snapshot = next(iter(shop.snapshots.get(shop.stock("MUG-1").id, desc=True, limit=1)))
    assert CAUSE_KEY not in vars(snapshot) and CAUSE_KEY not in snapshot.state  # type: ignore[attr-defined]
    assert shop.stock("MUG-1").on_hand == 120


def test_the_caller_identified_in_one_worker_thread_causes_writes_in_another(
    shop: Shop, auditor: Auditor
) -> None:
    """As FastAPI does: the token is checked and the route run in threads, each on a
    copy of the request's context; the cause opened by the middleware is shared."""
    with caused_by(correlation_id="req-42"), ThreadPoolExecutor(2) as pool:
        pool.submit(contextvars.copy_context().run, identify, "alice", ["customer"]).result()
        pool.submit(contextvars.copy_context().run, shop.open_cart, "alice").result()
    assert causes(auditor) == [{"actor": "alice", "role": "customer", "correlation_id": "req-42"}]
    assert current_cause().actor == "system"
