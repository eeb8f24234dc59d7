"""The copy of a blue/green rebuild, from its empty tables to its swap (steps 2 to 4 of
the protocol in ``rebuild.py``; ``replay.py`` feeds it meanwhile).

The swap, in ONE transaction:

a. lock the live tracking row (``SELECT ... FOR UPDATE``; SQLite: the transaction holds
   the file's write lock). Every feeder's batch starts by locking that row (its *fence*),
   so the live feeder, in whatever process, has either committed its batch or waits at
   the fence of the next: nothing is written to the live tables meanwhile;
b. the copy applies what the live copy applied beyond it; a live copy a little behind
   the copy is brought level too (same code version only), so that both hold the same
   position;
c. each table is compared: row counts and a checksum of the rows, live against copy.
   Differences are reported in the outcome, never fatal: changed code is what a rebuild
   is for;
d. the live tables are dropped and the copy's renamed to their names (PostgreSQL: under
   ACCESS EXCLUSIVE locks taken in sorted order, the order in which every query takes
   its ACCESS SHARE locks, so queries and swap cannot deadlock);
e. the live tracking position becomes the copy's, and its count of applied events, and
   its parked events the live copy's (the copy kept those parked when the rebuild
   started, ``parking.py``); the code's version and the outcome are recorded; the
   copy's tracking table, status row and parked events are dropped.

A query either ran before the commit (old tables, whole) or waits for its table locks and
then sees the new tables whole (PostgreSQL takes its snapshot after the locks; a SQLite
reader has one snapshot of the file).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from projections.engine import parking
from projections.engine.base import ReadModel
from projections.engine.feed import Source
from projections.engine.outcome import Comparison, RebuildOutcome, TableComparison
from projections.engine.tables import ReadModelStore

COPY_PREFIX = "next_"
"""Prefixed to the live tables' prefix, it names a rebuild's copy."""
LEVEL_LIVE_UP_TO = 10_000
"""In the swap, a live copy at most this far behind the copy is brought level first."""

MakeOutcome = Callable[[int, int, int, Comparison], RebuildOutcome]
"""``(position, events, previous_version, comparison)`` -> the outcome to record."""
MakeView = Callable[[str, str], ReadModelStore]
"""``(table prefix, tracking table name)`` -> a recorder for those tables."""


def copy_view(live: ReadModel, make_view: MakeView) -> ReadModelStore:
    """Where the copy of ``live`` is built: its tables under another prefix."""
    prefix = live.view.table_prefix + COPY_PREFIX
    view = make_view(prefix, f"{prefix}{live.name}_tracking")
    view.versioned = False
    return view


def fresh_copy(live: ReadModel, make_view: MakeView, application_name: str) -> ReadModel:
    """An empty copy of ``live``'s tables, without secondary indexes (a bulk load is
    faster without them), at position 0: what an interrupted rebuild left is dropped."""
    view = copy_view(live, make_view)
    copy = type(live)(view, create=False)
    copy.fence_version = None  # this very code builds it
    view.create_support_tables()
    with view.writing() as cursor:
        view.serialise_ddl(cursor)
        for table in live.tables:
            view.drop_table(cursor, view.table_prefix + table)
        view.forget(cursor, live.name)
    view.create_table()  # its tracking table
    copy.create(indexes=False)
    view.start_tracking(application_name)
    return copy


def build_indexes(copy: ReadModel) -> None:
    """Create the copy's indexes before the swap, which then only renames them: only
    where ``renames_indexes`` (PostgreSQL; SQLite's are made in the swap)."""
    with copy.view.writing() as cursor:
        for statement in copy.index_ddl():
            cursor.execute(statement)


def drop_copy(live: ReadModel, make_view: MakeView) -> None:
    """Drop what a rebuild of ``live`` built (a failed one)."""
    view = copy_view(live, make_view)
    with view.writing() as cursor:
        for table in live.tables:
            view.drop_table(cursor, view.table_prefix + table)
        view.forget(cursor, live.name)


def swap(
    source: Source,
    live: ReadModel,
    copy: ReadModel,
    position: int,
    *,
    batch_size: int,
    outcome: MakeOutcome,
) -> RebuildOutcome:
    """Swap ``copy``, fed up to ``position``, in for ``live``; returns the outcome, which
    is recorded with the new version in the same transaction."""
    app, name = source.application_name, live.name
    view, copy_view = live.view, copy.view
    live_prefix, copy_prefix = view.table_prefix, copy_view.table_prefix
    # The copy read only its own topics: its count of events comes from the log
    # (counted before the transaction, which should be short).
    events = source.count(position)
    with view.writing() as cursor:
        # a. The live feeder waits at its fence from here on.
        live_at = view.lock_position(cursor, app)
        copy_view.fence(cursor, app, position)
        # b. Both at one position: the copy applies what the live copy applied beyond it;
        # a live copy a little behind is brought level too (same code version only).
        copy_at, leveled = level(source, cursor, copy, position, live_at, batch_size)
        events += leveled
        stored = view.read_versions_in(cursor).get(name)
        stored_version = live.version if stored is None else int(stored["version"])
        old_tables = list(dict.fromkeys([*(stored or {}).get("tables", []), *live.tables]))
        if stored_version == live.version and live_at < copy_at <= live_at + LEVEL_LIVE_UP_TO:
            live_at, _ = level(source, cursor, live, live_at, copy_at, batch_size)
        # c. Compared: differences are reported, never fatal. The copy's parked events
        # (those it kept parked from the live copy, and its own) replace the live copy's.
        comparison = compare(cursor, live, copy, old_tables, live_at, copy_at)
        live_parked = {entry.position for entry in parking.read(view, cursor, name)}
        parked = parking.read(copy_view, cursor, name)
        comparison = replace(
            comparison,
            live_parked=len(live_parked),
            new_parked=len(parked),
            kept_parked=sum(1 for entry in parked if entry.position in copy.hold),
            parked_equal=live_parked == {entry.position for entry in parked},
        )

        # d. The live tables dropped, the copy's renamed to their names (PostgreSQL: under
        # ACCESS EXCLUSIVE locks taken in sorted order, as every query takes its locks).
        existing = [t for t in old_tables if view.table_exists(cursor, live_prefix + t)]
        view.lock_exclusively(cursor, [live_prefix + t for t in existing])
        for table in existing:
            view.drop_table(cursor, live_prefix + table)
        for table in live.tables:
            copy_view.rename_table(cursor, copy_prefix + table, live_prefix + table)
            if view.renames_indexes:
                view.rename_indexes(cursor, live_prefix + table, copy_prefix, live_prefix)
        if not view.renames_indexes:
            for statement in live.index_ddl():
                cursor.execute(statement)

        # e. The live position becomes the copy's; the version and the outcome recorded.
        view.set_position(cursor, app, copy_at)
        view.set_events_applied(cursor, name, events)
        parking.clear(view, cursor, name)
        parking.write(view, cursor, name, parked)
        answer = outcome(copy_at, events, stored_version, comparison)
        view.record_version(cursor, name, live.version, live.tables, last_rebuild=answer)
        copy_view.forget(cursor, name)
    return answer


def level(
    source: Source, cursor: Any, model: ReadModel, position: int, target: int, batch_size: int
) -> tuple[int, int]:
    """Apply the log after ``position`` up to ``target`` to ``model``, in the caller's
    transaction (which holds the model's tracking row): (position, events applied)."""
    app, events = source.application_name, 0
    while position < target:
        batch = source.read(position, batch_size, stop=target)
        if not batch:
            break
        position = model.apply_in(cursor, batch, source.mapper, app)
        events += len(batch)
    return position, events


def compare(
    cursor: Any,
    live: ReadModel,
    copy: ReadModel,
    old_tables: Sequence[str],
    live_at: int,
    copy_at: int,
) -> Comparison:
    """Row counts and checksums of each table, live copy against new copy."""
    view, copy_view = live.view, copy.view
    tables: dict[str, TableComparison] = {}
    for table in dict.fromkeys([*old_tables, *live.tables]):
        old: tuple[int | None, str | None] = (None, None)
        new: tuple[int | None, str | None] = (None, None)
        if table in old_tables and view.table_exists(cursor, view.table_prefix + table):
            old = view.digest(cursor, view.table_prefix + table)
        if table in live.tables:
            new = copy_view.digest(cursor, copy_view.table_prefix + table)
        tables[table] = TableComparison(
            live_rows=old[0], new_rows=new[0], live_checksum=old[1], new_checksum=new[1]
        )
    return Comparison(live_position=live_at, new_position=copy_at, tables=tables)
