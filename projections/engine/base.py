"""What every read model shares: how it declares its tables and handlers, how a batch
of the log is applied exactly once, and the plain values its queries answer with.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

from eventsourcing.persistence import Mapper, Notification, Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from domain.errors import InvalidValue
from eventstore.database import is_transient
from projections.engine import parking
from projections.engine.failures import EventFailed, Unblocked, transient
from projections.engine.parking import PARK, ParkedEvent
from projections.engine.tables import LostOwnership, ReadModelStore, Tx
from projections.engine.writes import Writes

log = logging.getLogger("eventshop.projections")
F = TypeVar("F", bound=Callable[..., None])
_INDEX = re.compile(r"\s*CREATE\s+(UNIQUE\s+)?INDEX\b", re.IGNORECASE)


def handles(*event_classes: type) -> Callable[[F], F]:
    """Mark a method ``(self, tx: Writes, event)`` as the handler of these event classes."""

    def mark(method: F) -> F:
        method.__handles__ = event_classes  # type: ignore[attr-defined]
        return method

    return mark


@dataclass
class Prepared:
    """A run of the log, decoded and handled, ready to be written in one transaction."""

    writes: Writes
    first: Notification | None
    """The run's first event: a failure to write the run is reported at it."""
    events: int
    """How many events of the log the run holds (handled or not)."""
    last: int
    """The position the run takes the read model to."""
    parked: list[ParkedEvent] = field(default_factory=list)
    """Events of the run a handler failed on (or held parked by a rebuild), and later
    events of their aggregates: parked, in the run's transaction, instead of applied."""
    blocked: dict[str, int] = field(default_factory=dict)
    """The aggregates with a parked event the run was prepared against."""


