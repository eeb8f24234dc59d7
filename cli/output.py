"""Where the commands print, for people and for scripts.

People get Rich tables and colour, measured on the terminal each time (a pipe counts as
80 columns): every table wraps its cells rather than dropping a column. Scripts pass
``--json`` and get one JSON document on stdout (``audit export`` streams NDJSON), with
keys sorted, nothing but ASCII and no Rich at all: no markup, colour or line wrapping.
Exit codes are the same either way.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any

import typer
from rich.console import Console

AsJson = Annotated[
    bool, typer.Option("--json", help="print one JSON document on stdout, for scripts")
]
"""The ``--json`` flag of every command that lists or shows something."""


def group(help_text: str) -> typer.Typer:
    """A command group of ``eventshop``. Its help is plain text: docstrings are not read
    as markup, paragraphs are wrapped to the terminal, flags show no type and values
    their metavar (``--upto POSITION``)."""
    return typer.Typer(help=help_text, rich_markup_mode=None, no_args_is_help=True)


def out() -> Console:
    # Made per use, so that it measures the terminal it is actually writing to.
    return Console()


def err() -> Console:
    return Console(stderr=True)


def emit_json(data: Any) -> None:
    """``data`` as one JSON document on stdout: what ``--json`` prints."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True, default=_plain))


def _plain(value: object) -> str:
    """A value JSON has no type for: a moment in ISO 8601, anything else (UUID, Decimal)
    as its text."""
    return value.isoformat() if isinstance(value, datetime | date) else str(value)
