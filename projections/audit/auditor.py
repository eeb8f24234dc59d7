"""What auditors ask of the event store: the log, histories, time travel, proof of integrity.

Everything here reads the stored events only (never the projections), through the
recorder's ``select_notifications`` in bounded batches, so that even the whole log is
read in constant memory. The one thing written is the ``audit_checkpoints`` table, in
the event store's own database, which keeps chain heads for later verification.

Tamper evidence is a SHA-256 hash chain over the global log. Link *n* hashes link
*n-1* with the event's position, aggregate id, version, topic and stored state bytes
(variable-length fields length-prefixed, so no two events hash alike by shifting bytes
between fields). Changing a byte, deleting, inserting or moving an event changes every
head from there on; positions that legitimately skip (PostgreSQL sequences do after a
failed write) are harmless because the chain covers whichever positions exist.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from itertools import takewhile
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import project_aggregate
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import (
    ApplicationRecorder,
    EventStore,
    IntegrityError,
    Mapper,
    MapperDeserialisationError,
    Notification,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg import sql
from pydantic_core import to_jsonable_python

from domain.cart import Cart
from domain.errors import InvalidValue, NotFound
from domain.order import Order
from domain.product import Product
from domain.stock import Stock
from eventstore.causes import Cause, CausedMapper

GENESIS = bytes(32)
CHECKPOINTS_TABLE = "audit_checkpoints"
AGGREGATES: tuple[type[Aggregate], ...] = (Product, Stock, Cart, Order)
# Attributes every event has; the rest of an event's state is its data.
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})
_U32, _U64, _VERSION_TOPIC = struct.Struct(">I"), struct.Struct(">Q"), struct.Struct(">QI")

Item = dict[str, Any]


# --- the hash chain ----------------------------------------------------------------


def chain_link(previous: bytes, event: Notification) -> bytes:
    """The next head of the chain: ``previous`` extended by one stored event."""
    oid = event.originator_id
    oid_bytes = oid.bytes if isinstance(oid, UUID) else str(oid).encode()
    topic = _encoded_topic(event.topic)
    state = event.state
    return hashlib.sha256(
        b"".join(
            (
                previous,
                _U64.pack(event.id),
                _U32.pack(len(oid_bytes)),
                oid_bytes,
                _VERSION_TOPIC.pack(event.originator_version, len(topic)),
                topic,
                _U32.pack(len(state)),
                state,
            )
        )
    ).digest()


@lru_cache(maxsize=1024)
def _encoded_topic(topic: str) -> bytes:
    # A log has few distinct topics; encoding each once saves time on every link.
    return topic.encode()


def chain_head(events: Iterable[Notification]) -> tuple[int, bytes]:
    """How many events there are and the chain head over them, in the order given."""
    head, count = GENESIS, 0
    for event in events:
        head, count = chain_link(head, event), count + 1
    return count, head


@dataclass(frozen=True)
class Checkpoint:
    """The chain head over every event up to ``position``, and how many there were."""

    position: int
    events: int
    head: bytes


@dataclass(frozen=True)
class Digest:
    """A chain head to keep: later, ``verify(digest=head, upto=upto)`` proves nothing changed."""

    upto: int
    events: int
    head: str


@dataclass(frozen=True)
class Verification:
    """The outcome of recomputing the chain against the checkpoints and a given digest.

    ``first_bad`` is the first position whose recorded head no longer matches: the
    change lies after ``last_good`` and at or before ``first_bad``.
    """

    ok: bool
    upto: int
    events: int
    head: str
    compared: int
    first_bad: int | None = None
    last_good: int = 0
    detail: str = "the log matches every checkpoint"


@dataclass
class Page:
    items: list[Item]
    next_cursor: str | None


@dataclass(frozen=True)
class LogFilter:
    """Which events of the log to list; ``since`` is inclusive, ``before`` exclusive."""

    type: str | None = None
    aggregate_id: UUID | None = None
    since: datetime | None = None
    before: datetime | None = None
    topics: tuple[str, ...] = field(default=(), compare=False)

    def admits(self, item: Item) -> bool:
        if self.since is None and self.before is None:
            return True
        stamp = item["timestamp"]
        if stamp is None:
            return False
        return (self.since is None or stamp >= self.since) and (
            self.before is None or stamp < self.before
        )


# --- where the audit tables live --------------------------------------------------


class _Tables(Protocol):
    """The few queries the recorder does not offer, for each kind of store."""

    def aggregate_events(self, aggregate_id: UUID, after: int, limit: int) -> list[Notification]:
        """An aggregate's stored events after a position, in log order."""
        ...

    def checkpoints(self, after: int, upto: int, limit: int) -> list[Checkpoint]: ...

    def last_checkpoint(self) -> Checkpoint | None: ...

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None: ...

    def create_table(self) -> None: ...


