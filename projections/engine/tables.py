"""Where read models live: eventsourcing tracking recorders that also hold our tables.

A read model's rows and its tracking position are written in ONE transaction of the
database that holds the event log (PostgreSQL, same schema; or the SQLite file), so a
crash at any point neither loses nor repeats an event. Both recorders subclass the
library's tracking recorders and call its ``_insert_tracking`` inside our own
transaction, which also takes a *fence*: the tracking row is locked and must still hold
the position the batch started from, so two processes can never both apply one event.

SQL is written once for both databases: ``:name`` parameters and ``{table}``
placeholders, compiled per dialect by :func:`compile_sql`. What differs between the two
databases is in their recorders: ``postgres_recorder.py`` and ``sqlite_recorder.py``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.persistence import Tracking, TrackingRecorder

if TYPE_CHECKING:
    from projections.engine.outcome import RebuildOutcome

STATUS_TABLE = "projections"
"""Per projection: events applied (counted in the batch transaction, served by
``status()``) and the state its feeder reports."""
VERSIONS_TABLE = "projection_versions"
"""Per projection: the version of the code that built its live tables, which tables those
are, and its blue/green rebuilds (the running one's progress, the last one's outcome)."""


class LostOwnership(Exception):
    """The tracking row moved under us: another worker processed these events."""


class Outdated(LostOwnership):
    """The live tables were built by another version of the read model's code."""

    def __init__(self, name: str, stored: int, code: int) -> None:
        newer = "an older" if stored < code else "a newer"
        super().__init__(
            f"the {name} tables are at version {stored}, this code at version {code}"
            f" ({newer} version built them); a blue/green rebuild replaces them"
        )
        self.stored = stored
        self.code = code


