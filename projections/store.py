"""Where read models live: eventsourcing tracking recorders that also hold our tables.

A read model's rows and its tracking position are written in ONE transaction of the
database that holds the event log (PostgreSQL, same schema; or the SQLite file), so a
crash at any point neither loses nor repeats an event. Both recorders subclass the
library's tracking recorders and call its ``_insert_tracking`` inside our own
transaction, which also takes a *fence*: the tracking row is locked and must still hold
the position the batch started from, so two processes can never both apply one event.

SQL is written once for both databases: ``:name`` parameters and ``{table}``
placeholders, compiled per dialect by :func:`compile_sql`.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

import psycopg
from eventsourcing import persistence as es
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteTrackingRecorder

STATUS_TABLE = "projections"
"""Per projection: events applied (counted in the batch transaction) and reported state."""

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class LostOwnership(Exception):
    """The tracking row moved under us: another worker processed these events."""


class Tx:
    """A cursor that runs our portable SQL (``:name`` parameters, ``{table}`` names)."""

    def __init__(self, cursor: Any, compile_: Any) -> None:
        self._cursor = cursor
        self._compile = compile_

    def execute(self, template: str, params: Mapping[str, Any] | None = None) -> Tx:
        self._cursor.execute(self._compile(template), params or {})
        return self

    def executemany(self, template: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self._cursor.executemany(self._compile(template), rows)

    def rows(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._cursor.fetchall()]

    def row(self) -> dict[str, Any] | None:
        row = self._cursor.fetchone()
        return None if row is None else dict(row)


class ReadModelStore(TrackingRecorder, ABC):
    """What both read-model recorders add to the library's tracking recorders."""

    dialect: ClassVar[str]
    table_prefix: str = ""
    """Prepended to every table name: a second copy of a read model (a rebuild) gets another."""
    tracking_table_name: str

    @abstractmethod
    def qualify(self, table: str) -> str:
        """The quoted (and on PostgreSQL schema-qualified) name of a table."""

    def compile_sql(self, template: str, tables: Mapping[str, str]) -> str:
        """Our portable SQL (``{table}`` names, ``:name`` parameters) in this dialect."""
        return self.bind(template.format_map(tables))

    def bind(self, statement: str) -> str:
        """``:name`` parameters in this dialect (psycopg wants ``%(name)s``)."""
        return _PARAM.sub(r"%(\1)s", statement) if self.dialect == "postgres" else statement

    @property
    def status_table(self) -> str:
        return self.qualify(self.table_prefix + STATUS_TABLE)

    @property
    def tracking_table(self) -> str:
        return self.qualify(self.tracking_table_name)

    # --- transactions ------------------------------------------------------------------

    @abstractmethod
    def writing(self, *, pipeline: bool = False) -> AbstractContextManager[Any]:
        """A write transaction. With ``pipeline`` (PostgreSQL), statements are sent without
        waiting for each result: an error then surfaces at the next sync, not at its own
        statement."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[Any]:
        """A read-only transaction on one snapshot, so a multi-table answer is consistent."""

    @abstractmethod
    def _lock_tracking_row(self, cursor: Any, application_name: str) -> int | None:
        """The tracked position, locked until the end of the transaction."""

    # --- set-up --------------------------------------------------------------------------

    def create_read_model(self, name: str, ddl: Sequence[str]) -> None:
        """Create the read model's tables (and its status row) if they do not exist."""
        with self.writing() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.status_table} ("
                "name TEXT PRIMARY KEY, events_applied BIGINT NOT NULL DEFAULT 0,"
                " state TEXT, worker TEXT, events_per_second BIGINT, last_error TEXT,"
                " heartbeat_at TEXT)"
            )
            for statement in ddl:
                cursor.execute(statement)
            cursor.execute(
                self.bind(f"INSERT INTO {self.status_table} (name) VALUES (:name)")
                + " ON CONFLICT (name) DO NOTHING",
                {"name": name},
            )

    def start_tracking(self, application_name: str) -> None:
        """Track position 0 unless something is tracked: every batch needs a row to fence on."""
        with self.writing() as cursor:
            cursor.execute(
                self.bind(
                    f"INSERT INTO {self.tracking_table} (application_name, notification_id)"
                    " VALUES (:a, 0) ON CONFLICT (application_name) DO NOTHING"
                ),
                {"a": application_name},
            )

    # --- tracking ----------------------------------------------------------------------

    def fence(self, cursor: Any, application_name: str, expected: int) -> None:
        """Lock the tracking row; refuse to go on unless it still says ``expected``."""
        found = self._lock_tracking_row(cursor, application_name)
        if (found or 0) != expected:
            raise LostOwnership(
                f"{self.tracking_table_name} is at {found}, not {expected}: another worker"
                " processed these events"
            )

    def track(self, cursor: Any, name: str, tracking: Tracking, events: int) -> None:
        """Advance the tracking position and count the events, in the caller's transaction."""
        # The library's own insert, in our transaction (it refuses to move backwards).
        self._insert_tracking(cursor, tracking)  # type: ignore[attr-defined]
        cursor.execute(
            self.bind(
                f"UPDATE {self.status_table} SET events_applied = events_applied + :n"
                " WHERE name = :name"
            ),
            {"n": events, "name": name},
        )

    def position(self, application_name: str) -> int:
        """The last position of the log applied to this read model (0: none)."""
        return int(self.max_tracking_id(application_name) or 0)

    # --- status --------------------------------------------------------------------------

    def write_status(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Publish the state of the projections this process holds, for every API process."""
        with self.writing() as cursor:
            for row in rows:
                cursor.execute(
                    self.bind(
                        f"UPDATE {self.status_table} SET state = :state, worker = :worker,"
                        " events_per_second = :eps, last_error = :error,"
                        " heartbeat_at = :heartbeat_at WHERE name = :name"
                    ),
                    {**row, "error": json.dumps(row["error"]) if row["error"] else None},
                )

    def read_status(self) -> dict[str, dict[str, Any]]:
        with self.reading() as cursor:
            cursor.execute(f"SELECT * FROM {self.status_table}")
            rows = [dict(r) for r in cursor.fetchall()]
        for row in rows:
            row["last_error"] = json.loads(row["last_error"]) if row["last_error"] else None
        return {row["name"]: row for row in rows}


class PostgresReadModelRecorder(ReadModelStore, PostgresTrackingRecorder):
    """A read model in PostgreSQL, in the schema of the event store."""

    dialect = "postgres"

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
        return f"{_quote(self.datastore.schema)}.{_quote(table)}"

    @contextmanager
    def writing(self, *, pipeline: bool = False) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as cursor:
            if not pipeline:
                yield cursor
                return
            # One round trip per batch instead of one per statement: 1.5-2.5x faster.
            with cursor.connection.pipeline():
                yield cursor

    @contextmanager
    def reading(self) -> Iterator[Any]:
        with self.datastore.get_connection() as conn, conn.transaction():
            cursor = conn.cursor()
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield cursor

    def _lock_tracking_row(self, cursor: Any, application_name: str) -> int | None:
        cursor.execute(
            f"SELECT notification_id FROM {self.tracking_table}"
            " WHERE application_name = %s FOR UPDATE",
            (application_name,),
        )
        row = cursor.fetchone()
        return None if row is None else int(row["notification_id"])


class SQLiteReadModelRecorder(ReadModelStore, SQLiteTrackingRecorder):
    """A read model in the SQLite file of the event store (or an in-memory database).

    The library's SQLite tracking table is one table called ``tracking`` for everything;
    here every read model gets its own, named like on PostgreSQL, so that all of them can
    track the same application under its own name.
    """

    dialect = "sqlite"

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
        table = _quote(tracking_table_name)
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
            f"CREATE TABLE IF NOT EXISTS {_quote(self.tracking_table_name)} ("
            "application_name TEXT, notification_id INTEGER, PRIMARY KEY (application_name))"
            " WITHOUT ROWID"
        ]

    def qualify(self, table: str) -> str:
        return _quote(table)

    @contextmanager
    def writing(self, *, pipeline: bool = False) -> Iterator[SQLiteCursor]:
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
    def reading(self) -> Iterator[SQLiteCursor]:
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


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock, from names."""
    digest = hashlib.sha256("\x1f".join(("eventshop", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def is_transient(error: BaseException) -> bool:
    """Worth retrying as is: the database was busy or unreachable, the code is not at fault."""
    if isinstance(error, es.OperationalError | es.InterfaceError | psycopg.OperationalError):
        return True
    if isinstance(error, sqlite3.OperationalError):
        message = str(error).lower()
        return "locked" in message or "busy" in message
    return False
