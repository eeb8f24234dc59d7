"""Idempotency keys: a command repeated with the same key is answered, not executed again.

A client that may retry a command (a timeout, a dropped connection) sends an
``Idempotency-Key``. The first execution stores the key with what it did (the
aggregate it is about, that aggregate's new version, the position of its last event)
in the SAME transaction as its events: no crash can leave events without their key,
or a key without its events. A repeat finds the key and is answered from it, so it
records nothing; a repeat with another request under the same key is refused.

Keys are scoped by caller (the token's subject), so one client can neither replay nor
probe another's. Two executions racing with one key both try to store it; the loser's
save fails with a ``RecordConflictError`` (the key is checked under the lock that orders
the log: ``commands/group_commit.py`` on PostgreSQL; the table's primary key on (caller,
key) elsewhere), the service's retry runs it again, finds the key and replays.

The store is a subclass of each eventsourcing application recorder (chosen by
``APPLICATION_RECORDER_TOPIC``): ``Application.save(..., idempotency_key=record)``
passes the record down to ``insert_events``, which writes it in its own transaction.
The key of the current request travels to the service in a context variable, like the
cause of :mod:`eventstore.causes`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from domain.errors import InvalidValue
from eventstore import links

# The keyword of ``Application.save()`` (and so of ``insert_events``) carrying the key.
SAVE_KWARG = "idempotency_key"
DEFAULT_TTL = timedelta(hours=24)
HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(InvalidValue):
    """The key was first used for another request (other route, body or If-Match)."""

    title = "Idempotency key reused"

    def __init__(self, key: str) -> None:
        super().__init__(
            HEADER,
            f"{HEADER} {key!r} was used for a different request; use a new key for a new"
            " request, and the same body to repeat one",
        )


@dataclass(frozen=True)
class IdempotentRequest:
    """The key a request came with and a fingerprint of what it asks for."""

    key: str
    fingerprint: str


def fingerprint(*parts: str | bytes) -> str:
    """A SHA-256 over the parts of a request, length-prefixed so none can blur into another."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


_current: ContextVar[IdempotentRequest | None] = ContextVar("eventshop_idempotency", default=None)


def current_request() -> IdempotentRequest | None:
    """The idempotent request being served now, if it came with a key."""
    return _current.get()


def use_key(request: IdempotentRequest | None) -> None:
    """Serve the rest of the current context under this key (None: without one).

    The HTTP edge calls it from an async dependency, which runs in the request's own
    task: the route, run later in a copy of that context, sees it, and nothing outside
    the request does.
    """
    _current.set(request)


@contextmanager
def idempotent(key: str, request_fingerprint: str) -> Iterator[IdempotentRequest]:
    """Run the commands of the block under an idempotency key (scripts, tests)."""
    request = IdempotentRequest(key, request_fingerprint)
    token = _current.set(request)
    try:
        yield request
    finally:
        _current.reset(token)


@dataclass(frozen=True)
class KeyRecord:
    """A stored key: who used it for which request, and what the first execution did."""

    caller: str
    key: str
    fingerprint: str
    aggregate_id: UUID
    aggregate_version: int
    created_at: datetime
    # Filled in by the recorder from the notification ids it was given.
    position: int = 0
    # A stored row for the same key older than this has expired and may be replaced.
    replaces_before: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], **typed: Any) -> KeyRecord:
        """The record of a stored row; ``typed`` gives columns a store keeps otherwise."""
        columns = ("caller", "key", "fingerprint", "aggregate_id", "aggregate_version")
        values = {name: row[name] for name in (*columns, "position", "created_at")}
        return cls(**{**values, **typed})


class KeyStore(ABC):
    """What an application recorder that keeps idempotency keys adds."""

    @abstractmethod
    def select_key(self, caller: str, key: str) -> KeyRecord | None:
        """The stored record of ``key`` for ``caller``, expired or not."""

    @abstractmethod
    def purge_keys(self, before: datetime) -> int:
        """Delete the keys created before ``before``; how many went."""


