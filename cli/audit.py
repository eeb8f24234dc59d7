"""``eventshop audit``: history, time travel, export and verification from the command line.

Every command reads the store EVENTSHOP_DATABASE_URL names (eventshop.settings.Settings).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from cli.text import literal, shown, single_line
from domain.errors import DomainError
from eventshop.bootstrap import open_auditor, open_shop
from eventshop.settings import Settings
from projections.audit.auditor import Auditor

audit = typer.Typer(help="Read and check the event log (auditors).", no_args_is_help=True)


def out() -> Console:
    # Made per use, so that it measures the terminal it is actually writing to.
    return Console()


def err() -> Console:
    return Console(stderr=True)


@contextmanager
def _auditor() -> Iterator[Auditor]:
    shop = open_shop(Settings())
    try:
        yield open_auditor(shop)
    except DomainError as error:
        err().print(f"[red]{shown(error.detail)}[/red]")
        raise typer.Exit(2) from None
    finally:
        shop.close()


@audit.command()
def history(aggregate_id: Annotated[UUID, typer.Argument(help="the aggregate's id")]) -> None:
    """One aggregate's whole history: every event, who caused it and what it said."""
    with _auditor() as auditor:
        items = auditor.history(aggregate_id)
    # Every cell is literal: events hold what customers and staff typed.
    table = Table(title=f"{items[0]['aggregate_type']} {aggregate_id}")
    for column in ("position", "version", "type", "timestamp"):
        table.add_column(column, no_wrap=True)
    for column in ("actor", "request", "data"):
        table.add_column(column, overflow="fold")
    for item in items:
        cause = item["metadata"] or {}
        table.add_row(
            *map(
                literal,
                (
                    item["position"],
                    item["version"],
                    item["type"],
                    item["timestamp"].isoformat() if item["timestamp"] else "?",
                    f"{cause.get('actor', '?')} ({cause.get('role') or '-'})",
                    cause.get("correlation_id") or "-",
                    json.dumps(item["data"]),
                ),
            )
        )
    out().print(table)


@audit.command()
def state(
    aggregate_id: Annotated[UUID, typer.Argument(help="the aggregate's id")],
    at: Annotated[
        datetime | None, typer.Option(help="as it was at this moment (ISO 8601, UTC if naive)")
    ] = None,
    version: Annotated[int | None, typer.Option(min=1, help="as it was at this version")] = None,
) -> None:
    """An aggregate as it was at a moment or a version (else as it is now)."""
    with _auditor() as auditor:
        state_shown = auditor.state(aggregate_id, version=version, at=at)
    # ASCII only: C1 control characters in old events come out escaped, like the others.
    out().print_json(data=state_shown, ensure_ascii=True)


@audit.command()
def export(
    after: Annotated[int, typer.Option(min=0, help="events after this position")] = 0,
    until: Annotated[int | None, typer.Option(min=0, help="up to this position")] = None,
) -> None:
    """Write the log to stdout as NDJSON, one event per line (with its stored bytes)."""
    with _auditor() as auditor:
        sys.stdout.writelines(auditor.export(after, until))


@audit.command()
def digest(
    upto: Annotated[int | None, typer.Option(min=0, help="default: the whole log")] = None,
) -> None:
    """Print the hash chain head up to a position: keep it, to verify later."""
    with _auditor() as auditor:
        result = auditor.digest(upto)
    out().print(f"upto {result.upto} ({result.events} events): {result.head}")


@audit.command()
def checkpoint() -> None:
    """Keep chain heads for the events past the last checkpoint (run it periodically)."""
    with _auditor() as auditor:
        kept = auditor.checkpoint()
    out().print(f"last checkpoint: {kept.position if kept else 'none yet'}")


@audit.command()
def verify(
    digest: Annotated[
        str | None,
        typer.Option("--digest", help="a chain head kept earlier (hex)", callback=single_line),
    ] = None,
    upto: Annotated[int | None, typer.Option(min=0, help="the position the digest is at")] = None,
) -> None:
    """Recompute the hash chain and compare it with the checkpoints (and a digest).

    Exits 1 and names the first position that differs when the log was altered.
    """
    if digest is not None and upto is None:
        raise typer.BadParameter("a digest is the head at one position: give --upto too")
    with _auditor() as auditor:
        result = auditor.verify(digest=digest, upto=upto)
    if not result.ok:
        err().print(f"[red]MISMATCH at position {result.first_bad}[/red]: {shown(result.detail)}")
        raise typer.Exit(1)
    out().print(
        f"[green]OK[/green]: {result.events} events up to position {result.upto} match"
        f" {result.compared} recorded head(s); head {result.head}"
    )
