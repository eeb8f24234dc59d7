"""``eventshop projections``: the read models' status, blue/green rebuilds and resets.

Every command works on the store EVENTSHOP_DATABASE_URL names (eventshop.settings.Settings),
next to whatever ``eventshop serve`` / ``worker`` processes feed the read models: a
rebuild here builds the new copy in this process while they keep serving and feeding
the live one, and the swap hands the read model back to them (projections/engine/rebuild.py).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.text import shown
from domain.errors import DomainError
from eventshop.bootstrap import open_read_side, open_shop
from eventshop.settings import Settings
from projections import AlreadyRebuilding, ReadSide, RebuildOutcome
from projections import Progress as RebuildProgress

projections = typer.Typer(
    help="Operate the read models: status, blue/green rebuilds, resets, parked events.",
    no_args_is_help=True,
)
parked = typer.Typer(
    help="Events a read model's handlers failed on, parked: list, retry after a fix, skip.",
    no_args_is_help=True,
)
projections.add_typer(parked, name="parked")


def out() -> Console:
    return Console()


def err() -> Console:
    return Console(stderr=True)


@contextmanager
def _read_side() -> Iterator[ReadSide]:
    """The read side of the configured store; nothing is fed here unless a command does."""
    settings = Settings()
    if settings.database_url.is_memory:
        err().print(
            "[red]memory:// lives inside one process: there is nothing to operate from"
            " here. Point EVENTSHOP_DATABASE_URL at a sqlite:/// or postgresql:// store.[/red]"
        )
        raise typer.Exit(2)
    # The log's tables are the write side's to create, on a database nothing wrote yet.
    open_shop(settings).close()
    read_side = open_read_side(settings)
    try:
        yield read_side
    except (typer.Exit, typer.Abort):
        raise
    except AlreadyRebuilding as error:
        err().print(f"[red]{shown(error.detail)}[/red]")
        raise typer.Exit(1) from None
    except DomainError as error:
        err().print(f"[red]{shown(error.detail)}[/red]")
        raise typer.Exit(2) from None
    except Exception as error:
        # A failed rebuild: the live copy is untouched; say why, no traceback.
        err().print(f"[red]{type(error).__name__}: {shown(error)}[/red]")
        raise typer.Exit(1) from None
    finally:
        read_side.close()


def _known(read_side: ReadSide, name: str) -> None:
    if name not in read_side.names:
        err().print(
            f"[red]no projection named {shown(repr(name))}; there are {', '.join(read_side.names)}"
        )
        raise typer.Exit(2)


# --- status ------------------------------------------------------------------------------------


@projections.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON, not a table")] = False,
) -> None:
    """Each read model: state, version, position, head, lag, speed, rebuild progress,
    the last rebuild's outcome, and which worker feeds it."""
    with _read_side() as read_side:
        entries = read_side.status()
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    head = max((entry["head"] for entry in entries), default=0)
    table = Table(title=f"projections (log head {head:,})")
    for column in ("name", "state", "version", "position", "lag", "events/s"):
        table.add_column(column, no_wrap=True, justify="left" if column == "name" else "right")
    table.add_column("rebuild", no_wrap=True)
    table.add_column("last rebuild", overflow="fold")
    table.add_column("worker", overflow="fold")
    for entry in entries:
        table.add_row(
            entry["name"],
            _state(entry["state"]),
            _version(entry),
            f"{entry['position']:,}",
            f"{entry['lag']:,}",
            f"{entry['events_per_second']:,.0f}",
            _running(entry["rebuild"]),
            _last(entry["last_rebuild"]),
            entry["worker"] or "-",
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


def _running(rebuild: dict[str, Any] | None) -> str:
    if not rebuild:
        return "-"
    share = rebuild["position"] / rebuild["target"] if rebuild["target"] else 1.0
    eta = rebuild.get("eta_seconds")
    return (
        f"{rebuild['phase']} {share:.0%} ({rebuild['position']:,}/{rebuild['target']:,},"
        f" {rebuild['events_per_second']:,.0f}/s, ETA {_seconds(eta)})"
    )


def _last(last: dict[str, Any] | None) -> str:
    if not last:
        return "-"
    if last.get("error"):
        return f"[red]{shown(last['error'])}[/red]"
    when = last.get("finished_at") or "?"
    if last.get("reset"):
        return f"{when}: reset"
    comparison = last["comparison"]
    verdict = (
        "copies equal"
        if comparison["equal"]
        else f"differed in {', '.join(comparison['differences']) or 'position'}"
    )
    return f"{when}: v{last['version']}, {last['events_per_second']:,}/s, {verdict}"


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


# --- rebuild and reset -------------------------------------------------------------------------


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.completed:>12,.0f}/{task.total:,.0f} events"),
        TextColumn("{task.fields[rate]:>10}"),
        TextColumn("ETA {task.fields[eta]:>6}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[phase]}"),
        console=err(),
    )


def _follow(progress: Progress, task: TaskID) -> Any:
    def on_progress(news: RebuildProgress) -> None:
        progress.update(
            task,
            completed=news.position,
            total=max(news.target, news.position, 1),
            rate=f"{news.events_per_second:,.0f}/s",
            eta=_seconds(news.eta_seconds),
            phase=news.phase,
        )

    return on_progress


