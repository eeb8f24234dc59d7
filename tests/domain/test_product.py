"""Product: added with a valid SKU, name and price; renamed and repriced."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from domain.base import named_id
from domain.errors import InvalidValue, StaleVersion
from domain.product import Product
from tests.domain.scenario import ev, given

MUG = ev(Product.Added, sku="MUG-1", name="Mug", price=Decimal("12.50"), currency="EUR")


def test_a_product_is_added_with_its_sku_name_and_price() -> None:
    product = (
        given()
        .when(lambda _: Product.add("MUG-1", "  Mug ", "12.5", currency="EUR"))
        .then(ev(Product.Added, sku="MUG-1", name="Mug", price=Decimal("12.50"), currency="EUR"))
    )
    assert product.id == Product.create_id("MUG-1") == named_id("product", "MUG-1")
    assert (product.sku, product.name, product.price) == ("MUG-1", "Mug", Decimal("12.50"))


def test_a_product_with_a_malformed_sku_is_refused() -> None:
    given().when(lambda _: Product.add("mug 1", "Mug", "1.00", currency="EUR")).then_raises(
        InvalidValue, field="sku"
    )


def test_a_product_without_a_name_is_refused() -> None:
    given().when(lambda _: Product.add("MUG-1", " ", "1.00", currency="EUR")).then_raises(
        InvalidValue, field="name"
    )


@pytest.mark.parametrize("price", [12.5, "12.505", "-1.00", "1000000.01"])
def test_a_product_priced_as_a_float_in_fractions_of_a_cent_or_negative_is_refused(
    price: Any,
) -> None:
    given().when(lambda _: Product.add("MUG-1", "Mug", price, currency="EUR")).then_raises(
        InvalidValue, field="price"
    )


def test_a_product_is_renamed() -> None:
    product = (
        given(MUG)
        .when(lambda p: p.change(name="Big mug"))
        .then(ev(Product.Renamed, name="Big mug"))
    )
    assert product.name == "Big mug"
    assert product.price == Decimal("12.50")


def test_a_product_is_repriced() -> None:
    product = (
        given(MUG)
        .when(lambda p: p.change(price="9.99"))
        .then(ev(Product.Repriced, price=Decimal("9.99")))
    )
    assert product.price == Decimal("9.99")


def test_a_product_is_renamed_and_repriced_at_once() -> None:
    given(MUG).when(lambda p: p.change(name="Cup", price="0.00")).then(
        ev(Product.Renamed, name="Cup"), ev(Product.Repriced, price=Decimal("0.00"))
    )


def test_an_unchanged_name_or_price_records_nothing() -> None:
    given(MUG).when(lambda p: p.change(name=" Mug ", price="12.5")).then()
    given(MUG).when(lambda p: p.change()).then()


def test_a_bad_new_price_is_refused_and_nothing_is_recorded() -> None:
    # The rename comes first in change(); a refused price must not leave it recorded.
    given(MUG).when(lambda p: p.change(name="Cup", price=1.5)).then_raises(
        InvalidValue, field="price"
    )


def test_a_bad_new_name_is_refused() -> None:
    given(MUG).when(lambda p: p.change(name="")).then_raises(InvalidValue, field="name")


def test_a_later_price_change_follows_the_last_one() -> None:
    given(MUG, ev(Product.Repriced, price=Decimal("10.00"))).when(
        lambda p: p.change(price="12.50")
    ).then(ev(Product.Repriced, price=Decimal("12.50")))


def test_check_version_passes_on_the_current_version_or_none() -> None:
    given(MUG, ev(Product.Renamed, name="Cup")).when(
        lambda p: (p.check_version(2), p.check_version(None))
    ).then()


def test_check_version_refuses_a_stale_version() -> None:
    given(MUG, ev(Product.Renamed, name="Cup")).when(lambda p: p.check_version(1)).then_raises(
        StaleVersion, expected=1, actual=2
    )
