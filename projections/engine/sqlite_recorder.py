"""Read models in the SQLite file of the event store: what differs from PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteTrackingRecorder

from projections.engine.tables import ReadModelStore, quote


class SQLiteReadModelRecorder(ReadModelStore, SQLiteTrackingRecorder):
    """A read model in the SQLite file of the event store (or an in-memory database).

    The library's SQLite tracking table is one table called ``tracking`` for everything;
    here every read model gets its own, named like on PostgreSQL, so that all of them can
    track the same application under its own name.
    """

    dialect = "sqlite"
    rebuild_batch = 500
    """Each batch holds the whole file's write lock, which the shop's commands wait for."""
    rebuild_pause = 0.01
    """SQLite's writers are not served in turn: a command retrying for the lock must find
    it free now and then, not taken back at once."""
    rebuild_processes = 1
    """None: its batches are small and paced anyway."""

    def __init__(
        self,
        datastore: SQLiteDatastore,
        *,
        tracking_table_name: str = "tracking",
        table_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Read by construct_create_table_statements(), which the base __init__ calls.
        self.tracking_table_name = tracking_table_name
        super().__init__(datastore, **kwargs)
        if not datastore.single_row_tracking:
            raise ValueError("read models need single-row tracking (SINGLE_ROW_TRACKING=y)")
        if table_prefix is not None:
            self.table_prefix = table_prefix
        table = quote(tracking_table_name)
        self.insert_tracking_statement = (
            f"INSERT INTO {table} VALUES (:application_name, :notification_id) "
            "ON CONFLICT (application_name) DO UPDATE SET notification_id = :notification_id "
            f"WHERE {table}.notification_id < :notification_id RETURNING notification_id"
        )
        self.select_max_tracking_id_statement = (
            f"SELECT MAX(notification_id) FROM {table} WHERE application_name=?"
        )

    def construct_create_table_statements(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {quote(self.tracking_table_name)} ("
            "application_name TEXT, notification_id INTEGER, PRIMARY KEY (application_name))"
            " WITHOUT ROWID"
        ]

    def qualify(self, table: str) -> str:
        return quote(table)

    @contextmanager
    def writing(self) -> Iterator[SQLiteCursor]:
        # BEGIN IMMEDIATE takes the file's write lock before the first read, so the fence
        # reads the latest tracking row, not a snapshot another process has moved past.
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @contextmanager
    def reading(self, lock: Sequence[str] = ()) -> Iterator[SQLiteCursor]:
        # A SQLite reader sees one snapshot of the whole file (WAL): a swap is never
        # seen in part, and a writer never waits for it.
        with self.datastore.get_connection(commit=False) as conn:
            cursor = conn.cursor()
            cursor.execute("BEGIN")
            try:
                yield cursor
            finally:
                conn.rollback()

    def _lock_tracking_row(self, cursor: Any, application_name: str) -> int | None:
        cursor.execute(self.select_max_tracking_id_statement, (application_name,))
        row = cursor.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def table_exists(self, cursor: Any, table: str) -> bool:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        return cursor.fetchone() is not None

    def digest(self, cursor: Any, table: str) -> tuple[int, str]:
        # SQLite has no hash function: each row's 64-bit BLAKE2b, summed, in Python.
        raw = cursor.sqlite_cursor if isinstance(cursor, SQLiteCursor) else cursor
        raw.execute(f"SELECT * FROM {self.qualify(table)}")
        rows = total = 0
        while batch := raw.fetchmany(10_000):
            rows += len(batch)
            for row in batch:
                digest = hashlib.blake2b(repr(tuple(row)).encode(), digest_size=8).digest()
                total += int.from_bytes(digest, "big")
        return rows, f"{total % 2**64:016x}"
