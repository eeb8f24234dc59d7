"""``eventshop seed``: a realistic history, consistent, and the same for the same seed."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.app import open_shop
from cli.demo import ABANDONED, FATES, SHOP_ENV, SeedReport, draw, seed
from cli.main import app
from commands.service import Shop
from domain.order import CANCELLED, DELIVERED, PAID, PLACED, SHIPPED
from eventshop.settings import Settings

ORDERS = 40


def seed_shop(url: str) -> Shop:
    return open_shop(Settings(database_url=url), **SHOP_ENV)


@pytest.fixture(params=["sqlite", "pg"])
def seeded(request: pytest.FixtureRequest) -> Iterator[tuple[Shop, SeedReport]]:
    """A store seeded with ORDERS orders by three threads."""
    shop = seed_shop(str(request.getfixturevalue(f"{request.param}_url")))
    report = seed(shop, ORDERS, seed=7, threads=3)
    yield shop, report
    shop.close()


def stock_levels(shop: Shop, skus: list[str]) -> dict[str, tuple[int, int]]:
    return {s: (shop.stock(s).on_hand, shop.stock(s).reserved) for s in skus}


def test_the_plan_is_drawn_from_the_seed() -> None:
    assert draw(200, seed=3) == draw(200, seed=3)
    assert draw(200, seed=3) != draw(200, seed=4)
    stories = draw(200, seed=3).stories
    fates = Counter(s.fate for s in stories)
    assert set(fates) == {*FATES, ABANDONED}
    assert sum(n for fate, n in fates.items() if fate != ABANDONED) == 200
    assert all(1 <= len(s.lines) <= 4 for s in stories)
    assert any(s.short for s in stories) and any(s.edit for s in stories)


def test_the_seeded_history_keeps_every_stock_invariant(
    seeded: tuple[Shop, SeedReport],
) -> None:
    shop, report = seeded
    orders = [shop.order(order_id) for order_id in report.order_ids]
    statuses = Counter(order.status for order in orders)
    assert set(statuses) == {PLACED, PAID, SHIPPED, DELIVERED, CANCELLED}
    assert dict(statuses) == report.orders
    assert sum(statuses.values()) == ORDERS
    assert report.refused >= 1 and report.abandoned_carts >= 1 and report.adjustments >= 1

    # Every unit reserved belongs to an order still waiting to ship, and no other.
    expected: dict[str, dict[str, int]] = defaultdict(dict)
    for order in orders:
        if order.status in (PLACED, PAID):
            for line in order.lines:
                expected[line["sku"]][str(order.id)] = line["quantity"]
    for product in draw(ORDERS, seed=7).products:
        stock = shop.stock(product.sku)
        assert stock.available >= 0, product.sku
        assert stock.reservations == expected.get(product.sku, {}), product.sku
        assert stock.reserved == sum(expected.get(product.sku, {}).values())
        assert shop.product(product.sku).currency == "EUR"

    # The events counted are exactly those in the log, and the rate is reported.
    assert report.events == len(shop.recorder.select_notifications(start=1, limit=100_000))
    assert report.events_per_second > 0


def test_threads_change_the_order_of_events_but_not_the_outcome(tmp_path: Path) -> None:
    outcomes = []
    for threads in (1, 4):
        with seed_shop(f"sqlite:///{tmp_path / f'seed-{threads}.db'}") as shop:
            report = seed(shop, 30, seed=11, threads=threads)
            skus = [p.sku for p in draw(30, seed=11).products]
            statuses = Counter(shop.order(o).status for o in report.order_ids)
            outcomes.append((report.events, statuses, stock_levels(shop, skus)))
    assert outcomes[0] == outcomes[1]


def test_the_cli_seeds_the_configured_store(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", sqlite_url)
    result = CliRunner().invoke(app, ["seed", "--orders", "12", "--seed", "5", "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert "orders: 12 (" in result.output
    assert "events/s" in result.output
    with seed_shop(sqlite_url) as shop:
        placed = shop.recorder.select_notifications(
            start=1, limit=10_000, topics=["domain.order:Order.Placed"]
        )
        assert len(placed) == 12
        written = len(shop.recorder.select_notifications(start=1, limit=100_000))
    assert f"events written: {written:,} in" in result.output
    again = CliRunner().invoke(app, ["seed", "--orders", "1"])
    assert again.exit_code == 1
    assert again.output == (
        f"the store already holds {written:,} events: seed writes a new shop into an empty"
        " store (set EVENTSHOP_DATABASE_URL to another one)\n"
    )


def test_the_cli_refuses_a_non_positive_count() -> None:
    result = CliRunner().invoke(app, ["seed", "--orders", "0"])
    assert result.exit_code != 0


def test_the_cli_reports_as_json_for_scripts(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", sqlite_url)
    result = CliRunner().invoke(app, ["seed", "--orders", "3", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sum(report["orders"].values()) == 3 and report["threads"] == 1
    assert report["events"] > 3 and result.stderr == ""  # no progress bars
