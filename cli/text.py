"""Text across the command line: what a user typed goes in checked and comes out literally.

Arguments that become data refuse control characters as the API does (one rule:
:func:`domain.values.plain`). Whatever the shop stored comes out as text, never as Rich
markup (``[/bold]`` would crash a table, ``[link=…]`` would print a hyperlink) nor as
terminal control sequences (events stored before the rule may hold them).
"""

from __future__ import annotations

import re

import typer
from rich.markup import escape
from rich.text import Text

from domain.errors import InvalidValue
from domain.values import plain

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _printable(value: object) -> str:
    """``value`` with each control character written out (``\\x1b``)."""
    return _UNPRINTABLE.sub(lambda found: repr(found.group())[1:-1], str(value))


def literal(value: object) -> Text:
    """``value`` as a table cell or a line that Rich prints character for character."""
    return Text(_printable(value))


def shown(value: object) -> str:
    """``value`` to put inside markup (``f"[red]{shown(error)}[/red]"``), printed as it is."""
    return escape(_printable(value))


def single_line(value: str | None) -> str | None:
    """A typer callback: the argument must hold no control character."""
    if value is None:
        return None
    try:
        return plain(value, "value")
    except InvalidValue as error:
        raise typer.BadParameter(error.detail.removeprefix("value ")) from None
