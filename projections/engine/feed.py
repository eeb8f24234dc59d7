"""The event log as the read side reads it: in batches to catch up, and live.

Live, a process reads each new event once, through ONE library subscription (LISTEN/
NOTIFY on PostgreSQL; SQLite has no subscription, so there the feed polls the log),
and hands it to every live worker through a bounded tap. A worker whose tap overflows
is detached: it catches up from the log again instead of holding events in memory.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from eventstore import retry

log = logging.getLogger("eventshop.projections")


class Source:
    """The event log of one application, and how to decode its events."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        application_name: str,
        *,
        subscribe: bool,
    ) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.application_name = application_name
        self.subscribe = subscribe
        """Whether the recorder has a subscription (PostgreSQL); otherwise the feed polls."""

    def head(self) -> int:
        """The position of the last event of the log (0 when empty)."""
        return int(self.recorder.max_notification_id() or 0)

    def read(
        self, after: int, limit: int, stop: int | None = None, topics: Sequence[str] = ()
    ) -> Sequence[Notification]:
        """Up to ``limit`` events after position ``after`` (and up to ``stop``), in order;
        with ``topics``, only events of those topics (filtered by the database)."""
        return self.recorder.select_notifications(
            after, limit, stop=stop, topics=list(topics), inclusive_of_start=False
        )

    def read_rows(
        self, after: int, limit: int, stop: int | None = None, topics: Sequence[str] = ()
    ) -> list[Row]:
        """``read``, as plain tuples ``(position, originator id, version, topic, state)``
        to send to another process, the id as 16 bytes when it is a UUID. On PostgreSQL
        read by our own query: the library's makes a dict, a UUID and a Notification per
        row, three times the CPU (13 µs a row against 4), in a process that only passes
        the rows on (a rebuild's parent, ``parallel.py``)."""
        recorder: Any = self.recorder
        if not isinstance(recorder, PostgresApplicationRecorder):
            return [
                (n.id, id_bytes(n.originator_id), n.originator_version, n.topic, n.state)
                for n in self.read(after, limit, stop, topics)
            ]
        statement = SQL(
            "SELECT notification_id, uuid_send(originator_id), originator_version, topic, state"
            " FROM {}.{} WHERE notification_id > %s AND notification_id <= %s"
            + (" AND topic = ANY(%s)" if topics else "")
            + " ORDER BY notification_id LIMIT %s"
        ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        params: list[Any] = [after, 2**63 - 1 if stop is None else stop]
        if topics:
            params.append(list(topics))
        with (
            recorder.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute(statement, [*params, limit], prepare=True)
            return cursor.fetchall()

    def count(self, through: int, after: int = 0) -> int:
        """How many events the log holds after position ``after`` up to ``through``
        (PostgreSQL's positions may have gaps: a rolled-back append uses some up)."""
        if through <= after:
            return 0
        recorder: Any = self.recorder
        if isinstance(recorder, PostgresApplicationRecorder):
            statement = SQL(
                "SELECT count(*) AS n FROM {}.{} WHERE notification_id > %s"
                " AND notification_id <= %s"
            )
            table = Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
            with recorder.datastore.get_connection() as conn:
                row = conn.execute(statement.format(*table), (after, through)).fetchone()
            assert row is not None  # count(*) has a row
            return int(row["n"])
        if isinstance(recorder, SQLiteApplicationRecorder):
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(
                    f"SELECT count(*) FROM {recorder.events_table_name}"
                    " WHERE rowid > ? AND rowid <= ?",
                    (after, through),
                )
                return int(cursor.fetchone()[0])
        # In memory: positions 1, 2, 3, ... without gaps.
        return max(min(through, self.head()) - after, 0)


Row = tuple[int, Any, int, str, bytes]
"""An event of the log as plain values (``Source.read_rows``)."""


def id_bytes(originator_id: Any) -> Any:
    """An originator id as a row holds it: a UUID's 16 bytes, anything else as it is."""
    return originator_id.bytes if isinstance(originator_id, UUID) else originator_id


def notification(row: Row) -> Notification:
    """The library's notification of a row (``Source.read_rows``)."""
    position, originator, version, topic, state = row
    if isinstance(originator, bytes):
        originator = UUID(bytes=originator)
    return Notification(
        id=position,
        originator_id=originator,
        originator_version=version,
        topic=topic,
        state=state,
    )


class Tap:
    """One live worker's end of the feed. ``None`` in its queue is no event: it wakes
    the worker waiting on the queue, to see that it is detached or stopping."""

    def __init__(self, capacity: int) -> None:
        self.queue: queue.Queue[Notification | None] = queue.Queue(maxsize=capacity)
        self.detached = threading.Event()

    def wake(self) -> None:
        # A full queue wakes its worker anyway.
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)


class LiveFeed:
    """New events of the log, read once per process and handed to every attached tap."""

    def __init__(self, source: Source, *, poll_interval: float, capacity: int) -> None:
        self._source = source
        self._poll_interval = poll_interval
        self._capacity = capacity
        self._taps: set[Tap] = set()
        self._lock = threading.Lock()
        self._last = 0
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._subscription: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._last = self._source.head()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="projections-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._subscription is not None:
            self._subscription.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wake(self) -> None:
        """Poll now, rather than at the next interval: someone waits for a position."""
        self._wake.set()

    def attach(self) -> tuple[Tap, int]:
        """A tap that will receive every event after the position returned with it."""
        tap = Tap(self._capacity)
        with self._lock:
            if self._thread is None:
                tap.detached.set()
            else:
                self._taps.add(tap)
            return tap, self._last

    def detach(self, tap: Tap) -> None:
        with self._lock:
            self._taps.discard(tap)
        tap.detached.set()
        tap.wake()

    def _run(self) -> None:
        # Whatever fails, the feed starts again: its workers depend on it.
        restarts = retry.on_transient(
            "live feed failed, restarting",
            first=0.5,
            cap=retry.RESUME_WITHIN,
            stop=self._stopping,
            retry_if=lambda error: isinstance(error, Exception),
            before_retry=lambda error: self._detach_all(),
            logger=log,
        )
        with contextlib.suppress(retry.Stopped):
            while not self._stopping.is_set():
                restarts(self._follow)
        self._detach_all()

    def _follow(self) -> None:
        """Hand on what the log brings until it ends or fails. A stream that brought
        events and then failed is started again at once; one that fails at its start
        again and again, with ever longer waits (``_run``)."""
        pushed = False
        try:
            for notification in self._stream(self._last):
                self._push(notification)
                pushed = True
        except Exception as error:
            if not pushed:
                raise
            log.warning("live feed failed, restarting: %s", error)
            self._detach_all()

    def _stream(self, after: int) -> Iterator[Notification]:
        if self._source.subscribe:
            subscription = self._subscription = self._source.recorder.subscribe(gt=after)
            if self._stopping.is_set():  # stop() ran before the subscription existed
                subscription.stop()
            with subscription:
                # stop() stops the subscription, which ends this iteration.
                yield from subscription
            return
        while not self._stopping.is_set():
            notifications = self._source.read(after, 500)
            if notifications:
                yield from notifications
                after = notifications[-1].id
                continue
            self._wake.wait(self._poll_interval)
            self._wake.clear()

    def _push(self, notification: Notification) -> None:
        with self._lock:
            for tap in list(self._taps):
                try:
                    tap.queue.put_nowait(notification)
                except queue.Full:
                    # Too far behind to be live: it catches up from the log instead
                    # (a full queue needs no wake).
                    self._taps.discard(tap)
                    tap.detached.set()
            self._last = notification.id

    def _detach_all(self) -> None:
        with self._lock:
            taps, self._taps = self._taps, set()
        for tap in taps:
            tap.detached.set()
            tap.wake()