class _PostgresTables:
    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self.datastore = recorder.datastore
        schema = self.datastore.schema
        self.events = sql.Identifier(schema, recorder.events_table_name)
        self.table = sql.Identifier(schema, CHECKPOINTS_TABLE)

    def create_table(self) -> None:
        create = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, events bigint NOT NULL,"
            " head bytea NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())"
        ).format(self.table)
        try:
            self._execute(create)
        except IntegrityError:
            # Another process created it at the same moment (pg_type's unique index).
            self._execute(create)

    def _execute(self, statement: sql.Composed, params: Sequence[Any] = ()) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(statement, params)

    def _rows(self, statement: sql.Composed, params: Sequence[Any]) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, params)
            return list(cursor.fetchall())

    def aggregate_events(self, aggregate_id: UUID, after: int, limit: int) -> list[Notification]:
        rows = self._rows(
            sql.SQL(
                "SELECT * FROM {} WHERE originator_id = %s AND notification_id > %s"
                " ORDER BY notification_id LIMIT %s"
            ).format(self.events),
            (aggregate_id, after, limit),
        )
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

    def checkpoints(self, after: int, upto: int, limit: int) -> list[Checkpoint]:
        rows = self._rows(
            sql.SQL(
                "SELECT position, events, head FROM {} WHERE position > %s AND position <= %s"
                " ORDER BY position LIMIT %s"
            ).format(self.table),
            (after, upto, limit),
        )
        return [Checkpoint(r["position"], r["events"], bytes(r["head"])) for r in rows]

    def last_checkpoint(self) -> Checkpoint | None:
        rows = self._rows(
            sql.SQL("SELECT position, events, head FROM {} ORDER BY position DESC LIMIT 1").format(
                self.table
            ),
            (),
        )
        return (
            Checkpoint(rows[0]["position"], rows[0]["events"], bytes(rows[0]["head"]))
            if rows
            else None
        )

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(
                sql.SQL(
                    "INSERT INTO {} (position, events, head) VALUES (%s, %s, %s)"
                    " ON CONFLICT (position) DO NOTHING"
                ).format(self.table),
                [(c.position, c.events, c.head) for c in checkpoints],
            )


class _SQLiteTables:
    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self.recorder = recorder
        self.datastore = recorder.datastore
        self.events = recorder.events_table_name

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS_TABLE} (position INTEGER PRIMARY KEY,"
                " events INTEGER NOT NULL, head BLOB NOT NULL,"
                " recorded_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
            )

    def _rows(self, statement: str, params: Sequence[Any]) -> list[Any]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, params)
            return list(cursor.fetchall())

    def aggregate_events(self, aggregate_id: UUID, after: int, limit: int) -> list[Notification]:
        rows = self._rows(
            f"SELECT rowid, * FROM {self.events} WHERE originator_id = ? AND rowid > ?"
            " ORDER BY rowid LIMIT ?",
            (aggregate_id.hex, after, limit),
        )
        return [
            Notification(
                id=r["rowid"],
                originator_id=self.recorder.convert_originator_id(r["originator_id"]),
                originator_version=r["originator_version"],
                topic=r["topic"],
                state=r["state"],
            )
            for r in rows
        ]

    def checkpoints(self, after: int, upto: int, limit: int) -> list[Checkpoint]:
        rows = self._rows(
            f"SELECT position, events, head FROM {CHECKPOINTS_TABLE}"
            " WHERE position > ? AND position <= ? ORDER BY position LIMIT ?",
            (after, upto, limit),
        )
        return [Checkpoint(r[0], r[1], bytes(r[2])) for r in rows]

    def last_checkpoint(self) -> Checkpoint | None:
        rows = self._rows(
            f"SELECT position, events, head FROM {CHECKPOINTS_TABLE}"
            " ORDER BY position DESC LIMIT 1",
            (),
        )
        return Checkpoint(rows[0][0], rows[0][1], bytes(rows[0][2])) if rows else None

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(
                f"INSERT OR IGNORE INTO {CHECKPOINTS_TABLE} (position, events, head)"
                " VALUES (?, ?, ?)",
                [(c.position, c.events, c.head) for c in checkpoints],
            )