class ReadModel(Projection[ReadModelStore]):
    """A read model: its tables, the events it handles, and its queries.

    It is an eventsourcing ``Projection``, so the library's ``ProjectionRunner`` can run it
    one event per transaction (``process_event``); our runner feeds it whole batches of the
    log per transaction (``apply_batch``).
    """

    name = ""
    version: ClassVar[int] = 1
    """Raise it with every change of what the tables hold (columns, handlers): on start,
    ``eventshop serve`` / ``worker`` then rebuild the read model blue/green. Versions
    only go up: tables built by a newer version are never fed by older code."""
    tables: ClassVar[tuple[str, ...]] = ()
    """Logical table names; SQL refers to them as ``{name}``, and to the table prefix as ``{p}``."""
    ddl: ClassVar[tuple[str, ...]] = ()
    keys: ClassVar[dict[str, tuple[str, ...]]] = {}
    """Per table, the columns (primary key or unique) by which handlers name its rows."""
    handlers: ClassVar[dict[str, Callable[..., None]]] = {}
    """Event topic -> handler; every other event only advances the tracked position."""
    on_failure: ClassVar[str] = PARK
    """When a handler fails on an event: ``park`` it and go on (``parking.py``), or ``stop``
    the read model just before it until the code is fixed and the worker restarted (for
    a read model whose rows are wrong unless every event is applied in log order)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Callable[..., None]] = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                for event_class in getattr(attribute, "__handles__", ()):
                    found[get_topic(event_class)] = attribute
        cls.handlers = found
        # The library's runner subscribes to these topics only.
        cls.topics = tuple(found)

    def __init__(self, view: ReadModelStore, *, create: bool = True) -> None:
        """Bind to the recorder that holds the tables, and create them if they are missing
        (unless not ``create``: tables built by another version stay as they are)."""
        super().__init__(view)
        self._dialect = view.dialect
        self._tables = {t: view.qualify(view.table_prefix + t) for t in self.tables}
        self._tables["p"] = view.table_prefix
        self._compiled: dict[str, str] = {}
        self._types: dict[str, dict[str, str]] = {}
        # Queries lock every table of the model, always in the same (sorted) order.
        self._read_locks = sorted(self._tables[t] for t in self.tables)
        self.fence_version: int | None = self.version
        """The version every batch checks the live tables are at; None for a rebuild's
        copy, which this very code builds."""
        self.hold: Mapping[int, ParkedEvent] = {}
        """Events not to apply, by position: a rebuild's copy keeps the live copy's parked
        events parked, and its skipped ones skipped."""
        self.blocked: Mapping[str, int] = {}
        """Aggregates with a parked event (its position), as of the last commit: their
        later events are parked behind it. Each commit checks it against the table."""
        if create:
            self.create()

    @classmethod
    def detached(cls, dialect: str) -> ReadModel:
        """An instance bound to no database, which can only ``prepare`` batches (in a
        worker process of a rebuild) for a database of this dialect: what it records is
        written by a bound instance."""
        model = cls.__new__(cls)
        model._dialect, model._tables = dialect, {}
        model._compiled, model._types, model._read_locks = {}, {}, []
        model.fence_version = None
        model.hold, model.blocked = {}, {}
        return model

    def create(self, *, indexes: bool = True) -> None:
        """Create the tables (with their indexes, or not) and the status row if missing."""
        statements = [s for s in self.ddl if indexes or not _INDEX.match(s)]
        self.view.create_read_model(self.name, [self.sql(s) for s in statements])

    def index_ddl(self) -> list[str]:
        """The statements that create the secondary indexes, in this copy's names."""
        return [self.sql(s) for s in self.ddl if _INDEX.match(s)]

    def sql(self, template: str) -> str:
        """A statement of this read model in its database's dialect (cached)."""
        compiled = self._compiled.get(template)
        if compiled is None:
            compiled = self._compiled[template] = self.view.compile_sql(template, self._tables)
        return compiled

    def column_types(self, cursor: Any, table: str) -> dict[str, str]:
        """Column name -> SQL type of one of this copy's tables (PostgreSQL; cached)."""
        types = self._types.get(table)
        if types is None:
            cursor.execute(
                "SELECT attname AS name, format_type(atttypid, atttypmod) AS type"
                " FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped",
                (self._tables[table],),
            )
            types = {row["name"]: row["type"] for row in cursor.fetchall()}
            self._types[table] = types
        return types

    def writes(self) -> Writes:
        """An empty record of row operations, for the handlers of one batch."""
        return Writes(self._dialect, self._tables, self.keys, self.sql, self.column_types)

    # --- feeding -------------------------------------------------------------------------

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Apply one event and track it in one transaction (the library runner's way)."""
        handler = self.handlers.get(get_topic(type(domain_event)))
        with self.view.writing() as cursor:
            if handler is not None:
                writes = self.writes()
                handler(self, writes, domain_event)
                writes.write(cursor)
            self.view.track(cursor, self.name, tracking, 1)

    def apply_batch(
        self,
        notifications: Sequence[Notification],
        mapper: Mapper[Any],
        application_name: str,
        expected: int,
        through: int | None = None,
    ) -> int:
        """Apply a run of the log that follows position ``expected``, in ONE transaction.

        The read-model rows, the new tracking position and the count of applied events are
        committed together or not at all. Returns the new position: the last event's, or
        ``through`` when the run was read by topic and covers the log up to there.
        """
        while True:
            prepared = self.prepare(notifications, mapper, through)
            try:
                return self.commit(prepared, application_name, expected)
            except Unblocked:
                continue  # prepared again, knowing what is parked now

    def prepare(
        self,
        notifications: Sequence[Notification],
        mapper: Mapper[Any],
        through: int | None = None,
        *,
        hold: Mapping[int, ParkedEvent] | None = None,
        blocked: Mapping[str, int] | None = None,
        on_failure: str | None = None,
    ) -> Prepared:
        """Decode a run of the log and record what its events do to the rows. No I/O:
        most of the work, done before the transaction, which then holds its locks
        (SQLite: the whole file's) only while the rows are written.

        An event whose decoding or handler fails is parked (``on_failure``, by default the
        read model's): the run's rows are recorded again without it, since its handler
        may have recorded part of its rows; the events around it are applied as usual,
        except the later events of its aggregate, which are parked behind it, so that a
        retry applies them in their order. With ``stop``, or when the database failed,
        ``EventFailed`` is raised instead. ``hold``: events not to apply (by default
        ``self.hold``); ``blocked``: aggregates with an event parked already, by id (by
        default ``self.blocked``)."""
        hold = self.hold if hold is None else hold
        known = dict(self.blocked if blocked is None else blocked)
        blocked = dict(known)
        park = (on_failure or self.on_failure) == PARK
        parked: list[ParkedEvent] = []
        writes = self.writes()
        done: list[tuple[Callable[..., None], Any]] = []
        handlers = self.handlers
        for notification in notifications:
            held = hold.get(notification.id)
            if held is not None:
                if not held.skipped:
                    parked.append(held)
                    blocked.setdefault(held.aggregate_id, held.position)
                continue
            handler = handlers.get(notification.topic)
            if handler is None:
                continue
            if blocked and (behind := blocked.get(str(notification.originator_id))):
                parked.append(ParkedEvent.behind(notification, behind))
                continue
            try:
                event = mapper.to_domain_event(notification)
                handler(self, writes, event)
            except Exception as error:
                if not park or is_transient(error):
                    raise EventFailed(self.name, notification, error) from error
                parked.append(ParkedEvent.of(notification, error))
                blocked[str(notification.originator_id)] = notification.id
                writes = self.writes()
                for again, earlier in done:  # handlers are pure: they succeed again
                    again(self, writes, earlier)
                continue
            done.append((handler, event))
        last = max(notifications[-1].id if notifications else 0, through or 0)
        first = notifications[0] if notifications else None
        return Prepared(writes, first, len(notifications), last, parked, known)

    def commit(self, prepared: Prepared, application_name: str, expected: int) -> int:
        """Write a prepared run of the log that follows position ``expected``, and track
        it, in ONE transaction. Returns the new position. :class:`Unblocked` when it was
        prepared against other parked events than there are now (a retry or a skip in
        another thread or process): prepare it again."""
        try:
            with self.view.writing() as cursor:
                self.view.fence(cursor, application_name, expected)
                if self.fence_version is not None:
                    self.view.check_version(cursor, self.name, self.fence_version)
                # Read under the fence, which a retry and a skip hold too.
                blocked = parking.blocked(self.view, cursor, self.name)
                if blocked != prepared.blocked:
                    self.blocked = blocked
                    raise Unblocked(self.name)
                self._store(cursor, prepared, application_name)
        except (EventFailed, LostOwnership, Unblocked):
            raise
        except Exception as error:
            if prepared.first is None:
                raise
            # The batch's rows are written together: which event's failed is not known
            # (``apply_split`` then finds it).
            exact = prepared.events == 1
            failed = EventFailed(self.name, prepared.first, error, exact=exact)
            if not exact or self.on_failure != PARK or transient(failed):
                raise failed from error
            # The database refused the one event's rows (e.g. text PostgreSQL cannot
            # hold): park it instead, in a transaction of its own.
            entry = ParkedEvent.of(prepared.first, error)
            parked = [*prepared.parked, entry]
            empty = Prepared(
                self.writes(),
                prepared.first,
                prepared.events,
                prepared.last,
                parked,
                prepared.blocked,
            )
            with self.view.writing() as cursor:
                self.view.fence(cursor, application_name, expected)
                if self.fence_version is not None:
                    self.view.check_version(cursor, self.name, self.fence_version)
                self._store(cursor, empty, application_name)
            prepared = empty
        self.blocked = _blocking(prepared)  # what the next run is prepared against
        return prepared.last

    def apply_split(
        self,
        notifications: Sequence[Notification],
        mapper: Mapper[Any],
        application_name: str,
        expected: int,
        through: int | None = None,
    ) -> int:
        """``apply_batch``, and when a run fails: the database refused its rows as a whole,
        so it is applied in halves, then halves of the half that fails, ..., until the
        event at fault is alone and parked (about 2 log2(n) transactions, not n); with
        ``stop``, the events before the failing one are committed, then it is raised."""
        app = application_name
        try:
            return self.apply_batch(notifications, mapper, app, expected, through)
        except EventFailed as failed:
            if transient(failed):
                raise
            if len(notifications) < 2:
                raise
            ids = [n.id for n in notifications]
            # Known to be at fault (``stop``): commit the events before it, then let it
            # fail alone, where its error is its own.
            half = ids.index(failed.notification.id) if failed.exact else len(ids) // 2
            if half == 0:
                raise
        position = self.apply_split(notifications[:half], mapper, app, expected)
        return self.apply_split(notifications[half:], mapper, app, position, through)

    def apply_in(
        self,
        cursor: Any,
        notifications: Sequence[Notification],
        mapper: Mapper[Any],
        application_name: str,
    ) -> int:
        """Apply events and track them in the caller's transaction, whose fence the
        caller holds. Returns the new position."""
        blocked = parking.blocked(self.view, cursor, self.name)
        prepared = self.prepare(notifications, mapper, blocked=blocked)
        self._store(cursor, prepared, application_name)
        self.blocked = _blocking(prepared)
        return prepared.last

    def write_rows(self, cursor: Any, prepared: Prepared) -> None:
        """Write a prepared run's rows (not its parked events nor its position)."""
        # Prepared here or in a worker process: written into this instance's tables.
        prepared.writes.bind(self._dialect, self._tables, self.sql, self.column_types)
        prepared.writes.write(cursor)

    def _store(self, cursor: Any, prepared: Prepared, application_name: str) -> None:
        self.write_rows(cursor, prepared)
        if prepared.parked:
            parking.write(self.view, cursor, self.name, prepared.parked)
            for entry in prepared.parked:
                if entry.position not in self.hold:
                    log.error(
                        "projection %s PARKED the event at position %s (%s, %s v%s) and goes"
                        " on, degraded; retry it after a fix, or skip it: %s",
                        self.name,
                        entry.position,
                        entry.type,
                        entry.aggregate_id,
                        entry.aggregate_version,
                        entry.error,
                    )
        tracking = Tracking(application_name, prepared.last)
        self.view.track(cursor, self.name, tracking, prepared.events)

    # --- reading -------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        """A consistent snapshot of this read model's tables, for one query."""
        with self.view.reading(self._read_locks) as cursor:
            yield Tx(cursor, self.sql, prepare=self.view.prepare_queries)

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, in a stable order: to compare two copies."""
        with self.reading() as tx:
            return {
                table: sorted(
                    tx.execute(f"SELECT * FROM {{{table}}}").rows(),
                    key=lambda row: json.dumps(row, sort_keys=True, default=str),
                )
                for table in self.tables
            }


def _blocking(prepared: Prepared) -> dict[str, int]:
    """The aggregates with a parked event once ``prepared`` is written."""
    blocked = dict(prepared.blocked)
    for entry in prepared.parked:
        blocked.setdefault(entry.aggregate_id, entry.position)
    return blocked


# --- plain values of answers and tables ---------------------------------------------------


def cents(amount: Decimal) -> int:
    """Money as whole cents: exact sums on both databases."""
    return int(amount.scaleb(2).to_integral_exact())


def money(amount_cents: int) -> str:
    """Cents as the API's decimal string, e.g. 1250 -> "12.50"."""
    return f"{Decimal(int(amount_cents)).scaleb(-2):.2f}"


def stamp(moment: datetime) -> str:
    """A timestamp as fixed-width UTC ISO 8601, so that text order is time order."""
    # isoformat() with fixed microseconds: the same text as strftime, several times faster.
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_moment(
    value: datetime | date | str | None, field: str, *, end: bool = False
) -> str | None:
    """A query bound as a stamp. A bare date means the start of that day, or with ``end``
    its last microsecond, so that a date bound includes the whole day."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise InvalidValue(field, f"{field} must be an ISO 8601 date or time") from None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.max if end else time.min, tzinfo=UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return stamp(value)


def parse_day(value: date | str | None, field: str) -> str | None:
    """A day bound as ``YYYY-MM-DD``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).date().isoformat()
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            raise InvalidValue(field, f"{field} must be an ISO 8601 date (YYYY-MM-DD)") from None
    return value.isoformat()
