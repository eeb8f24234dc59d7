"""The log, one aggregate's history, time travel and export, read from the event store."""

from __future__ import annotations

import json
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import project_aggregate

from commands.service import Shop
from domain.errors import InvalidValue, NotFound
from projections.audit.auditor import Auditor, render
from projections.audit.chain import read_export
from tests.audit.conftest import History


def replayed(shop: Shop, aggregate_id: UUID, count: int) -> dict[str, object]:
    """The aggregate after exactly its first ``count`` events, replayed by hand."""
    events = list(shop.events.get(aggregate_id))[:count]
    return render(project_aggregate(None, events))  # type: ignore[arg-type]


@pytest.mark.parametrize("which", ["cart_id", "order_id", "stock_id", "product_id"])
def test_state_at_version_v_is_the_replay_of_exactly_v_events(
    shop: Shop, auditor: Auditor, history: History, which: str
) -> None:
    aggregate_id = getattr(history, which)
    versions = len(list(shop.events.get(aggregate_id)))
    assert versions >= 2
    for version in range(1, versions + 1):
        state = auditor.state(aggregate_id, version=version)
        assert state["version"] == version
        assert state == replayed(shop, aggregate_id, version)
        # The library's own way, through the repository, agrees.
        assert state == render(shop.repository.get(aggregate_id, version=version))
    assert auditor.state(aggregate_id) == replayed(shop, aggregate_id, versions)


def test_a_cart_seen_at_each_version(auditor: Auditor, history: History) -> None:
    states = [auditor.state(history.cart_id, version=v)["state"] for v in range(1, 6)]
    assert [sorted(s["lines"]) for s in states] == [
        [],
        ["MUG-1"],
        ["MUG-1", "TEA-1"],
        ["MUG-1", "TEA-1"],
        ["MUG-1", "TEA-1"],
    ]
    assert states[3]["lines"]["TEA-1"] == {"quantity": 5, "unit_price": "4.00"}
    assert states[4]["order_id"] == str(history.order_id)


def test_state_at_time_t_is_the_replay_of_the_events_up_to_t(
    shop: Shop, auditor: Auditor, history: History
) -> None:
    events = list(shop.events.get(history.cart_id))
    for count, event in enumerate(events, start=1):
        moment = event.timestamp  # type: ignore[attr-defined]
        assert auditor.state(history.cart_id, at=moment) == replayed(shop, history.cart_id, count)
        # Just before the next event, it is still the same.
        if count < len(events):
            following = events[count].timestamp  # type: ignore[attr-defined]
            between = moment + (following - moment) / 2
            assert auditor.state(history.cart_id, at=between)["version"] == count
    naive_utc = events[1].timestamp.replace(tzinfo=None)  # type: ignore[attr-defined]
    assert auditor.state(history.cart_id, at=naive_utc)["version"] == 2


def test_time_travel_refuses_what_did_not_exist(auditor: Auditor, history: History) -> None:
    first = auditor.history(history.cart_id)[0]["timestamp"]
    with pytest.raises(NotFound, match="did not exist yet"):
        auditor.state(history.cart_id, at=first - timedelta(microseconds=1))
    with pytest.raises(NotFound, match="versions 1 to 5"):
        auditor.state(history.cart_id, version=6)
    with pytest.raises(NotFound):
        auditor.state(uuid4())
    with pytest.raises(NotFound):
        auditor.history(uuid4())
    with pytest.raises(InvalidValue):
        auditor.state(history.cart_id, version=1, at=first)


def test_history_lists_one_aggregate_in_order_with_its_causes(
    auditor: Auditor, history: History
) -> None:
    items = auditor.history(history.order_id)
    assert [i["type"] for i in items] == ["Order.Placed", "Order.Paid", "Order.Shipped"]
    assert [i["version"] for i in items] == [1, 2, 3]
    assert items[0]["data"]["total"] == "46.00"
    assert items[0]["aggregate_type"] == "Order"
    assert [i["metadata"]["actor"] for i in items] == ["alice", "alice", "staff-2"]
    positions = [i["position"] for i in items]
    assert positions == sorted(positions)


