"""No text of the domain holds a control character: every aggregate refuses it, whatever
path the command took (HTTP, the CLI, a script calling the service).

A NUL stored in an event stopped a PostgreSQL read model for everyone (issue 14).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from domain.cart import Cart
from domain.errors import InvalidValue
from domain.order import Order
from domain.product import Product
from domain.stock import Stock
from domain.values import Address, text
from tests.domain.scenario import Fact, ev, given
from tests.domain.test_order import HISTORY, PAID, PLACED, place

NUL = "\u0000"
ADDRESS = {
    "name": "Ada",
    "line1": "1 Main St",
    "city": "Berlin",
    "postal_code": "1",
    "country": "DE",
}
STOCK = (ev(Stock.Created, sku="MUG-1"), ev(Stock.Received, quantity=5, note=""))

PRODUCT = (ev(Product.Added, sku="MUG-1", name="Mug", price=Decimal(1), currency="EUR"),)
Command = Callable[[Any], Any]

# Each command of the domain that takes text, given a NUL in one text: (history, command,
# the field it names).
REFUSALS: dict[str, tuple[tuple[Fact, ...], Command, str]] = {
    "product name": ((), lambda _: Product.add("MUG-1", f"Mug{NUL}", "1", currency="EUR"), "name"),
    "rename": (PRODUCT, lambda p: p.change(name=f"Mug{NUL}"), "name"),
    "cart owner": ((), lambda _: Cart.open(f"alice{NUL}"), "customer_id"),
    "e-mail": ((), lambda _: place(email=f"m{NUL}@x.example"), "email"),
    "address": ((), lambda _: Address(**{**ADDRESS, "line2": f"c/o{NUL}"}), "line2"),
    "payment reference": (HISTORY[PLACED], lambda o: o.pay("25.99", f"P{NUL}"), "reference"),
    "carrier": (HISTORY[PAID], lambda o: o.ship(f"DHL{NUL}", "T1"), "carrier"),
    "cancel reason": (HISTORY[PLACED], lambda o: o.cancel(f"no{NUL}"), "reason"),
    "receipt note": (STOCK, lambda s: s.receive(1, f"n{NUL}"), "note"),
    "adjustment reason": (STOCK, lambda s: s.adjust(-1, f"lost{NUL}"), "reason"),
}


@pytest.mark.parametrize("command", list(REFUSALS))
def test_every_text_of_the_domain_refuses_a_nul(command: str) -> None:
    history, call, field = REFUSALS[command]
    given(*history).when(call).then_raises(InvalidValue, match="control characters", field=field)


@pytest.mark.parametrize(
    ("value", "multiline", "ok"),
    [
        ("Crème brûlée 😀", False, True),
        ("a\tb", False, False),
        ("a\nb", False, False),
        ("a\tb\nc", True, True),
        ("a\r\nb", True, False),
        ("\x1b[31mred", True, False),
        ("\x7f", False, False),
        ("\x85", True, False),  # NEXT LINE, a C1 control
        ("\ud800", False, False),  # a lone surrogate: no UTF-8 for it
    ],
)
def test_tab_and_line_feed_only_where_text_runs_over_lines(
    value: str, multiline: bool, ok: bool
) -> None:
    if ok:
        assert text(value, "note", multiline=multiline) == value
    else:
        with pytest.raises(
            InvalidValue, match=r"control characters.*\(U\+[0-9A-F]{4} at character"
        ):
            text(value, "note", multiline=multiline)


def test_a_reason_and_a_note_may_run_over_lines() -> None:
    given(*HISTORY[PLACED]).when(lambda o: o.cancel("late\n\tand broken")).then(
        ev(Order.Cancelled, reason="late\n\tand broken", refund=None)
    )
    given(*STOCK).when(lambda s: s.receive(1, "pallet 3\nbox 2")).then(
        ev(Stock.Received, quantity=1, note="pallet 3\nbox 2")
    )
