"""One aggregate's stored events with their positions in the log, per kind of store.

The recorder offers an aggregate's events without their log positions
(``select_events``) and the log's positions without a filter by aggregate
(``select_notifications``); auditors want both, so this one query is written per store.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg import sql


def aggregate_events(
    recorder: ApplicationRecorder, aggregate_id: UUID, after: int, limit: int
) -> list[Notification]:
    """At most ``limit`` stored events of one aggregate after position ``after``, in log order."""
    if isinstance(recorder, PostgresApplicationRecorder):
        return _postgres(recorder, aggregate_id, after, limit)
    if isinstance(recorder, SQLiteApplicationRecorder):
        return _sqlite(recorder, aggregate_id, after, limit)
    # The in-memory store (its positions have no gaps): fine for a unit test's few events.
    rest = (recorder.max_notification_id() or 0) - after
    every = recorder.select_notifications(after, rest, inclusive_of_start=False) if rest > 0 else []
    return [n for n in every if n.originator_id == aggregate_id][:limit]


def _postgres(
    recorder: PostgresApplicationRecorder, aggregate_id: UUID, after: int, limit: int
) -> list[Notification]:
    datastore = recorder.datastore
    query = sql.SQL(
        "SELECT * FROM {} WHERE originator_id = %s AND notification_id > %s"
        " ORDER BY notification_id LIMIT %s"
    ).format(sql.Identifier(datastore.schema, recorder.events_table_name))
    with datastore.transaction(commit=False) as cursor:
        cursor.execute(query, (aggregate_id, after, limit))
        rows = cursor.fetchall()
    return [
        Notification(
            id=r["notification_id"],
            originator_id=r["originator_id"],
            originator_version=r["originator_version"],
            topic=r["topic"],
            state=bytes(r["state"]),
        )
        for r in rows
    ]


# SQLite's integers are signed 64-bit.
SQLITE_MAX_INTEGER = 2**63 - 1


def _sqlite(
    recorder: SQLiteApplicationRecorder, aggregate_id: UUID, after: int, limit: int
) -> list[Notification]:
    if after >= SQLITE_MAX_INTEGER:
        # Past SQLite's integers nothing is stored; sqlite3 would raise OverflowError.
        return []
    query = (
        f"SELECT rowid, * FROM {recorder.events_table_name}"
        " WHERE originator_id = ? AND rowid > ? ORDER BY rowid LIMIT ?"
    )
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(query, (aggregate_id.hex, after, limit))
        rows = cursor.fetchall()
    return [
        Notification(
            id=r["rowid"],
            originator_id=recorder.convert_originator_id(r["originator_id"]),
            originator_version=r["originator_version"],
            topic=r["topic"],
            state=r["state"],
        )
        for r in rows
    ]