def test_the_log_pages_through_every_event_exactly_once(auditor: Auditor, history: History) -> None:
    seen: list[int] = []
    after, pages = 0, 0
    while True:
        page = auditor.events(after, limit=4)
        seen += [i["position"] for i in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        after = int(page.next_cursor)
    assert seen == list(range(1, 20)) and pages == 5


def test_the_log_filters_by_type_aggregate_and_time(auditor: Auditor, history: History) -> None:
    received = auditor.events(where=auditor.log_filter(type="Stock.Received")).items
    assert [i["data"]["quantity"] for i in received] == [10, 50]
    short = auditor.events(where=auditor.log_filter(type="Received")).items
    assert short == received
    reserved = auditor.events(where=auditor.log_filter(type="Reserved")).items
    assert {i["aggregate_type"] for i in reserved} == {"Stock"} and len(reserved) == 2

    mine = auditor.events(where=auditor.log_filter(aggregate_id=history.cart_id)).items
    assert [i["version"] for i in mine] == [1, 2, 3, 4, 5]
    both = auditor.log_filter(type="Cart.ItemAdded", aggregate_id=history.cart_id)
    assert [i["version"] for i in auditor.events(where=both).items] == [2, 3]

    every = auditor.events(limit=100).items
    since, before = every[5]["timestamp"], every[9]["timestamp"]
    window = auditor.events(limit=100, where=auditor.log_filter(since=since, before=before))
    assert [i["position"] for i in window.items] == [6, 7, 8, 9]

    with pytest.raises(InvalidValue) as unknown:
        auditor.log_filter(type="Cart.Exploded")
    assert unknown.value.field == "type"


def test_a_sparse_filter_answers_short_pages_with_a_cursor(
    auditor: Auditor, history: History
) -> None:
    last_day = auditor.events(limit=100).items[-1]["timestamp"]
    where = auditor.log_filter(since=last_day)
    first = auditor.events(0, limit=10, where=where, scan=5)
    assert first.items == [] and first.next_cursor == "5"
    rest: list[int] = []
    cursor: str | None = first.next_cursor
    while cursor is not None:
        page = auditor.events(int(cursor), limit=10, where=where, scan=5)
        rest += [i["position"] for i in page.items]
        cursor = page.next_cursor
    assert rest == [19]


def test_an_export_of_n_events_has_n_lines_and_round_trips(
    auditor: Auditor, history: History
) -> None:
    lines = list(auditor.export())
    assert len(lines) == 19 and all(line.endswith("\n") for line in lines)
    assert [json.loads(line)["position"] for line in lines] == list(range(1, 20))
    assert list(read_export(lines)) == list(auditor.stream())
    first = json.loads(lines[0])
    assert first["type"] == "Product.Added" and first["data"]["price"] == "12.50"
    assert first["metadata"] == {
        "actor": "staff-1",
        "role": "staff",
        "correlation_id": "req-catalogue",
    }


def test_an_export_slices_by_position(auditor: Auditor, history: History) -> None:
    sliced = [json.loads(line)["position"] for line in auditor.export(after=5, until=9)]
    assert sliced == [6, 7, 8, 9]


def test_an_aggregate_read_from_past_the_largest_position_is_empty(sqlite_url: str) -> None:
    """Found by fuzzing: `after` past SQLite's 64-bit integers raised OverflowError (500)."""
    from domain.product import Product
    from eventshop.bootstrap import open_shop as bootstrap_open_shop
    from projections.audit.aggregate_events import aggregate_events
    from tests.conftest import settings_for

    shop = bootstrap_open_shop(settings_for(sqlite_url))
    try:
        shop.add_product("MUG-1", "Mug", "1.00")
        product_id = Product.create_id("MUG-1")
        assert len(aggregate_events(shop.recorder, product_id, 0, 10)) == 1
        assert aggregate_events(shop.recorder, product_id, 2**70, 10) == []
    finally:
        shop.close()