def _position(record: KeyRecord, notification_ids: Sequence[int] | None) -> KeyRecord | None:
    # A save that stored no event has nothing to replay; then no key is kept.
    return replace(record, position=notification_ids[-1]) if notification_ids else None


# SQLite's integers are signed 64-bit; Python's sqlite3 raises OverflowError past them.
SQLITE_MAX_INTEGER = 2**63 - 1


class SQLiteKeyRecorder(SQLiteApplicationRecorder, KeyStore):
    """The SQLite application recorder, keeping keys in ``idempotency_keys``.

    It also reads positions and versions past SQLite's integer range as past the end
    (nothing there), as PostgreSQL does, instead of failing: found by fuzzing
    ``/api/audit/events?after=2**70``, which answered 500 on SQLite only.
    """

    keys_table = "idempotency_keys"

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        table = self.keys_table
        self._select_key = (
            f"SELECT caller, key, fingerprint, aggregate_id, aggregate_version, position,"
            f" created_at FROM {table} WHERE caller=? AND key=?"
        )
        self._delete_expired_key = f"DELETE FROM {table} WHERE caller=? AND key=? AND created_at<?"
        self._insert_key = f"INSERT INTO {table} VALUES (?,?,?,?,?,?,?)"
        self._purge = f"DELETE FROM {table} WHERE created_at<?"
        self._last_link = f"SELECT link FROM {links.LINKS_TABLE} ORDER BY position DESC LIMIT 1"
        self._insert_link = f"INSERT INTO {links.LINKS_TABLE} (position, link) VALUES (?, ?)"

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {self.keys_table} ("
            "caller TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, "
            "aggregate_id TEXT NOT NULL, aggregate_version INTEGER NOT NULL, "
            "position INTEGER NOT NULL, created_at REAL NOT NULL, "
            "PRIMARY KEY (caller, key))",
            f"CREATE INDEX IF NOT EXISTS {self.keys_table}_created_at "
            f"ON {self.keys_table} (created_at)",
            links.SQLITE_TABLE,
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._insert_events(c, stored_events, **kwargs)
        if notification_ids:
            # This transaction holds SQLite's one write lock since its INSERT: the last
            # link cannot move before it commits.
            c.execute(self._last_link)
            previous = c.fetchone()
            c.executemany(
                self._insert_link,
                zip(
                    *links.chain(
                        previous[0] if previous else None,
                        zip(notification_ids, stored_events, strict=True),
                    ),
                    strict=True,
                ),
            )
        record = kwargs.get(SAVE_KWARG)
        if record is not None and (stored := _position(record, notification_ids)):
            if stored.replaces_before is not None:
                c.execute(
                    self._delete_expired_key,
                    (stored.caller, stored.key, stored.replaces_before.timestamp()),
                )
            # A live key of the same caller violates the primary key: IntegrityError.
            c.execute(
                self._insert_key,
                (
                    stored.caller,
                    stored.key,
                    stored.fingerprint,
                    stored.aggregate_id.hex,
                    stored.aggregate_version,
                    stored.position,
                    stored.created_at.timestamp(),
                ),
            )
        return notification_ids

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        if start is not None and start > SQLITE_MAX_INTEGER:
            return []
        return super().select_notifications(
            start,
            min(limit, SQLITE_MAX_INTEGER),
            None if stop is None else min(stop, SQLITE_MAX_INTEGER),
            topics,
            inclusive_of_start=inclusive_of_start,
        )

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        if gt is not None and gt > SQLITE_MAX_INTEGER:
            return []
        return super().select_events(
            originator_id,
            gt=gt,
            lte=None if lte is None else min(lte, SQLITE_MAX_INTEGER),
            desc=desc,
            limit=None if limit is None else min(limit, SQLITE_MAX_INTEGER),
        )

    def select_key(self, caller: str, key: str) -> KeyRecord | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._select_key, (caller, key))
            row = c.fetchone()
        if row is None:
            return None
        # SQLite keeps the id as text and the time as seconds since the epoch.
        return KeyRecord.from_row(
            row,
            aggregate_id=UUID(row["aggregate_id"]),
            created_at=datetime.fromtimestamp(row["created_at"], UTC),
        )

    def purge_keys(self, before: datetime) -> int:
        with self.datastore.transaction(commit=True) as c:
            c.execute(self._purge, (before.timestamp(),))
            return int(c.sqlite_cursor.rowcount)