@projections.command()
def rebuild(
    name: Annotated[str | None, typer.Argument(help="the projection to rebuild")] = None,
    every: Annotated[bool, typer.Option("--all", help="rebuild every projection")] = False,
) -> None:
    """Rebuild blue/green: a new copy of the tables is built from the whole log here, while
    the live copy keeps answering and following the log; once caught up, the two are
    compared (rows and a checksum per table; a difference is reported, expected when the
    projection's code changed) and swapped in one transaction; the old copy is dropped.
    Interrupted (Ctrl-C, a crash), it leaves the live copy as it was: just run it again."""
    if (name is None) == (not every):
        raise typer.BadParameter("name one projection, or give --all", param_hint="NAME")
    with _read_side() as read_side:
        names = read_side.names if every else [name or ""]
        for each in names:
            _known(read_side, each)
        outcomes = {}
        with _progress_bar() as progress:
            for each in names:
                task = progress.add_task(each, total=1, rate="", eta="?", phase="starting")
                outcomes[each] = read_side.rebuild_blocking(each, _follow(progress, task))
    for each, outcome in outcomes.items():
        _report(each, outcome)


def _report(name: str, outcome: RebuildOutcome) -> None:
    comparison = outcome.comparison
    assert comparison is not None  # a rebuild that failed raised instead
    out().print(
        f"[bold]{name}[/bold]: version {outcome.version}, {outcome.events or 0:,} events in"
        f" {outcome.seconds or 0:.1f} s ({outcome.events_per_second or 0:,} events/s),"
        f" swapped in at position {outcome.position or 0:,}"
    )
    table = Table(show_edge=False)
    for column in ("table", "live rows", "new rows", "live checksum", "new checksum", ""):
        table.add_column(column, justify="right" if "rows" in column else "left")
    for table_name, found in comparison.tables.items():
        table.add_row(
            table_name,
            _count(found.live_rows),
            _count(found.new_rows),
            found.live_checksum or "-",
            found.new_checksum or "-",
            "[green]equal[/green]" if found.equal else "[yellow]differs[/yellow]",
        )
    out().print(table)
    if comparison.live_position != comparison.new_position:
        out().print(
            f"  compared at different positions (live {comparison.live_position:,}, new"
            f" {comparison.new_position:,}): the live copy was not being fed"
        )
    if comparison.new_parked or comparison.live_parked:
        out().print(
            f"  parked events: {comparison.live_parked:,} live, {comparison.new_parked:,} new"
            f" ({comparison.kept_parked:,} kept parked from the live copy, not applied)"
        )
    if comparison.differences:
        out().print(
            "  [yellow]the copies differ: expected when the projection's code changed;"
            " otherwise the old copy had drifted, and the new one is what the log says[/yellow]"
        )


def _count(rows: int | None) -> str:
    return "-" if rows is None else f"{rows:,}"


@projections.command()
def reset(
    name: Annotated[str, typer.Argument(help="the projection to reset")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Drop the projection's tables and build them again from position 0, in place.

    Unlike ``rebuild``, the projection answers from EMPTY tables at once, then from
    partial ones until it has caught up with the log (read-your-writes queries wait or
    get 503 meanwhile). Prefer ``rebuild NAME``, which keeps answering from the old copy;
    reset is for a copy you no longer trust to answer at all. The tables are fed here
    unless an ``eventshop serve`` / ``worker`` process feeds them; then this waits for it.
    """
    with _read_side() as read_side:
        _known(read_side, name)
        if not yes:
            typer.confirm(
                f"{name} will answer from empty tables until it has caught up again"
                f" (`rebuild {name}` would not). Reset it?",
                abort=True,
            )
        with _progress_bar() as progress:
            task = progress.add_task(name, total=1, rate="", eta="?", phase="resetting")
            read_side.reset_blocking(name, _follow(progress, task))
    out().print(f"[bold]{name}[/bold] reset and caught up with the log")


# --- parked events -----------------------------------------------------------------------------


@parked.command("list")
def list_parked(
    name: Annotated[str, typer.Argument(help="the projection")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON, not a table")] = False,
) -> None:
    """The events NAME's handlers failed on, parked, in log order."""
    with _read_side() as read_side:
        _known(read_side, name)
        entries = read_side.parked(name)
    if as_json:
        typer.echo(json.dumps([entry.as_dict() for entry in entries], indent=2))
        return
    table = Table(title=f"{name}: {len(entries)} parked event(s)")
    for column in ("position", "type", "aggregate", "version", "parked at", "retries", "error"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        # User text may be in an error: printed as it is, never read as markup.
        table.add_row(
            str(entry.position),
            escape(entry.type),
            entry.aggregate_id,
            str(entry.aggregate_version),
            entry.parked_at,
            str(entry.retries),
            escape(entry.error),
        )
    out().print(table)


@parked.command("retry")
def retry_parked(
    name: Annotated[str, typer.Argument(help="the projection")],
    position: Annotated[int, typer.Argument(help="the parked event's position", min=1)],
) -> None:
    """Apply the parked event now (after a fix of the code), exactly once, with the events
    of its aggregate parked behind it. If it fails again nothing is written (exit 2)."""
    with _read_side() as read_side:
        _known(read_side, name)
        entry = read_side.retry_parked(name, position)
        left = len(read_side.parked(name))
    out().print(f"{name}: event {entry.position} ({escape(entry.type)}) applied; {left} parked")


@parked.command("skip")
def skip_parked(
    name: Annotated[str, typer.Argument(help="the projection")],
    position: Annotated[int, typer.Argument(help="the parked event's position", min=1)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Give up on the parked event: NAME will never apply it (rebuilds skip it too); the
    skip is recorded with who and when."""
    with _read_side() as read_side:
        _known(read_side, name)
        if not yes:
            typer.confirm(f"{name} will never apply the event at {position}. Skip it?", abort=True)
        entry = read_side.skip_parked(name, position, by=f"cli:{getpass.getuser()}")
        left = len(read_side.parked(name))
    out().print(f"{name}: event {entry.position} ({escape(entry.type)}) skipped; {left} parked")
