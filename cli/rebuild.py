"""``eventshop projections rebuild`` and ``reset``: a progress bar per read model while
they run (on stderr), then what the rebuild found (on stdout).

The bar counts events of the log, as the summary does: positions may have gaps (on
PostgreSQL a rolled-back append uses some up), so a bar that counted positions ended
above the events the summary reported.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from cli.output import AsJson, emit_json, err, out
from cli.readside import known, read_side, seconds
from projections import Progress as RebuildProgress
from projections import RebuildOutcome


class RebuildBars:
    """One bar per read model: queued ones wait with an empty bar and no figures, the
    running one counts events read of the log's events, at its rate, with an ETA."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=16),
            TextColumn("{task.fields[count]}", justify="right"),
            TextColumn("{task.fields[rate]}", justify="right"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[phase]}"),
            console=console,
        )

    def __enter__(self) -> RebuildBars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def queue(self, name: str, phase: str = "queued") -> TaskID:
        # A total of one, none done: an empty bar (no total would animate it as running).
        return self.progress.add_task(name, total=1, count="", rate="", eta="", phase=phase)

    def follow(self, task: TaskID) -> Any:
        """The callback that moves ``task``'s bar with the rebuild's news."""

        def on_progress(news: RebuildProgress) -> None:
            total = max(news.total, news.events)
            self.progress.update(
                task,
                completed=news.events,
                total=max(total, 1),
                count=f"{news.events:,}/{total:,} events",
                rate=f"{news.events_per_second:,.0f}/s" if news.events_per_second else "",
                eta=f"ETA {seconds(news.eta_seconds)}" if news.phase == "copying" else "",
                phase=news.phase,
            )

        return on_progress

    def finish(self, task: TaskID, outcome: RebuildOutcome) -> None:
        """The bar ends on the outcome's figures, the ones the summary prints."""
        events = outcome.events or 0
        self.progress.update(
            task,
            completed=max(events, 1),
            total=max(events, 1),
            count=f"{events:,}/{events:,} events",
            rate=f"{outcome.events_per_second or 0:,}/s",
            eta="",
            phase="done",
        )


def rebuild(
    name: Annotated[str | None, typer.Argument(help="the projection to rebuild")] = None,
    every: Annotated[bool, typer.Option("--all", help="rebuild every projection")] = False,
    as_json: AsJson = False,
) -> None:
    """Rebuild blue/green: a new copy of the tables is built from the whole log here, while
    the live copy keeps answering and following the log; once caught up, the two are
    compared (rows and a checksum per table; a difference is reported, expected when the
    projection's code changed) and swapped in one transaction; the old copy is dropped.
    Interrupted (Ctrl-C, a crash), it leaves the live copy as it was: just run it again.

    Progress goes to stderr (no bars with --json); the outcome to stdout (with --json one
    document: each projection's outcome by name)."""
    if (name is None) == (not every):
        raise typer.BadParameter("name one projection, or give --all", param_hint="NAME")
    with read_side() as opened:
        names = opened.names if every else [name or ""]
        for each in names:
            known(opened, each)
        outcomes = {}
        if as_json:
            outcomes = {each: opened.rebuild_blocking(each) for each in names}
        else:
            with RebuildBars(err()) as bars:
                tasks = {each: bars.queue(each) for each in names}
                for each in names:
                    outcomes[each] = opened.rebuild_blocking(each, bars.follow(tasks[each]))
                    bars.finish(tasks[each], outcomes[each])
    if as_json:
        emit_json({each: outcome.as_dict() for each, outcome in outcomes.items()})
        return
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
    # Fits 80 columns: a checksum is never cut (the two share a cell, one a line); a
    # table's name wraps if it must.
    table = Table(show_edge=False)
    table.add_column("table", overflow="fold")
    table.add_column("live rows", justify="right", no_wrap=True)
    table.add_column("new rows", justify="right", no_wrap=True)
    table.add_column("checksums: live, new", no_wrap=True)
    table.add_column("", no_wrap=True)
    for table_name, found in comparison.tables.items():
        table.add_row(
            table_name,
            _count(found.live_rows),
            _count(found.new_rows),
            f"{found.live_checksum or '-'}\n{found.new_checksum or '-'}",
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


def reset(
    name: Annotated[str, typer.Argument(help="the projection to reset")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Drop the projection's tables and build them again from position 0, in place.

    Unlike rebuild, the projection answers from EMPTY tables at once, then from partial
    ones until it has caught up with the log (read-your-writes queries wait or get 503
    meanwhile). Prefer "rebuild NAME", which keeps answering from the old copy; reset is
    for a copy you no longer trust to answer at all. The tables are fed here unless an
    "eventshop serve" or "worker" process feeds them; then this waits for it.
    """
    with read_side() as opened:
        known(opened, name)
        if not yes:
            typer.confirm(
                f"{name} will answer from empty tables until it has caught up again"
                f" (`rebuild {name}` would not). Reset it?",
                abort=True,
            )
        with RebuildBars(err()) as bars:
            task = bars.queue(name, phase="resetting")
            opened.reset_blocking(name, bars.follow(task))
    out().print(f"[bold]{name}[/bold] reset and caught up with the log")
