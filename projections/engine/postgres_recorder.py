"""Read models in PostgreSQL, in the schema of the event store: what differs from SQLite."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder

from eventstore.database import advisory_key
from eventstore.postgres import BoundedTracking
from projections.engine.tables import ReadModelStore, quote

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class PostgresReadModelRecorder(BoundedTracking, ReadModelStore, PostgresTrackingRecorder):
    """A read model in PostgreSQL, in the schema of the event store (its reads of its
    position wait for the database once: eventstore/postgres.py)."""

    dialect = "postgres"
    renames_indexes = True
    prepare_queries = False
    """Never turn a query's statement into a server-side prepared one: a prepared
    ``SELECT *`` fails ("cached plan must not change result type") once a rebuild has
    swapped in tables with other columns."""
    rebuild_batch = 2000
    rebuild_processes = os.cpu_count() or 1

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        tracking_table_name: str = "notification_tracking",
        table_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name, **kwargs)
        if not datastore.single_row_tracking:
            raise ValueError("read models need single-row tracking (SINGLE_ROW_TRACKING=y)")
        if table_prefix is not None:
            self.table_prefix = table_prefix

    def qualify(self, table: str) -> str:
        self.check_identifier_length(table)
        return f"{quote(self.datastore.schema)}.{quote(table)}"

    def bind(self, statement: str) -> str:
        return _PARAM.sub(r"%(\1)s", statement)  # psycopg wants ``%(name)s``

    @contextmanager
    def writing(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as cursor:
            yield cursor

    @contextmanager
    def reading(self, lock: Sequence[str] = ()) -> Iterator[Any]:
        with self.datastore.get_connection() as conn, conn.transaction():
            cursor = conn.cursor()
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if lock:
                # LOCK takes no snapshot: the snapshot comes after the locks, so a swap
                # that held them is seen whole. Every reader and every swap locks tables
                # in sorted order, so they cannot deadlock.
                cursor.execute(f"LOCK TABLE {', '.join(lock)} IN ACCESS SHARE MODE")
            yield cursor

    def serialise_ddl(self, cursor: Any) -> None:
        key = advisory_key("ddl", self.datastore.schema)
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (key,))

    def lock_exclusively(self, cursor: Any, tables: Sequence[str]) -> None:
        if tables:
            names = ", ".join(sorted(self.qualify(t) for t in tables))
            cursor.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")

    def rename_indexes(self, cursor: Any, table: str, old_prefix: str, new_prefix: str) -> None:
        # Index names are unique per schema: the next copy's must be free again, and a
        # later start's CREATE INDEX IF NOT EXISTS must find the live ones by name.
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            (self.datastore.schema, table),
        )
        for row in cursor.fetchall():
            index = row["indexname"]
            if index.startswith(old_prefix):
                new = new_prefix + index[len(old_prefix) :]
                self.check_identifier_length(new)
                cursor.execute(f"ALTER INDEX {self.qualify(index)} RENAME TO {quote(new)}")

    def table_exists(self, cursor: Any, table: str) -> bool:
        cursor.execute("SELECT to_regclass(%s) AS found", (self.qualify(table),))
        row = cursor.fetchone()
        return row is not None and row["found"] is not None

    def digest(self, cursor: Any, table: str) -> tuple[int, str]:
        # Each row's 64-bit hash, summed: independent of row order. PostgreSQL's own
        # hash of the row's values (14+): no text made of each row, about twice as fast
        # as hashing its text, which was three times faster than md5.
        cursor.execute(
            "SELECT count(*) AS n, coalesce(sum(hash_record_extended(t, 0)), 0) AS s"
            f" FROM {self.qualify(table)} AS t"
        )
        row = cursor.fetchone()
        return int(row["n"]), f"{int(row['s']) % 2**64:016x}"

    def _lock_tracking_row(self, cursor: Any, application_name: str) -> int | None:
        cursor.execute(
            f"SELECT notification_id FROM {self.tracking_table}"
            " WHERE application_name = %s FOR UPDATE",
            (application_name,),
        )
        row = cursor.fetchone()
        return None if row is None else int(row["notification_id"])
