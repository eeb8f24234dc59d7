"""The queries: filters, keyset pagination, ownership, money and errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.errors import InvalidValue, NotFound
from projections.engine.pagination import MAX_LIMIT
from tests.projections.support import ADDRESS, opened


@pytest.fixture
def shop_and_read_side(url: str) -> Iterator[tuple[Any, Any]]:
    with opened(url) as (shop, read_side):
        for i, sku in enumerate(["A-1", "B-2", "C-3", "D-4", "E-5", "F-6", "G-7"]):
            shop.add_product(sku, f"Thing {i}", f"{i + 1}.25")
            if i:
                shop.receive_stock(sku, i)
        orders = []
        for i in range(5):
            customer = "ann" if i % 2 == 0 else "bob"
            cart = shop.open_cart(customer).aggregate.id
            shop.add_to_cart(cart, "G-7", 1)
            shop.add_to_cart(cart, "F-6", 1)
            orders.append(shop.check_out(cart, ADDRESS, f"{customer}@example.com").aggregate)
        shop.pay(orders[1].id, orders[1].total, "p-1")
        shop.cancel(orders[2].id, "no longer needed")
        read_side.start()
        assert read_side.wait_for(None, shop.head(), timeout=10)
        yield shop, read_side


def every_page(fetch: Callable[..., dict[str, Any]], limit: int) -> list[list[Any]]:
    pages, cursor = [], None
    while True:
        page = fetch(limit=limit, cursor=cursor)
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


def test_products_page_through_the_catalogue_by_sku(shop_and_read_side: Any) -> None:
    _, read_side = shop_and_read_side
    pages = every_page(read_side.catalogue.list_products, 3)
    assert [len(p) for p in pages] == [3, 3, 1]
    skus = [item["sku"] for page in pages for item in page]
    assert skus == ["A-1", "B-2", "C-3", "D-4", "E-5", "F-6", "G-7"]
    assert read_side.catalogue.list_products()["next_cursor"] is None
    product = read_side.catalogue.get_product("G-7")
    # 6 received; 4 reserved by open orders; the cancelled order's unit came back.
    assert (product["price"], product["available"]) == ("7.25", 2)
    with pytest.raises(NotFound):
        read_side.catalogue.get_product("NOPE")


def test_limits_and_cursors_are_checked(shop_and_read_side: Any) -> None:
    _, read_side = shop_and_read_side
    for limit in (0, MAX_LIMIT + 1, True):
        with pytest.raises(InvalidValue) as refused:
            read_side.catalogue.list_products(limit=limit)
        assert refused.value.field == "limit"
    assert len(read_side.catalogue.list_products(limit=MAX_LIMIT)["items"]) == 7
    stock_cursor = read_side.stock.list_stock(limit=1)["next_cursor"]
    for cursor in ("garbage", stock_cursor):  # another list's cursor is refused too
        with pytest.raises(InvalidValue) as refused:
            read_side.catalogue.list_products(cursor=cursor)
        assert refused.value.field == "cursor"


def test_low_stock_lists_what_has_fewer_units_available(shop_and_read_side: Any) -> None:
    _, read_side = shop_and_read_side
    low = read_side.stock.list_stock(below=2)["items"]
    assert [(s["sku"], s["available"]) for s in low] == [("A-1", 0), ("B-2", 1), ("F-6", 1)]
    level = read_side.stock.get_stock("F-6")
    assert (level["on_hand"], level["reserved"], level["available"]) == (5, 4, 1)


def test_orders_are_listed_newest_first_with_filters(shop_and_read_side: Any) -> None:
    _, read_side = shop_and_read_side
    everything = read_side.orders.list_orders()["items"]
    assert len(everything) == 5
    assert everything == sorted(everything, key=lambda o: (o["placed_at"], o["id"]), reverse=True)
    pages = every_page(read_side.orders.list_orders, 2)
    assert [o for page in pages for o in page] == everything

    anns = read_side.orders.list_orders(customer_id="ann")["items"]
    assert {o["customer_id"] for o in anns} == {"ann"} and len(anns) == 3
    assert [o["status"] for o in read_side.orders.list_orders(status="cancelled")["items"]] == [
        "cancelled"
    ]
    paid = read_side.orders.list_orders(status="paid", customer_id="bob")["items"]
    assert len(paid) == 1 and paid[0]["total"] == "13.50"

    middle = everything[2]["placed_at"]
    newer = read_side.orders.list_orders(placed_from=middle)["items"]
    assert newer == everything[:3]
    older = read_side.orders.list_orders(placed_to=middle)["items"]
    assert older == everything[2:]
    today = datetime.now(UTC).date()
    assert len(read_side.orders.list_orders(placed_to=today.isoformat())["items"]) == 5
    tomorrow = (today + timedelta(days=1)).isoformat()
    assert read_side.orders.list_orders(placed_from=tomorrow)["items"] == []
    with pytest.raises(InvalidValue):
        read_side.orders.list_orders(status="lost")
    with pytest.raises(InvalidValue):
        read_side.orders.list_orders(placed_from="yesterday")


def test_an_order_in_full_and_only_for_its_owner(shop_and_read_side: Any) -> None:
    _, read_side = shop_and_read_side
    summary = read_side.orders.list_orders(status="cancelled")["items"][0]
    order = read_side.orders.get_order(summary["id"], owner="ann")
    assert order["lines"] == [
        {"sku": "F-6", "quantity": 1, "unit_price": "6.25", "subtotal": "6.25"},
        {"sku": "G-7", "quantity": 1, "unit_price": "7.25", "subtotal": "7.25"},
    ]
    assert order["total"] == "13.50" and order["refund"] is None
    assert order["shipping_address"]["city"] == "Berlin"
    assert order["cancel_reason"] == "no longer needed"
    assert [h["status"] for h in order["status_history"]] == ["placed", "cancelled"]
    assert order["status_history"][0]["at"] == order["placed_at"]
    with pytest.raises(NotFound):
        read_side.orders.get_order(summary["id"], owner="bob")
    cart = read_side.carts.get_cart(order["cart_id"], owner="ann")
    assert (cart["status"], cart["total"], cart["order_id"]) == (
        "checked_out",
        "13.50",
        order["id"],
    )
    with pytest.raises(NotFound):
        read_side.carts.get_cart(order["cart_id"], owner="bob")


def test_customers_see_their_history_and_spending(shop_and_read_side: Any) -> None:
    _, read_side = shop_and_read_side
    ann = read_side.customers.get_customer("ann")
    # Two orders placed and unpaid, one cancelled: nothing spent yet.
    assert (ann["orders"], ann["cancelled"]) == (3, 1)
    assert (ann["spent"], ann["awaiting_payment"]) == ("0.00", "27.00")
    bob = read_side.customers.get_customer("bob")
    assert (bob["orders"], bob["spent"], bob["awaiting_payment"]) == (2, "13.50", "13.50")
    newest = read_side.orders.list_orders(customer_id="ann")["items"]
    pages = every_page(lambda **kw: read_side.customers.order_history("ann", **kw), 2)
    history = [entry for page in pages for entry in page]
    assert [e["id"] for e in history] == [o["id"] for o in newest]
    assert ann["recent_orders"] == history
    assert ann["last_order"] == {
        "id": newest[0]["id"],
        "placed_at": newest[0]["placed_at"],
        "status": "placed",
    }
    assert ann["first_order_at"] == newest[-1]["placed_at"]
    assert [e["id"] for e in read_side.customers.get_customer("ann", 1)["recent_orders"]] == [
        newest[0]["id"]
    ]
    nobody = read_side.customers.get_customer("nobody")
    assert (nobody["orders"], nobody["spent"], nobody["last_order"]) == (0, "0.00", None)
    assert nobody["recent_orders"] == []


def test_customers_page_by_id(shop_and_read_side: Any) -> None:
    _, read_side = shop_and_read_side
    pages = every_page(read_side.customers.list_customers, 1)
    assert [[c["customer_id"] for c in page] for page in pages] == [["ann"], ["bob"]]
    ann = read_side.customers.get_customer("ann")
    assert pages[0][0] == {key: ann[key] for key in ann if key != "recent_orders"}
    assert read_side.customers.list_customers(only="bob")["items"] == pages[1]
    assert read_side.customers.list_customers(only="nobody")["items"] == []
    with pytest.raises(InvalidValue):
        read_side.customers.list_customers(cursor="bogus")


def test_the_sales_report_leaves_cancelled_orders_out(shop_and_read_side: Any) -> None:
    _, read_side = shop_and_read_side
    today = datetime.now(UTC).date().isoformat()
    report = read_side.sales.sales_report(today, today)
    assert report["totals"] == {"orders": 4, "units": 8, "revenue": "54.00"}
    (day,) = report["days"]
    assert day["day"] == today
    assert day["skus"] == [
        {"sku": "F-6", "orders": 4, "units": 4, "revenue": "25.00"},
        {"sku": "G-7", "orders": 4, "units": 4, "revenue": "29.00"},
    ]
    assert report["skus"] == day["skus"]
    assert read_side.sales.sales_report("2000-01-01", "2000-01-31")["days"] == []
    with pytest.raises(InvalidValue):
        read_side.sales.sales_report(today, "2000-01-01")
