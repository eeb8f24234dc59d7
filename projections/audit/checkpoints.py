"""Where kept chain heads live: the ``audit_checkpoints`` table, one kind per store.

The table sits in the event store's own database (the PostgreSQL schema of the log, or
the SQLite file); the in-memory store keeps its checkpoints in the object. DDL runs in
:meth:`CheckpointTable.create_table` and nowhere else: the composition root calls it
once, under the migration lock (``eventshop.bootstrap.open_auditor``), so reading and
keeping checkpoints only ever selects and inserts rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg import sql

from projections.audit.chain import Checkpoint

CHECKPOINTS_TABLE = "audit_checkpoints"


class CheckpointTable(Protocol):
    """The chain heads kept so far, by log position."""

    def create_table(self) -> None:
        """Create the table if missing (at migration, under the migration lock)."""
        ...

    def between(self, after: int, upto: int, limit: int) -> list[Checkpoint]:
        """The checkpoints after position ``after`` up to ``upto``, in order, at most ``limit``."""
        ...

    def last(self) -> Checkpoint | None:
        """The checkpoint at the highest position, if any."""
        ...

    def save(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Keep these; a position already kept keeps its first head."""
        ...


def checkpoint_table(recorder: ApplicationRecorder) -> CheckpointTable:
    """The checkpoints table beside the log ``recorder`` reads."""
    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresCheckpoints(recorder)
    if isinstance(recorder, SQLiteApplicationRecorder):
        return SQLiteCheckpoints(recorder)
    return MemoryCheckpoints()


class PostgresCheckpoints:
    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self.datastore = recorder.datastore
        self.table = sql.Identifier(self.datastore.schema, CHECKPOINTS_TABLE)

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY,"
                    " events bigint NOT NULL, head bytea NOT NULL,"
                    " recorded_at timestamptz NOT NULL DEFAULT now())"
                ).format(self.table)
            )

    def _select(self, where_order_limit: str, params: Sequence[Any]) -> list[Checkpoint]:
        query = sql.SQL("SELECT position, events, head FROM {} " + where_order_limit)
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(query.format(self.table), params)
            rows = cursor.fetchall()
        return [Checkpoint(r["position"], r["events"], bytes(r["head"])) for r in rows]

    def between(self, after: int, upto: int, limit: int) -> list[Checkpoint]:
        return self._select(
            "WHERE position > %s AND position <= %s ORDER BY position LIMIT %s",
            (after, upto, limit),
        )

    def last(self) -> Checkpoint | None:
        rows = self._select("ORDER BY position DESC LIMIT 1", ())
        return rows[0] if rows else None

    def save(self, checkpoints: Sequence[Checkpoint]) -> None:
        if not checkpoints:
            return
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(
                sql.SQL(
                    "INSERT INTO {} (position, events, head) VALUES (%s, %s, %s)"
                    " ON CONFLICT (position) DO NOTHING"
                ).format(self.table),
                [(c.position, c.events, c.head) for c in checkpoints],
            )


class SQLiteCheckpoints:
    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self.datastore = recorder.datastore

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS_TABLE} (position INTEGER PRIMARY KEY,"
                " events INTEGER NOT NULL, head BLOB NOT NULL,"
                " recorded_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
            )

    def _select(self, where_order_limit: str, params: Sequence[Any]) -> list[Checkpoint]:
        query = f"SELECT position, events, head FROM {CHECKPOINTS_TABLE} {where_order_limit}"
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, params)
            rows = cursor.fetchall()
        return [Checkpoint(r[0], r[1], bytes(r[2])) for r in rows]

    def between(self, after: int, upto: int, limit: int) -> list[Checkpoint]:
        return self._select(
            "WHERE position > ? AND position <= ? ORDER BY position LIMIT ?", (after, upto, limit)
        )

    def last(self) -> Checkpoint | None:
        rows = self._select("ORDER BY position DESC LIMIT 1", ())
        return rows[0] if rows else None

    def save(self, checkpoints: Sequence[Checkpoint]) -> None:
        if not checkpoints:
            return
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(
                f"INSERT OR IGNORE INTO {CHECKPOINTS_TABLE} (position, events, head)"
                " VALUES (?, ?, ?)",
                [(c.position, c.events, c.head) for c in checkpoints],
            )


class MemoryCheckpoints:
    """The in-memory store's stand-in: fine for the few events of a unit test."""

    def __init__(self) -> None:
        self.kept: dict[int, Checkpoint] = {}

    def create_table(self) -> None:
        """Nothing to create: the checkpoints live in this object."""

    def between(self, after: int, upto: int, limit: int) -> list[Checkpoint]:
        return [self.kept[p] for p in sorted(self.kept) if after < p <= upto][:limit]

    def last(self) -> Checkpoint | None:
        return self.kept[max(self.kept)] if self.kept else None

    def save(self, checkpoints: Sequence[Checkpoint]) -> None:
        for checkpoint in checkpoints:
            self.kept.setdefault(checkpoint.position, checkpoint)
