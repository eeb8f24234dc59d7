"""Value objects: Money, Currency, Sku, Quantity, text and Address.

Events store their plain forms (``Decimal``, ``str``, ``int``, ``dict``) so that the
stored JSON stays readable by auditors and by any later version of this code.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.errors import InvalidValue

CENT = Decimal("0.01")
MAX_PRICE = Decimal("1000000.00")
"""The one cap on money: a price, an order's total (checked at checkout), a payment and
a refund. An order that can be placed can therefore be paid."""
MAX_QUANTITY = 1000
"""Most units of one SKU in one cart line, receipt or adjustment."""

SKU_FORMAT = re.compile(r"[A-Z0-9][A-Z0-9-]{0,31}")
"""What a SKU looks like (HTTP bodies and paths check the same pattern, anchored)."""
COUNTRY_FORMAT = re.compile(r"[A-Z]{2}")
"""An ISO 3166 alpha-2 country code, as in an address."""
_CURRENCY = re.compile(r"[A-Z]{3}")

V1_CURRENCY = "EUR"
"""What every amount stored by the v1 event schema was counted in.

Before v2 the shop had one currency, euros (``EVENTSHOP_CURRENCY`` was documented with
that default but read by no code), and its events did not say so; the upcasters of v1
events name it. A fact about stored events: it never changes.
"""

DEFAULT_CURRENCY = V1_CURRENCY
"""The shop's currency unless configured otherwise (``EVENTSHOP_CURRENCY``): the one it
has always sold in. The settings and the service default to it."""


def money(value: Decimal | str | int, field: str = "amount") -> Decimal:
    """A non-negative amount with exactly two decimal places.

    Refuses floats and anything with fractions of a cent, rather than rounding
    silently: a price typed wrong must not become another price.
    """
    if isinstance(value, (float, bool)):
        raise InvalidValue(field, f"{field} must be a decimal string such as '12.50'")
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        raise InvalidValue(field, f"{field} {value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise InvalidValue(field, f"{field} must be a finite number")
    if amount < 0:
        raise InvalidValue(field, f"{field} must not be negative")
    if amount > MAX_PRICE:
        raise InvalidValue(field, f"{field} must not exceed {MAX_PRICE}")
    cents = amount.quantize(CENT)
    if cents != amount:
        raise InvalidValue(field, f"{field} {value} has more than two decimal places")
    # "-0" passes the sign check but would be stored and shown as "-0.00".
    return cents.copy_abs()


def currency_code(value: str) -> str:
    """An ISO 4217 currency code such as ``EUR``: what a money amount is counted in."""
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise InvalidValue("currency", f"currency {value!r} must be an ISO 4217 code such as 'EUR'")
    return value


def sku(value: str) -> str:
    """A stock-keeping unit: upper-case letters, digits and dashes, at most 32."""
    if not isinstance(value, str) or not SKU_FORMAT.fullmatch(value):
        raise InvalidValue("sku", f"SKU {value!r} must match {SKU_FORMAT.pattern}")
    return value


def quantity(value: int, field: str = "quantity", *, allow_zero: bool = False) -> int:
    """A whole number of units, positive (or zero where allowed), at most MAX_QUANTITY."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(field, f"{field} must be a whole number")
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_QUANTITY:
        raise InvalidValue(field, f"{field} must be between {low} and {MAX_QUANTITY}")
    return value


# Characters no text of the shop may hold: the C0 and C1 controls and DEL (NUL cannot
# even be stored in a PostgreSQL text column; the others can hide text or drive a
# terminal), and lone surrogates (not encodable as UTF-8). Multi-line text may also
# hold tabs and line feeds. The API's JSON Schema patterns say the same (api/text.py).
SINGLE_LINE_REFUSED = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
MULTI_LINE_REFUSED = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def plain(value: str, field: str, *, multiline: bool = False) -> str:
    """``value`` unchanged if it holds no control character (tab and line feed are
    allowed where ``multiline``); else InvalidValue naming the first one."""
    refused = MULTI_LINE_REFUSED if multiline else SINGLE_LINE_REFUSED
    found = refused.search(value)
    if found is not None:
        allowed = " other than tab and line feed" if multiline else ""
        raise InvalidValue(
            field,
            f"{field} must not contain control characters{allowed}"
            f" (U+{ord(found.group()):04X} at character {found.start() + 1})",
        )
    return value


def text(
    value: str,
    field: str,
    *,
    max_length: int = 200,
    required: bool = True,
    multiline: bool = False,
) -> str:
    """A trimmed string of bounded length, without control characters (see :func:`plain`)."""
    if not isinstance(value, str):
        raise InvalidValue(field, f"{field} must be a string")
    value = plain(value, field, multiline=multiline).strip()
    if required and not value:
        raise InvalidValue(field, f"{field} must not be empty")
    if len(value) > max_length:
        raise InvalidValue(field, f"{field} must be at most {max_length} characters")
    return value


@dataclass(frozen=True)
class Address:
    """A shipping address."""

    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str = ""

    def __post_init__(self) -> None:
        for field in ("name", "line1", "city", "postal_code"):
            text(getattr(self, field), field)
        text(self.line2, "line2", required=False)
        if not isinstance(self.country, str) or not COUNTRY_FORMAT.fullmatch(self.country):
            raise InvalidValue("country", "country must be an ISO 3166 alpha-2 code such as 'DE'")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Address:
        return cls(**data)
