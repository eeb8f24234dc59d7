"""Command models: the JSON bodies the HTTP API accepts, one per command.

They check the shape of a request (types, patterns, bounds, no unknown fields) so that
a malformed request is refused with every bad field named before anything is loaded.
The domain still checks every value again: these models are the first line, not the
only one. Bounds come from the domain's own constants.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from api.text import MULTI_LINE, SINGLE_LINE, MultiLine, SingleLine
from domain.errors import InvalidValue
from domain.values import (
    COUNTRY_FORMAT,
    MAX_PRICE,
    MAX_QUANTITY,
    SKU_FORMAT,
    Address,
    money,
)

SKU_PATTERN = f"^{SKU_FORMAT.pattern}$"
MONEY_PATTERN = r"^[0-9]+(\.[0-9]{1,2})?$"
COUNTRY_PATTERN = f"^{COUNTRY_FORMAT.pattern}$"
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+$"

_MONEY = re.compile(MONEY_PATTERN)


def _money(value: Any, info: ValidationInfo) -> Decimal:
    """A decimal string such as "12.50"; JSON numbers are refused, floats round."""
    field = info.field_name or "amount"
    if not isinstance(value, str):
        raise PydanticCustomError(
            "money_type", "{field} must be a decimal string such as '12.50'", {"field": field}
        )
    if not _MONEY.fullmatch(value):
        raise PydanticCustomError(
            "money_format",
            "{field} must be digits with at most two decimal places, such as '12.50'",
            {"field": field},
        )
    try:
        return money(value, field)
    except InvalidValue as error:
        raise PydanticCustomError("money_range", error.detail) from None


Money = Annotated[
    Decimal,
    PlainValidator(_money),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "description": f"a decimal string with at most two places, at most {MAX_PRICE}",
            "examples": ["12.50"],
        }
    ),
]
Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN), Field(examples=["MUG-RED"])]
Quantity = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY, description="units")]
Text = Annotated[str, StringConstraints(min_length=1), SINGLE_LINE]
"""A required line of text (the domain trims it and bounds its length)."""
Lines = Annotated[str, StringConstraints(min_length=1), MULTI_LINE]
"""Required text that may hold several lines (a reason, a note)."""


class Command(BaseModel):
    """A request body: unknown fields are refused rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class AddProduct(Command):
    sku: Sku
    name: Text
    price: Money


class ChangeProduct(Command):
    name: Text | None = None
    price: Money | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> ChangeProduct:
        if self.name is None and self.price is None:
            raise ValueError("give a new name, a new price, or both")
        return self


class ReceiveStock(Command):
    quantity: Quantity
    note: MultiLine = ""


class AdjustStock(Command):
    delta: Annotated[
        StrictInt,
        Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY, description="units to add (or remove); not 0"),
    ]
    reason: Lines


class OpenCart(Command):
    """Opening a cart takes nothing: the cart belongs to the caller."""


class AddItem(Command):
    sku: Sku
    quantity: Quantity


class SetQuantity(Command):
    quantity: Annotated[
        StrictInt, Field(ge=0, le=MAX_QUANTITY, description="units; 0 removes the line")
    ]


class AddressIn(Command):
    name: Text
    line1: Text
    line2: SingleLine = ""
    city: Text
    postal_code: Text
    country: Annotated[
        str,
        StringConstraints(pattern=COUNTRY_PATTERN),
        Field(description="ISO 3166 alpha-2", examples=["DE"]),
    ]

    def to_domain(self) -> Address:
        """The domain's Address; a value it refuses is named by its place in the body."""
        try:
            return Address(**self.model_dump())
        except InvalidValue as error:
            raise InvalidValue(f"shipping_address.{error.field}", error.detail) from None


class CheckOut(Command):
    shipping_address: AddressIn
    email: Annotated[
        str,
        # The control characters first, so that one is named as such.
        SINGLE_LINE,
        StringConstraints(pattern=EMAIL_PATTERN),
        Field(examples=["a@b.example"], json_schema_extra={"pattern": EMAIL_PATTERN}),
    ]


class Pay(Command):
    amount: Money
    reference: Text


class Ship(Command):
    carrier: Text
    tracking_number: Text


class Deliver(Command):
    """Marking delivered takes nothing."""


class Cancel(Command):
    reason: Lines
