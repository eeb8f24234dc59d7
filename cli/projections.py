"""``eventshop projections``: the read models' status, blue/green rebuilds and resets,
parked events.

Every command works on the store EVENTSHOP_DATABASE_URL names (eventshop.settings.Settings),
next to whatever ``eventshop serve`` / ``worker`` processes feed the read models: a
rebuild here builds the new copy in this process while they keep serving and feeding
the live one, and the swap hands the read model back to them (projections/engine/rebuild.py).
Rebuilds and resets are in cli/rebuild.py.
"""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.output import AsJson, emit_json, err, group, out
from cli.readside import known, read_side, seconds
from cli.rebuild import rebuild, reset
from cli.text import literal, shown

projections = group("Operate the read models: status, blue/green rebuilds, resets, parked events.")
parked = group("Events a read model's handlers failed on, parked: list, retry after a fix, skip.")
projections.add_typer(parked, name="parked")
projections.command()(rebuild)
projections.command()(reset)


# --- status ------------------------------------------------------------------------------------


@projections.command()
def status(as_json: AsJson = False) -> None:
    """Each read model: state, version, position, lag, speed, rebuild progress, the last
    rebuild's outcome, and which worker feeds it."""
    with read_side() as opened:
        entries = opened.status()
    if as_json:
        emit_json(entries)
        return
    head = max((entry["head"] for entry in entries), default=0)
    # Fits 80 columns: the short columns never wrap, and what can be long (the running
    # rebuild, the last one, the worker) shares one column that wraps, whole words first.
    table = Table(
        title=f"projections (log head {head:,})",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("name", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for column in ("v", "position", "lag", "ev/s"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("rebuild, last rebuild, worker", overflow="fold")
    for entry in entries:
        table.add_row(
            entry["name"],
            _state(entry["state"]),
            _version(entry),
            f"{entry['position']:,}",
            f"{entry['lag']:,}",
            f"{entry['events_per_second']:,.0f}",
            _notes(entry),
        )
    out().print(table)
    for entry in entries:
        if entry.get("parked"):
            err().print(
                f"[yellow]{entry['name']} has {entry['parked']} parked event(s):"
                f" eventshop projections parked list {entry['name']}[/yellow]"
            )
        if entry["last_error"]:
            failure = entry["last_error"]
            err().print(
                f"[red]{entry['name']} stopped at position {failure.get('position')}:"
                f" {shown(failure.get('error'))}[/red]"
            )


def _notes(entry: dict[str, Any]) -> Text:
    notes = [
        Text.from_markup(note)
        for note in (
            _running(entry["rebuild"]),
            _last(entry["last_rebuild"]),
        )
        if note
    ]
    if entry["worker"]:
        notes.append(literal(f"fed by {entry['worker']}"))
    return Text("\n").join(notes) if notes else Text("-")


def _state(state: str) -> str:
    colour = {
        "live": "green",
        "rebuilding": "cyan",
        "catching_up": "yellow",
        "degraded": "yellow",
    }.get(state, "red")
    if state == "standby":
        colour = "white"
    return f"[{colour}]{state}[/{colour}]"


def _version(entry: dict[str, Any]) -> str:
    stored, code = entry["stored_version"], entry["version"]
    return str(code) if stored in (None, code) else f"{stored} -> {code}"


def _running(running: dict[str, Any] | None) -> str:
    if not running:
        return ""
    # Events of the log, as the rebuild's summary counts them (published by an older
    # version without them: positions).
    done = running.get("events", running["position"])
    total = running.get("total", running["target"])
    share = min(done / total, 1.0) if total else 1.0
    return (
        f"{running['phase']} {share:.0%} ({done:,}/{total:,} events,"
        f" {running['events_per_second']:,.0f}/s, ETA {seconds(running.get('eta_seconds'))})"
    )


def _last(last: dict[str, Any] | None) -> str:
    if not last:
        return ""
    if last.get("error"):
        return f"[red]last rebuild failed: {shown(last['error'])}[/red]"
    when = shown(last.get("finished_at") or "?")
    if last.get("reset"):
        return f"reset {when}"
    comparison = last["comparison"]
    verdict = (
        "copies equal"
        if comparison["equal"]
        else f"differed in {shown(', '.join(comparison['differences']) or 'position')}"
    )
    return (
        f"rebuilt {when}: v{last['version']}, {last.get('events') or 0:,} events,"
        f" {last['events_per_second']:,}/s, {verdict}"
    )


# --- parked events -----------------------------------------------------------------------------


@parked.command("list")
def list_parked(
    name: Annotated[str, typer.Argument(help="the projection")],
    as_json: AsJson = False,
) -> None:
    """The events NAME's handlers failed on, parked, in log order."""
    with read_side() as opened:
        known(opened, name)
        entries = opened.parked(name)
    if as_json:
        emit_json([entry.as_dict() for entry in entries])
        return
    # Fits 80 columns: an event's type, aggregate and version share a cell, as do when it
    # was parked and its retries; the error takes the rest. Cells wrap, none is cut off.
    table = Table(title=f"{name}: {len(entries)} parked event(s)", show_lines=True)
    # An aggregate's id whole (36 characters), to pass to `eventshop audit history`.
    widest = max([36, *(len(entry.type) for entry in entries)])
    table.add_column("pos", no_wrap=True, justify="right")
    table.add_column("event, aggregate", width=widest, no_wrap=True)
    # No minimum widths on the wrapping columns: Rich meets one by widening the table
    # past the terminal, and then crops its right edge.
    table.add_column("parked at, retries", overflow="fold", max_width=32)
    table.add_column("error", overflow="fold")
    for entry in entries:
        # User text may be in an error: printed as it is, never read as markup.
        table.add_row(
            literal(entry.position),
            _lines(entry.type, entry.aggregate_id, f"version {entry.aggregate_version}"),
            _lines(entry.parked_at, f"{entry.retries} retries"),
            literal(entry.error),
        )
    out().print(table)


def _lines(*values: object) -> Text:
    return Text("\n").join(literal(value) for value in values)


@parked.command("retry")
def retry_parked(
    name: Annotated[str, typer.Argument(help="the projection")],
    position: Annotated[int, typer.Argument(help="the parked event's position", min=1)],
    as_json: AsJson = False,
) -> None:
    """Apply the parked event now (after a fix of the code), exactly once, with the events
    of its aggregate parked behind it. If it fails again nothing is written (exit 2)."""
    with read_side() as opened:
        known(opened, name)
        entry = opened.retry_parked(name, position)
        left = len(opened.parked(name))
    if as_json:
        emit_json({"applied": entry.as_dict(), "parked": left})
        return
    out().print(f"{name}: event {entry.position} ({escape(entry.type)}) applied; {left} parked")


@parked.command("skip")
def skip_parked(
    name: Annotated[str, typer.Argument(help="the projection")],
    position: Annotated[int, typer.Argument(help="the parked event's position", min=1)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    as_json: AsJson = False,
) -> None:
    """Give up on the parked event: NAME will never apply it (rebuilds skip it too); the
    skip is recorded with who and when."""
    with read_side() as opened:
        known(opened, name)
        if not yes:
            typer.confirm(f"{name} will never apply the event at {position}. Skip it?", abort=True)
        entry = opened.skip_parked(name, position, by=f"cli:{getpass.getuser()}")
        left = len(opened.parked(name))
    if as_json:
        emit_json({"skipped": entry.as_dict(), "parked": left})
        return
    out().print(f"{name}: event {entry.position} ({escape(entry.type)}) skipped; {left} parked")