class POPOKeyRecorder(POPOApplicationRecorder, KeyStore):
    """The in-memory application recorder, keeping keys in a dict under its lock."""

    def __init__(self) -> None:
        super().__init__()
        self._keys: dict[tuple[str, str], KeyRecord] = {}
        # Each event's hash link by position, written with it under the recorder's lock.
        self.links: dict[int, bytes] = {}
        self._last_link: bytes | None = None

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        record: KeyRecord | None = kwargs.get(SAVE_KWARG)
        if record is None or not stored_events:
            return
        existing = self._keys.get((record.caller, record.key))
        cutoff = record.replaces_before
        if existing is not None and (cutoff is None or existing.created_at >= cutoff):
            raise IntegrityError(f"{HEADER} {record.key!r} is already stored")

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._update_table(stored_events, **kwargs)
        if notification_ids:
            positions, hashes = links.chain(
                self._last_link, zip(notification_ids, stored_events, strict=True)
            )
            self.links.update(zip(positions, hashes, strict=True))
            self._last_link = hashes[-1]
        record = kwargs.get(SAVE_KWARG)
        if record is not None and (stored := _position(record, notification_ids)):
            self._keys[(stored.caller, stored.key)] = stored
        return notification_ids

    def select_key(self, caller: str, key: str) -> KeyRecord | None:
        with self._database_lock:
            return self._keys.get((caller, key))

    def purge_keys(self, before: datetime) -> int:
        with self._database_lock:
            expired = [k for k, record in self._keys.items() if record.created_at < before]
            for k in expired:
                del self._keys[k]
            return len(expired)


class IdempotencyKeys:
    """The service's view of the keys: look one up, make the record to store, purge.

    A key older than ``ttl`` is as good as absent: a repeat executes again, and its
    record replaces the expired one in the same transaction. Expired keys are also
    purged in bulk, at most once per ``purge_every``, by whichever command comes by.
    """

    def __init__(self, store: KeyStore, ttl: timedelta = DEFAULT_TTL) -> None:
        self.store = store
        self.ttl = ttl
        self.purge_every = min(ttl, timedelta(minutes=10))
        self._last_purge: float | None = None
        self._purge_lock = threading.Lock()

    def find(self, caller: str, request: IdempotentRequest) -> KeyRecord | None:
        """The live record of this request's key; refused if it was used for another."""
        self._purge_if_due()
        record = self.store.select_key(caller, request.key)
        if record is None or record.created_at < self._cutoff():
            return None
        if record.fingerprint != request.fingerprint:
            raise IdempotencyKeyReused(request.key)
        return record

    def record(
        self, caller: str, request: IdempotentRequest, aggregate_id: UUID, version: int
    ) -> KeyRecord:
        """What to store with the events of a first execution."""
        return KeyRecord(
            caller=caller,
            key=request.key,
            fingerprint=request.fingerprint,
            aggregate_id=aggregate_id,
            aggregate_version=version,
            created_at=datetime.now(UTC),
            replaces_before=self._cutoff(),
        )

    def purge(self) -> int:
        """Delete every expired key now; how many went."""
        return self.store.purge_keys(self._cutoff())

    def _cutoff(self) -> datetime:
        return datetime.now(UTC) - self.ttl

    def _purge_if_due(self) -> None:
        now = time.monotonic()
        last = self._last_purge
        if last is not None and now - last < self.purge_every.total_seconds():
            return
        # One caller purges; the others go on without waiting for it.
        if not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._last_purge = now
            self.purge()
        finally:
            self._purge_lock.release()
