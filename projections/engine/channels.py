"""How the log's outbound channels fare: what a process that sends events out of the
shop (the JetStream publisher, the webhook deliverer) records of how it goes, so that
any process (an API host, a scraper) can tell without asking it.

One row per channel in ``channel_health``: the state of the process that holds the
channel and its heartbeat (a row whose heartbeat is old was left by a process that is
gone), where it sends (``target``), and the time of its last success and of its last
failure, with that failure's error. A channel's *position* is not here: it is its
tracking position, written with what it sent (a read model's, a subscription's row).

These are operational rows, not derived from the log: no rebuild touches them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from projections.engine.base import stamp
from projections.engine.parking import describe
from projections.engine.tables import ReadModelStore, Tx

TABLE = "channel_health"
STALE_AFTER = 10.0
"""Seconds after its last heartbeat that a channel's holder counts as gone."""
NOT_RUNNING = "not_running"


@dataclass(frozen=True)
class Health:
    """A channel's row."""

    name: str
    state: str | None = None
    worker: str | None = None
    target: str | None = None
    heartbeat_at: str | None = None
    last_success_at: str | None = None
    last_failure_at: str | None = None
    last_error: str | None = None

    def current_state(self, now: datetime, stale_after: float = STALE_AFTER) -> str:
        """The state its holder said, or ``not_running`` if it has not said it lately."""
        if self.state is None or self.heartbeat_at is None:
            return NOT_RUNNING
        age = (now - datetime.fromisoformat(self.heartbeat_at)).total_seconds()
        return self.state if age <= stale_after else NOT_RUNNING


class ChannelHealth:
    """The ``channel_health`` table, through a read-side recorder's transactions
    (``view``: any read model's recorder of the database)."""

    def __init__(self, view: ReadModelStore) -> None:
        self.view = view
        self._tables = {"health": view.qualify(TABLE)}

    def sql(self, template: str) -> str:
        return self.view.compile_sql(template, self._tables)

    def create_tables(self, cursor: Any | None = None) -> None:
        """Make the table if it is missing (in ``cursor``'s transaction, or one of its own)."""
        with self._writing(cursor) as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS {health} (name TEXT PRIMARY KEY, state TEXT,"
                " worker TEXT, target TEXT, heartbeat_at TEXT, last_success_at TEXT,"
                " last_failure_at TEXT, last_error TEXT)"
            )

    # --- what a channel's holder records -----------------------------------------------

    def beat(
        self,
        name: str,
        state: str,
        worker: str,
        *,
        target: str | None = None,
        last_success: datetime | None = None,
    ) -> None:
        """The holder's state, now; and its last success, if it had one since the last beat."""
        row = {
            "name": name,
            "state": state,
            "worker": worker,
            "target": target,
            "now": stamp(datetime.now(UTC)),
            "success": None if last_success is None else stamp(last_success),
        }
        with self._writing() as tx:
            tx.execute(
                "INSERT INTO {health} AS h (name, state, worker, target, heartbeat_at,"
                " last_success_at) VALUES (:name, :state, :worker, :target, :now, :success)"
                " ON CONFLICT (name) DO UPDATE SET state = excluded.state,"
                " worker = excluded.worker, target = coalesce(excluded.target, h.target),"
                " heartbeat_at = excluded.heartbeat_at, last_success_at ="
                " coalesce(excluded.last_success_at, h.last_success_at)",
                row,
            )

    def succeeded(self, name: str, at: datetime, cursor: Any | None = None) -> None:
        """A delivery or publication went through at ``at``."""
        with self._writing(cursor) as tx:
            tx.execute(
                "INSERT INTO {health} (name, last_success_at) VALUES (:name, :at)"
                " ON CONFLICT (name) DO UPDATE SET last_success_at = excluded.last_success_at",
                {"name": name, "at": stamp(at)},
            )

    def failed(
        self,
        name: str,
        at: datetime,
        error: BaseException | str,
        cursor: Any | None = None,
        *,
        state: str | None = None,
        worker: str | None = None,
    ) -> None:
        """An attempt failed at ``at`` with ``error`` (and the holder is now in ``state``)."""
        row = {
            "name": name,
            "at": stamp(at),
            "error": describe(error),
            "state": state,
            "worker": worker,
            "now": stamp(datetime.now(UTC)) if state is not None else None,
        }
        with self._writing(cursor) as tx:
            tx.execute(
                "INSERT INTO {health} AS h (name, state, worker, heartbeat_at, last_failure_at,"
                " last_error) VALUES (:name, :state, :worker, :now, :at, :error)"
                " ON CONFLICT (name) DO UPDATE SET last_failure_at = excluded.last_failure_at,"
                " last_error = excluded.last_error,"
                " state = coalesce(excluded.state, h.state),"
                " worker = coalesce(excluded.worker, h.worker),"
                " heartbeat_at = coalesce(excluded.heartbeat_at, h.heartbeat_at)",
                row,
            )

    def forget(self, name: str, cursor: Any | None = None) -> None:
        with self._writing(cursor) as tx:
            tx.execute("DELETE FROM {health} WHERE name = :name", {"name": name})

    # --- what anyone reads -------------------------------------------------------------

    def read(self, cursor: Any | None = None) -> dict[str, Health]:
        """Every channel's row, by name."""
        if cursor is not None:
            rows = Tx(cursor, self.sql).execute("SELECT * FROM {health}").rows()
        else:
            with self.view.reading() as reading:
                rows = Tx(reading, self.sql).execute("SELECT * FROM {health}").rows()
        return {row["name"]: _health(row) for row in rows}

    @contextmanager
    def _writing(self, cursor: Any | None = None) -> Iterator[Tx]:
        if cursor is not None:  # the caller's transaction
            yield Tx(cursor, self.sql)
            return
        with self.view.writing() as own:
            yield Tx(own, self.sql)


def _health(row: Mapping[str, Any]) -> Health:
    return Health(**{key: row[key] for key in Health.__dataclass_fields__})
