"""Value objects: money with two places, SKUs, quantities, text and addresses."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidValue
from domain.values import MAX_PRICE, MAX_QUANTITY, Address, money, quantity, sku, text


@pytest.mark.parametrize(
    ("raw", "amount"),
    [
        ("12.50", "12.50"),
        ("12.5", "12.50"),
        ("7", "7.00"),
        (7, "7.00"),
        ("0", "0.00"),
        (Decimal("3.10"), "3.10"),
        ("1.000", "1.00"),
        ("-0", "0.00"),
        ("1000000.00", "1000000.00"),
    ],
)
def test_money_has_exactly_two_places(raw: Any, amount: str) -> None:
    assert str(money(raw)) == amount


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (12.5, "decimal string"),
        (True, "decimal string"),
        ("1.005", "more than two decimal places"),
        (Decimal("0.001"), "more than two decimal places"),
        ("-0.01", "must not be negative"),
        (-3, "must not be negative"),
        ("1000000.01", "must not exceed"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("twelve", "not a decimal number"),
        ("", "not a decimal number"),
        (None, "not a decimal number"),
    ],
)
def test_money_refuses_floats_fractions_of_cents_and_negatives(raw: Any, why: str) -> None:
    with pytest.raises(InvalidValue, match=why) as caught:
        money(raw, "price")
    assert caught.value.field == "price"


@given(st.decimals(min_value=0, max_value=MAX_PRICE, places=2, allow_nan=False))
def test_any_amount_in_cents_is_kept_as_it_is(amount: Decimal) -> None:
    assert money(str(amount)) == amount
    assert money(str(amount)).as_tuple().exponent == -2


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_money_either_refuses_or_gives_a_non_negative_amount_in_cents(amount: Decimal) -> None:
    try:
        cents = money(amount)
    except InvalidValue:
        return
    assert cents == amount
    assert str(cents).count(".") == 1 and len(str(cents).split(".")[1]) == 2
    assert not str(cents).startswith("-")


@pytest.mark.parametrize("good", ["MUG-1", "A", "0", "X" * 32, "A-", "9-9-9"])
def test_a_sku_is_upper_case_letters_digits_and_dashes(good: str) -> None:
    assert sku(good) == good


@pytest.mark.parametrize("bad", ["", "mug-1", "-A", "A B", "A_1", "X" * 33, "É", 12, None])
def test_a_malformed_sku_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidValue) as caught:
        sku(bad)
    assert caught.value.field == "sku"


@pytest.mark.parametrize("good", [1, 2, MAX_QUANTITY])
def test_a_quantity_is_a_positive_whole_number_up_to_the_limit(good: int) -> None:
    assert quantity(good) == good


@pytest.mark.parametrize("bad", [0, -1, MAX_QUANTITY + 1, 1.0, "2", True, None])
def test_a_quantity_outside_the_bounds_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidValue) as caught:
        quantity(bad, "units")
    assert caught.value.field == "units"


def test_zero_is_a_quantity_only_where_allowed() -> None:
    assert quantity(0, allow_zero=True) == 0
    with pytest.raises(InvalidValue):
        quantity(-1, allow_zero=True)


def test_text_is_trimmed_required_and_bounded() -> None:
    assert text("  Mug  ", "name") == "Mug"
    assert text("   ", "note", required=False) == ""
    for bad, why in [("  ", "must not be empty"), ("x" * 201, "at most 200"), (5, "a string")]:
        with pytest.raises(InvalidValue, match=why):
            text(bad, "name")  # type: ignore[arg-type]


ADDRESS = {
    "name": "Ada",
    "line1": "1 Main St",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


def test_an_address_round_trips_through_its_plain_form() -> None:
    address = Address.from_dict({**ADDRESS, "line2": "Flat 2"})
    assert Address.from_dict(address.as_dict()) == address
    assert address.as_dict()["line2"] == "Flat 2"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("line1", "  "),
        ("city", ""),
        ("postal_code", ""),
        ("line2", "x" * 201),
        ("country", "de"),
        ("country", "DEU"),
        ("country", None),
        ("name", None),
    ],
)
def test_an_address_with_a_bad_field_names_it(field: str, value: Any) -> None:
    with pytest.raises(InvalidValue) as caught:
        Address.from_dict({**ADDRESS, field: value})
    assert caught.value.field == field