class Tx:
    """A cursor that runs our portable SQL (``:name`` parameters, ``{table}`` names),
    ``prepare``-d or not (``ReadModelStore.prepare_queries``)."""

    def __init__(self, cursor: Any, compile_: Any, *, prepare: bool | None = None) -> None:
        self._cursor = cursor
        self._compile = compile_
        self._options = {} if prepare is None else {"prepare": prepare}

    @property
    def cursor(self) -> Any:
        """The cursor itself, for another store's statements in the same transaction."""
        return self._cursor

    def execute(self, template: str, params: Mapping[str, Any] | None = None) -> Tx:
        self._cursor.execute(self._compile(template), params or {}, **self._options)
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
    versioned: bool = True
    """Whether this copy of the tables has a versions table: a rebuild's copy has none
    (the code that builds it is its version)."""

    # What suits each database, which its recorder says.
    renames_indexes: ClassVar[bool] = False
    """Whether an index can be renamed; where not, the swap makes the indexes again."""
    prepare_queries: ClassVar[bool | None] = None
    """Whether queries' statements may be prepared (None: the driver decides)."""
    rebuild_batch: ClassVar[int] = 500
    """Events per transaction while a rebuild's copy catches up."""
    rebuild_pause: ClassVar[float] = 0.0
    """Seconds between two batches of a rebuild's copy."""
    rebuild_processes: ClassVar[int] = 1
    """Worker processes that prepare a large rebuild's batches (below 2: none)."""

    if TYPE_CHECKING:

        def create_table(self) -> None:
            """Create the tracking table (the library's recorders do)."""

    @abstractmethod
    def qualify(self, table: str) -> str:
        """The quoted (and on PostgreSQL schema-qualified) name of a table."""

    def compile_sql(self, template: str, tables: Mapping[str, str]) -> str:
        """Our portable SQL (``{table}`` names, ``:name`` parameters) in this dialect."""
        return self.bind(template.format_map(tables))

    def bind(self, statement: str) -> str:
        """``:name`` parameters in this dialect (as they are: SQLite takes them)."""
        return statement

    @property
    def status_table(self) -> str:
        return self.qualify(self.table_prefix + STATUS_TABLE)

    @property
    def versions_table(self) -> str:
        return self.qualify(self.table_prefix + VERSIONS_TABLE)

    @property
    def tracking_table(self) -> str:
        return self.qualify(self.tracking_table_name)

    # --- transactions ------------------------------------------------------------------

    @abstractmethod
    def writing(self) -> AbstractContextManager[Any]:
        """A write transaction."""

    @abstractmethod
    def reading(self, lock: Sequence[str] = ()) -> AbstractContextManager[Any]:
        """A read-only transaction on one snapshot, so a multi-table answer is consistent.

        ``lock``: qualified tables to lock (PostgreSQL, ACCESS SHARE) before the snapshot
        is taken, so that a rebuild's swap of those tables is either wholly before the
        answer or wholly after it, never in the middle of it.
        """

    @abstractmethod
    def _lock_tracking_row(self, cursor: Any, application_name: str) -> int | None:
        """The tracked position, locked until the end of the transaction."""

    # --- set-up --------------------------------------------------------------------------

    def create_support_tables(self) -> None:
        """Create the status and versions tables, shared by every read model, if missing."""
        with self.writing() as cursor:
            self._create_support_tables(cursor)

    def serialise_ddl(self, cursor: Any) -> None:
        """Make concurrent schema changes wait for each other until the end of the
        transaction (PostgreSQL's CREATE TABLE IF NOT EXISTS races; SQLite's
        write transactions never overlap)."""

    def _create_support_tables(self, cursor: Any) -> None:
        self.serialise_ddl(cursor)
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {self.status_table} ("
            "name TEXT PRIMARY KEY, events_applied BIGINT NOT NULL DEFAULT 0,"
            " state TEXT, worker TEXT, events_per_second BIGINT, last_error TEXT,"
            " heartbeat_at TEXT)"
        )
        from projections.engine import parking  # it imports this module

        parking.create_tables(self, cursor)
        if self.versioned:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.versions_table} ("
                "name TEXT PRIMARY KEY, version INTEGER NOT NULL, tables TEXT NOT NULL,"
                " rebuild TEXT, last_rebuild TEXT)"
            )

    def create_read_model(self, name: str, ddl: Sequence[str]) -> None:
        """Create the read model's tables (and its status row) if they do not exist."""
        with self.writing() as cursor:
            self._create_support_tables(cursor)
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

    def check_version(self, cursor: Any, name: str, version: int) -> None:
        """Refuse to go on unless the live tables are at ``version`` (in a batch, after
        the fence: a swap that committed while the batch waited on the fence is seen)."""
        cursor.execute(
            self.bind(f"SELECT version FROM {self.versions_table} WHERE name = :name"),
            {"name": name},
        )
        row = cursor.fetchone()
        stored = None if row is None else int(row["version"])
        if stored is not None and stored != version:
            raise Outdated(name, stored, version)

    def set_position(self, cursor: Any, application_name: str, position: int) -> None:
        """Move the tracking position anywhere, backwards too (a swap, a reset)."""
        cursor.execute(
            self.bind(
                f"UPDATE {self.tracking_table} SET notification_id = :n WHERE application_name = :a"
            ),
            {"n": position, "a": application_name},
        )

    def lock_position(self, cursor: Any, application_name: str) -> int:
        """The tracked position, locked until the end of the transaction: the feeder of
        this read model waits at its fence meanwhile."""
        return self._lock_tracking_row(cursor, application_name) or 0

    def position(self, application_name: str) -> int:
        """The last position of the log applied to this read model (0: none)."""
        return int(self.max_tracking_id(application_name) or 0)

    # --- versions and rebuilds -----------------------------------------------------------

    def read_versions(self) -> dict[str, dict[str, Any]]:
        """Per read model: ``version``, ``tables``, ``rebuild`` and ``last_rebuild``."""
        with self.reading() as cursor:
            return self.read_versions_in(cursor)

    def read_versions_in(self, cursor: Any) -> dict[str, dict[str, Any]]:
        """``read_versions()`` in the caller's transaction."""
        cursor.execute(f"SELECT * FROM {self.versions_table}")
        rows = [dict(r) for r in cursor.fetchall()]
        for row in rows:
            for key in ("tables", "rebuild", "last_rebuild"):
                row[key] = json.loads(row[key]) if row[key] else None
        return {row["name"]: row for row in rows}

    def stored_version(self, name: str) -> int | None:
        row = self.read_versions().get(name)
        return None if row is None else int(row["version"])

    def record_version(
        self,
        cursor: Any,
        name: str,
        version: int,
        tables: Sequence[str],
        *,
        last_rebuild: RebuildOutcome | None = None,
    ) -> None:
        """Say which code version built the live tables (a swap or a reset: with the
        outcome of that rebuild, and no rebuild running any more)."""
        params = {
            "name": name,
            "version": version,
            "tables": json.dumps(list(tables)),
            "last": _json(last_rebuild),
        }
        cursor.execute(
            self.bind(
                f"INSERT INTO {self.versions_table} AS v (name, version, tables, last_rebuild)"
                " VALUES (:name, :version, :tables, :last) ON CONFLICT (name) DO UPDATE SET"
                " version = excluded.version, tables = excluded.tables, rebuild = NULL,"
                " last_rebuild = COALESCE(excluded.last_rebuild, v.last_rebuild)"
            ),
            params,
        )

    def baseline_version(self, name: str, version: int, tables: Sequence[str], fresh: bool) -> int:
        """The stored version, recording one first if there is none: ``version`` for
        empty tables; 1 for tables built before versions were recorded."""
        with self.writing() as cursor:
            cursor.execute(
                self.bind(f"SELECT version FROM {self.versions_table} WHERE name = :name"),
                {"name": name},
            )
            row = cursor.fetchone()
            if row is not None:
                return int(row["version"])
            stored = version if fresh else 1
            cursor.execute(
                self.bind(
                    f"INSERT INTO {self.versions_table} (name, version, tables)"
                    " VALUES (:name, :version, :tables)"
                ),
                {"name": name, "version": stored, "tables": json.dumps(list(tables))},
            )
            return stored

    def write_rebuild(
        self,
        name: str,
        rebuild: Mapping[str, Any] | None,
        last_rebuild: RebuildOutcome | None = None,
    ) -> None:
        """Publish a running rebuild's progress (``None``: none runs), and maybe how the
        last one ended."""
        with self.writing() as cursor:
            cursor.execute(
                self.bind(
                    f"UPDATE {self.versions_table} SET rebuild = :rebuild,"
                    " last_rebuild = COALESCE(:last, last_rebuild) WHERE name = :name"
                ),
                {
                    "name": name,
                    "rebuild": json.dumps(rebuild) if rebuild is not None else None,
                    "last": _json(last_rebuild),
                },
            )

    # --- tables, for rebuilds and resets (inside the caller's transaction) ---------------

    def drop_table(self, cursor: Any, table: str) -> None:
        cursor.execute(f"DROP TABLE IF EXISTS {self.qualify(table)}")

    def rename_table(self, cursor: Any, table: str, new_name: str) -> None:
        cursor.execute(f"ALTER TABLE {self.qualify(table)} RENAME TO {quote(new_name)}")

    def lock_exclusively(self, cursor: Any, tables: Sequence[str]) -> None:
        """Lock tables against every reader and writer until the end of the transaction."""

    def rename_indexes(self, cursor: Any, table: str, old_prefix: str, new_prefix: str) -> None:
        """Rename the indexes of ``table`` whose names start with ``old_prefix``.

        Only where ``renames_indexes`` is true (PostgreSQL overrides this); elsewhere the
        swap makes the indexes again instead.
        """
        raise TypeError(f"{type(self).__name__} cannot rename indexes; make them again")

    @abstractmethod
    def table_exists(self, cursor: Any, table: str) -> bool: ...

    @abstractmethod
    def digest(self, cursor: Any, table: str) -> tuple[int, str]:
        """Rows and an order-independent checksum of a table's rows (comparable between
        two tables of one database, not between PostgreSQL and SQLite)."""

    def set_events_applied(self, cursor: Any, name: str, events: int) -> None:
        """Set the count of events the live tables hold (a swap, a reset), which ``track``
        then keeps counting, and ``status()`` serves as ``events_applied``."""
        cursor.execute(
            self.bind(f"UPDATE {self.status_table} SET events_applied = :n WHERE name = :name"),
            {"n": events, "name": name},
        )

    def forget(self, cursor: Any, name: str) -> None:
        """Drop this copy's tracking table, status row and parked events (a copy swapped
        in or dropped)."""
        from projections.engine import parking

        cursor.execute(f"DROP TABLE IF EXISTS {self.tracking_table}")
        cursor.execute(
            self.bind(f"DELETE FROM {self.status_table} WHERE name = :name"), {"name": name}
        )
        if self.table_exists(cursor, self.table_prefix + parking.PARKED_TABLE):
            parking.clear(self, cursor, name)

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


def quote(identifier: str) -> str:
    """An identifier, quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def _json(outcome: RebuildOutcome | None) -> str | None:
    return None if outcome is None else json.dumps(outcome.as_dict())
