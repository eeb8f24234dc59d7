"""The law of the read side: live processing gives what a rebuild from scratch gives."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.projections.support import (
    CUSTOMERS,
    PRICES,
    SKUS,
    World,
    applied,
    check_against_write_side,
    dumps,
    event_count,
    opened,
    rebuilt,
)

sku = st.sampled_from(SKUS)
index = st.integers(0, 5)
command = st.one_of(
    st.tuples(st.just("add_product"), sku, st.sampled_from(PRICES)),
    st.tuples(
        st.just("change_product"),
        sku,
        st.none() | st.sampled_from(["Mug", "Cup"]),
        st.none() | st.sampled_from(PRICES),
    ),
    st.tuples(st.just("receive"), sku, st.integers(1, 20)),
    st.tuples(st.just("adjust"), sku, st.integers(-10, 10).filter(bool)),
    st.tuples(st.just("open_cart"), st.sampled_from(CUSTOMERS)),
    st.tuples(st.just("add_to_cart"), index, sku, st.integers(1, 5)),
    st.tuples(st.just("set_quantity"), index, sku, st.integers(0, 5)),
    st.tuples(st.just("remove"), index, sku),
    st.tuples(st.just("check_out"), index),
    st.tuples(st.sampled_from(["pay", "ship", "deliver", "cancel"]), index),
)
journey = st.tuples(
    st.just("buy"),
    st.sampled_from(CUSTOMERS),
    st.lists(st.tuples(sku, st.integers(1, 4)), min_size=1, max_size=3),
)
order_step = st.tuples(st.sampled_from(["pay", "ship", "deliver", "cancel"]), index)
# Every product with some stock first, and whole journeys often, so that most sequences
# reach checkouts, payments, shipments and cancellations.
opening = st.tuples(st.lists(st.sampled_from(PRICES), min_size=3, max_size=3), st.integers(5, 20))
steps = st.lists(st.one_of(command, journey, journey, order_step, order_step), max_size=30)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(start=opening, commands=steps)
def test_live_read_models_equal_a_rebuild_from_scratch(
    new_store: Callable[[], AbstractContextManager[str]],
    start: tuple[list[str], int],
    commands: list[tuple[object, ...]],
) -> None:
    with new_store() as url, opened(url) as (shop, read_side):
        read_side.start()
        world = World(shop)
        prices, units = start
        for sku_, price in zip(SKUS, prices, strict=True):
            world.run(("add_product", sku_, price))
            world.run(("receive", sku_, units))
        for step in commands:
            world.run(step)
        assert read_side.wait_for(None, shop.head(), timeout=30)

        live = dumps(read_side)
        assert live == rebuilt(shop, url)
        assert set(applied(read_side).values()) == {event_count(shop)}
        check_against_write_side(world, read_side)