class _MemoryTables:
    """The in-memory store's stand-in: fine for the few events of a unit test."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = recorder
        self.kept: dict[int, Checkpoint] = {}

    def create_table(self) -> None:
        """Nothing to create: the checkpoints live in this object."""

    def aggregate_events(self, aggregate_id: UUID, after: int, limit: int) -> list[Notification]:
        every = self.recorder.select_notifications(after, 2**62, inclusive_of_start=False)
        return [n for n in every if n.originator_id == aggregate_id][:limit]

    def checkpoints(self, after: int, upto: int, limit: int) -> list[Checkpoint]:
        return [self.kept[p] for p in sorted(self.kept) if after < p <= upto][:limit]

    def last_checkpoint(self) -> Checkpoint | None:
        return self.kept[max(self.kept)] if self.kept else None

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        for checkpoint in checkpoints:
            self.kept.setdefault(checkpoint.position, checkpoint)


def _tables_for(recorder: ApplicationRecorder) -> _Tables:
    if isinstance(recorder, PostgresApplicationRecorder):
        return _PostgresTables(recorder)
    if isinstance(recorder, SQLiteApplicationRecorder):
        return _SQLiteTables(recorder)
    return _MemoryTables(recorder)


# --- the auditor ------------------------------------------------------------------


class Auditor:
    """Read-only questions about the shop's event log, and its tamper evidence.

    ``checkpoint_every``: a chain head is kept after every that many events.
    ``batch``: how many stored events are read per query when streaming.
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        checkpoint_every: int = 1000,
        batch: int = 5000,
    ) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.events_store = EventStore(mapper, recorder)
        self.checkpoint_every = checkpoint_every
        self.batch = batch
        self.tables = _tables_for(self.recorder)

    def create_tables(self) -> None:
        """Create the checkpoints table if missing: at migration, never while reading."""
        self.tables.create_table()

    def head(self) -> int:
        """The position of the last event in the log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    # --- reading the log --------------------------------------------------------

    def stream(
        self,
        after: int = 0,
        until: int | None = None,
        topics: Sequence[str] = (),
        batch: int | None = None,
        read_ahead: bool = True,
    ) -> Iterator[Notification]:
        """The stored events after ``after`` up to ``until``, in log order, batch by batch.

        With ``read_ahead`` the next batch is read while this one is used: the reading
        thread waits on the database without holding the GIL, so reading and hashing
        overlap. At most two batches are held at once.
        """
        size = batch or self.batch

        def fetch(start: int) -> Sequence[Notification]:
            return self.recorder.select_notifications(
                start, size, stop=until, topics=list(topics), inclusive_of_start=False
            )

        if not read_ahead:
            while rows := fetch(after):
                yield from rows
                if len(rows) < size:
                    return
                after = rows[-1].id
            return
        with ThreadPoolExecutor(1, thread_name_prefix="audit-read-ahead") as reader:
            ahead: Future[Sequence[Notification]] | None = reader.submit(fetch, after)
            while ahead is not None:
                rows = ahead.result()
                ahead = reader.submit(fetch, rows[-1].id) if len(rows) == size else None
                yield from rows

    def log_filter(
        self,
        type: str | None = None,
        aggregate_id: UUID | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
    ) -> LogFilter:
        """A filter of the log; ``type`` is ``Cart.ItemAdded`` or just ``ItemAdded``."""
        topics: tuple[str, ...] = ()
        if type:
            topics = tuple(t for name, t in event_types().items() if type in (name, _short(name)))
            if not topics:
                known = ", ".join(sorted(event_types()))
                raise InvalidValue("type", f"unknown event type {type!r}; the types are: {known}")
        return LogFilter(
            type,
            aggregate_id,
            _utc(since) if since else None,
            _utc(before) if before else None,
            topics,
        )

    def events(
        self, after: int = 0, limit: int = 50, where: LogFilter | None = None, scan: int = 20_000
    ) -> Page:
        """A page of the log after position ``after``.

        Time filters are applied to decoded events, so one page reads at most ``scan``
        stored events; ``next_cursor`` then says where to go on (the page may be short).
        """
        where = where or LogFilter()
        if where.aggregate_id is not None:
            source: Iterator[Notification] = self._aggregate_stream(where.aggregate_id, after)
        else:
            # Without time filters every row read is listed: read no more than a page.
            timed = where.since is not None or where.before is not None
            size = self.batch if timed else min(self.batch, limit + 1)
            source = self.stream(after, topics=where.topics, batch=size, read_ahead=False)
        items: list[Item] = []
        scanned, last = 0, after
        for stored in source:
            scanned, last = scanned + 1, stored.id
            if where.topics and stored.topic not in where.topics:
                continue
            item = self.item(stored)
            if where.admits(item):
                items.append(item)
            if len(items) == limit or scanned == scan:
                return Page(items, str(last) if last < self.head() else None)
        return Page(items, None)

    def history(self, aggregate_id: UUID) -> list[Item]:
        """Every event of one aggregate, in log order; NotFound if it has none."""
        items = [self.item(stored) for stored in self._aggregate_stream(aggregate_id, 0)]
        if not items:
            raise NotFound(f"Aggregate {aggregate_id} does not exist")
        return items

    def item(self, stored: Notification) -> Item:
        """A stored event as auditors see it: where, what, when, the data, and who."""
        qualname = stored.topic.partition(":")[2]
        event, cause = self._decode(stored)
        state = vars(event) if event is not None else {}
        return {
            "position": stored.id,
            "aggregate_id": str(stored.originator_id),
            "aggregate_type": qualname.partition(".")[0],
            "version": stored.originator_version,
            "type": qualname,
            "timestamp": state.get("timestamp"),
            "data": (
                to_jsonable_python({k: v for k, v in state.items() if k not in _ENVELOPE})
                if event is not None
                else None
            ),
            "metadata": cause.as_dict() if cause is not None else None,
        }

    # --- time travel ---------------------------------------------------------------

    def state(
        self, aggregate_id: UUID, version: int | None = None, at: datetime | None = None
    ) -> Item:
        """The aggregate as it was at ``version``, or at time ``at`` (else as it is now).

        Replayed from the stored events alone: snapshots are not covered by the hash
        chain, so the answer rests only on what ``verify`` can vouch for.
        """
        if version is not None and at is not None:
            raise InvalidValue("version", "give either a version or a time, not both")
        events = list(self.events_store.get(aggregate_id))
        if not events:
            raise NotFound(f"Aggregate {aggregate_id} does not exist")
        if version is not None:
            if not 1 <= version <= len(events):
                raise NotFound(
                    f"Aggregate {aggregate_id} has versions 1 to {len(events)}, not {version}"
                )
            events = events[:version]
        elif at is not None:
            moment = _utc(at)
            events = list(takewhile(lambda e: e.timestamp <= moment, events))  # type: ignore[attr-defined]
            if not events:
                raise NotFound(
                    f"Aggregate {aggregate_id} did not exist yet at {moment.isoformat()}"
                )
        aggregate = project_aggregate(None, events)
        assert aggregate is not None  # there was at least one event
        return render(aggregate)

    # --- export ------------------------------------------------------------------

    def export(self, after: int = 0, until: int | None = None) -> Iterator[str]:
        """The log as NDJSON lines, streamed: each event's item plus its exact stored bytes.

        ``topic`` and ``state`` (base64) let :func:`read_export` rebuild the stored
        events, so an export can be checked against a digest away from the database.
        """
        for stored in self.stream(after, until):
            record = {
                **self.item(stored),
                "topic": stored.topic,
                "state": base64.b64encode(stored.state).decode(),
            }
            yield json.dumps(to_jsonable_python(record), separators=(",", ":")) + "\n"

    # --- tamper evidence ------------------------------------------------------------

    def digest(self, upto: int | None = None) -> Digest:
        """The chain head over every event up to ``upto`` (default: the whole log)."""
        upto = self._upto(upto)
        count, head = chain_head(self.stream(0, upto))
        return Digest(upto, count, head.hex())

    def checkpoint(self) -> Checkpoint | None:
        """Extend the kept chain heads to the end of the log; the newest one, if any.

        Continues from the last checkpoint without rereading what it covers (``verify``
        is what rereads everything). Safe to run from several processes at once.
        """
        last = self.tables.last_checkpoint()
        head, count, after = (last.head, last.events, last.position) if last else (GENESIS, 0, 0)
        new: list[Checkpoint] = []
        for stored in self.stream(after):
            head, count = chain_link(head, stored), count + 1
            if count % self.checkpoint_every == 0:
                new.append(Checkpoint(stored.id, count, head))
                if len(new) == 100:
                    self.tables.save_checkpoints(new)
                    new = []
        self.tables.save_checkpoints(new)
        return self.tables.last_checkpoint()

    def verify(self, digest: str | None = None, upto: int | None = None) -> Verification:
        """Recompute the chain from position 1 and compare it with every kept checkpoint
        up to ``upto`` and, if given, with ``digest`` (the head at ``upto``).

        Reads the log once, in batches. When everything matches, new checkpoints are
        kept for the events past the last one.
        """
        # Past the head is allowed: a digest kept before events were cut off the end
        # must then fail to match, not be refused.
        upto = self.head() if upto is None else upto
        if upto < 0:
            raise InvalidValue("upto", "upto must not be negative")
        given = _digest_bytes(digest) if digest is not None else None
        expected = self._expected(upto, given)
        pending = next(expected, None)
        last_kept = self.tables.last_checkpoint()
        kept_to = last_kept.position if last_kept else 0
        head, count, last_good, compared = GENESIS, 0, 0, 0
        new: list[Checkpoint] = []
        for stored in self.stream(0, upto):
            while pending is not None and pending.position < stored.id:
                if mismatch := _compare(pending, count, head, last_good, compared, upto):
                    return mismatch
                last_good, compared, pending = pending.position, compared + 1, next(expected, None)
            head, count = chain_link(head, stored), count + 1
            if count % self.checkpoint_every == 0 and stored.id > kept_to:
                new.append(Checkpoint(stored.id, count, head))
        while pending is not None:
            if mismatch := _compare(pending, count, head, last_good, compared, upto):
                return mismatch
            last_good, compared, pending = pending.position, compared + 1, next(expected, None)
        self.tables.save_checkpoints(new)
        return Verification(True, upto, count, head.hex(), compared, last_good=last_good)

    # --- helpers -------------------------------------------------------------------

    def _aggregate_stream(self, aggregate_id: UUID, after: int) -> Iterator[Notification]:
        while True:
            batch = self.tables.aggregate_events(aggregate_id, after, self.batch)
            yield from batch
            if len(batch) < self.batch:
                return
            after = batch[-1].id

    def _decode(self, stored: Notification) -> tuple[DomainEventProtocol[Any] | None, Cause | None]:
        mapper = self.mapper
        try:
            if isinstance(mapper, CausedMapper):
                return mapper.decode(stored)
            return mapper.to_domain_event(stored), None
        except (MapperDeserialisationError, ValueError, TypeError, KeyError):
            # An undecodable (perhaps tampered) event is still listed, without its data.
            return None, None

    def _upto(self, upto: int | None) -> int:
        head = self.head()
        if upto is None:
            return head
        if not 0 <= upto <= head:
            raise InvalidValue("upto", f"upto must be between 0 and the log's head, {head}")
        return upto

    def _expected(self, upto: int, given: bytes | None) -> Iterator[Checkpoint]:
        after = 0
        while batch := self.tables.checkpoints(after, upto, 1000):
            yield from batch
            after = batch[-1].position
        if given is not None:
            # The given digest names no count: -1 makes only its head matter.
            yield Checkpoint(upto, -1, given)


def _compare(
    expected: Checkpoint, count: int, head: bytes, last_good: int, compared: int, upto: int
) -> Verification | None:
    """None when the chain at ``expected.position`` matches what was recorded there."""
    if head == expected.head and expected.events in (count, -1):
        return None
    if expected.events not in (count, -1):
        what = f"{count} events up to it where {expected.events} were recorded: events were"
        detail = f"{what} deleted or inserted"
    else:
        detail = "an event was changed, deleted, inserted or moved"
    return Verification(
        False,
        upto,
        count,
        head.hex(),
        compared + 1,
        first_bad=expected.position,
        last_good=last_good,
        detail=(
            f"the log differs at or before position {expected.position}"
            f" (after position {last_good}): {detail}"
        ),
    )


def read_export(lines: Iterable[str | bytes]) -> Iterator[Notification]:
    """The stored events an export holds, exactly as they were stored."""
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        yield Notification(
            id=record["position"],
            originator_id=UUID(record["aggregate_id"]),
            originator_version=record["version"],
            topic=record["topic"],
            state=base64.b64decode(record["state"]),
        )


def render(aggregate: Aggregate) -> Item:
    """An aggregate as plain JSON: its identity and version, and its public attributes."""
    return to_jsonable_python(
        {
            "id": aggregate.id,
            "type": type(aggregate).__name__,
            "version": aggregate.version,
            "created_on": aggregate.created_on,
            "modified_on": aggregate.modified_on,
            "state": {k: v for k, v in vars(aggregate).items() if not k.startswith("_")},
        }
    )


def event_types() -> dict[str, str]:
    """Each event type of the shop (``Cart.ItemAdded``) and its stored topic."""
    return {
        event.__qualname__: get_topic(event)
        for aggregate in AGGREGATES
        for event in vars(aggregate).values()
        if isinstance(event, type) and issubclass(event, Aggregate.Event)
    }


def _short(qualname: str) -> str:
    return qualname.rpartition(".")[2]


def _utc(moment: datetime) -> datetime:
    """A time zone-aware moment; a naive one is taken to be UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _digest_bytes(digest: str) -> bytes:
    try:
        value = bytes.fromhex(digest)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise InvalidValue("digest", "a digest is 64 hexadecimal digits (a SHA-256 hash)")
    return value
