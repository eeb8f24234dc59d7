"""``eventshop projections`` at 80 columns and with ``--json``; what the rebuild's
progress bars count: events, like the summary, and nothing for a read model queued."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from psycopg import sql
from rich.console import Console
from typer.testing import CliRunner

from cli.projections import projections
from cli.rebuild import RebuildBars
from commands.service import Shop
from projections import Progress, RebuildOutcome
from tests.projections.support import World, event_count, opened

AT_80 = {"COLUMNS": "80"}


def fits(text: str) -> bool:
    return all(len(line) <= 80 for line in text.splitlines())


def test_status_at_80_columns_and_as_json(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with opened(url) as (shop, read_side):
        World(shop).seed(6)
        names = read_side.names
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", url)
    cli = CliRunner()
    rebuilt = cli.invoke(projections, ["rebuild", "orders", "--json"], env=AT_80)
    assert rebuilt.exit_code == 0, rebuilt.output
    outcome = json.loads(rebuilt.stdout)["orders"]
    assert outcome["events"] == event_count_of(url)
    assert outcome["comparison"]["tables"]["order_history"]["equal"] is True
    assert rebuilt.stderr == ""  # no bars for scripts

    table = cli.invoke(projections, ["status"], env=AT_80)
    assert table.exit_code == 0, table.output
    assert fits(table.stdout), table.stdout
    # The headers stay words (the last rebuild's was split into letters), every read
    # model is named, and the last rebuild says what it found.
    header = next(line for line in table.stdout.splitlines() if "name" in line)
    assert header.split()[:6] == ["name", "state", "v", "position", "lag", "ev/s"]
    for name in names:
        assert name in table.stdout
    assert "rebuilt" in table.stdout and "copies" in table.stdout

    entries = json.loads(cli.invoke(projections, ["status", "--json"], env=AT_80).stdout)
    assert [entry["name"] for entry in entries] == names
    assert all(list(entry) == sorted(entry) for entry in entries)  # stable keys


def event_count_of(url: str) -> int:
    with opened(url) as (shop, _):
        return event_count(shop)


def news(events: int, total: int, phase: str = "copying", rate: float = 0.0) -> Progress:
    progress = Progress("orders", "w", "now", phase=phase)
    progress.position, progress.target = events + 7, total + 9  # positions have gaps
    progress.events, progress.total, progress.events_per_second = events, total, rate
    return progress


def render(bars: RebuildBars) -> list[str]:
    console = Console(file=io.StringIO(), width=80)
    console.print(bars.progress.get_renderable())
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def test_the_bars_count_events_and_show_nothing_for_a_queued_model() -> None:
    bars = RebuildBars(Console(file=io.StringIO(), width=80))
    running = bars.queue("orders")
    bars.queue("payment_expiry")
    bars.follow(running)(news(1_000, 34_219, rate=500))
    first, second = render(bars)
    assert "1,000/34,219 events" in first and "500/s" in first and "ETA 1m06s" in first
    # Queued: no figures at all (it showed "0/1 events 0/s").
    assert "queued" in second and "0/1" not in second and "/s" not in second
    assert "events" not in second and "ETA" not in second

    outcome = RebuildOutcome(worker="w", started_at="now", events=34_219, events_per_second=9)
    bars.finish(running, outcome)
    first, _ = render(bars)
    assert "34,219/34,219 events" in first and "done" in first


def skip_positions(shop: Shop, how_many: int) -> None:
    """Use up positions as rolled-back appends do on PostgreSQL: a gap in the log."""
    recorder: Any = shop.recorder
    table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)
    with recorder.datastore.get_connection() as conn:
        name = table.as_string(conn)
        conn.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'notification_id'),"
            " nextval(pg_get_serial_sequence(%s, 'notification_id')) + %s)",
            (name, name, how_many),
        )


def test_the_bar_and_the_summary_count_the_same_events(
    pg_reused_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with opened(pg_reused_url) as (shop, read_side):
        World(shop).seed(4)
        skip_positions(shop, 500)
        World(shop).seed(4)
        events, head = event_count(shop), shop.head()
        assert head > events + 400
        seen: list[Progress] = []
        outcome = read_side.rebuild_blocking("carts", seen.append)
        assert outcome.events == events
        assert all(p.events <= p.total == events for p in seen)
        assert seen[-1].events == events and seen[-1].position == head
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", pg_reused_url)
    result = CliRunner().invoke(projections, ["rebuild", "orders"], env=AT_80)
    assert result.exit_code == 0, result.output
    assert f"{events:,} events in" in result.stdout  # the summary
    assert f"{events:,}/{events:,} events" in result.stderr  # the bar, at its end
    assert f"{head:,} events" not in result.stderr
