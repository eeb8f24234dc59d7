"""Durable timers: a read model whose rows are timers, and the loop that fires each once.

A *reactor* (a process manager, seen from here: ``name``, ``version``, ``topics`` and
``react(event)``) answers events of the log with timer changes: a key and a due time
(schedule, or move), or a key without one (unschedule). A :class:`TimerModel` keeps
those timers in a table of its own, fed like every read model: its rows and its
position in one transaction, one feeder at a time, rebuilt blue/green. So the table is
always what the log says, and a rebuild recreates it.

:class:`Firing` acts on the due timers and deletes each it has acted on:

* PostgreSQL: due rows are claimed ``FOR UPDATE SKIP LOCKED`` in a transaction that
  lasts while they are acted on, so any number of processes fire side by side and each
  timer is held by one of them at a time;
* SQLite: one firer at a time (a lock file next to the database); the rows are read,
  acted on with no transaction open (the actions' commands need the file's write lock),
  then deleted.

A firer that dies after acting and before deleting acts again on the same timer later:
the action must make that harmless (process managers issue their commands under an
idempotency key of the timer). A timer whose action fails stays, and is tried again
after ``RETRY_SECONDS``. One that is due while no firer runs fires when one starts.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from domain.errors import DomainError
from eventstore.database import is_transient
from projections.engine.base import ReadModel, stamp
from projections.engine.locks import LockKeeper
from projections.engine.writes import Writes

log = logging.getLogger("eventshop.processes")

RETRY_SECONDS = 5.0
"""How long a timer whose action failed waits before this process tries it again."""


class TimerChange(Protocol):
    """What a reaction answers: schedule ``key`` at ``due_at``, or unschedule it (None)."""

    @property
    def key(self) -> str: ...
    @property
    def due_at(self) -> datetime | None: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


class Reactor(Protocol):
    """What reacts to the log with timer changes (a process manager)."""

    name: ClassVar[str]
    version: ClassVar[int]
    topics: ClassVar[tuple[str, ...]]

    def react(self, event: Any) -> Iterable[TimerChange]: ...


@dataclass(frozen=True)
class DueTimer:
    """A stored timer, as the firing hands it to its action."""

    key: str
    due_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


class TimerModel(ReadModel):
    """The timers a reactor schedules, in the table ``<name>_timers``.

    Subclass it with ``reactor = SomeReactor()``: the name, version and handlers follow
    from it (a class of its own, at module level, so that a rebuild's worker processes
    can import it).
    """

    reactor: ClassVar[Reactor]
    table: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        reactor = cls.__dict__.get("reactor")
        if reactor is None:
            return
        cls.name, cls.version = reactor.name, reactor.version
        cls.table = table = f"{reactor.name}_timers"
        cls.tables = (table,)
        cls.ddl = (
            f"CREATE TABLE IF NOT EXISTS {{{table}}} (timer_key TEXT PRIMARY KEY,"
            " due_at TEXT NOT NULL, data TEXT NOT NULL)",
            f'CREATE INDEX IF NOT EXISTS "{{p}}{table}_by_due" ON {{{table}}} (due_at, timer_key)',
        )
        cls.keys = {table: ("timer_key",)}
        cls.handlers = {topic: TimerModel._react for topic in reactor.topics}
        cls.topics = tuple(reactor.topics)

    def _react(self, tx: Writes, event: Any) -> None:
        for change in self.reactor.react(event):
            if change.due_at is None:
                tx.delete(self.table, {"timer_key": change.key})
                continue
            row = {
                "timer_key": change.key,
                "due_at": stamp(change.due_at),
                "data": json.dumps(dict(change.data), sort_keys=True),
            }
            tx.upsert(self.table, row, set={"due_at": row["due_at"], "data": row["data"]})

    def timers(self) -> list[DueTimer]:
        """Every timer, soonest first."""
        with self.reading() as tx:
            rows = tx.execute(f"SELECT * FROM {{{self.table}}} ORDER BY due_at, timer_key").rows()
        return [_timer(row) for row in rows]

    @contextmanager
    def claim(
        self, now: datetime, limit: int, skip: Iterable[str] = ()
    ) -> Iterator[tuple[list[DueTimer], Callable[[DueTimer], None]]]:
        """The timers due at ``now`` (up to ``limit``, none of ``skip``), and a function
        that deletes one once acted on. On PostgreSQL they stay locked (others skip them)
        until the block ends; elsewhere the caller must be the only firer."""
        skipped = sorted(skip)
        where = "due_at <= :now" + (
            " AND timer_key NOT IN (" + ", ".join(f":s{i}" for i in range(len(skipped))) + ")"
            if skipped
            else ""
        )
        select = (
            f"SELECT * FROM {{{self.table}}} WHERE {where} ORDER BY due_at, timer_key LIMIT :n"
        )
        delete = f"DELETE FROM {{{self.table}}} WHERE timer_key = :key AND due_at = :due"
        params = {"now": stamp(now), "n": limit, **{f"s{i}": k for i, k in enumerate(skipped)}}
        if self._dialect == "postgres":
            with self.view.writing() as cursor:
                cursor.execute(self.sql(select + " FOR UPDATE SKIP LOCKED"), params)
                due = [_timer(dict(row)) for row in cursor.fetchall()]
                yield due, lambda timer: cursor.execute(self.sql(delete), _key(timer))
            return
        with self.reading() as tx:
            due = [_timer(row) for row in tx.execute(select, params).rows()]
        done: list[DueTimer] = []
        yield due, done.append
        if done:
            with self.view.writing() as cursor:
                for timer in done:
                    cursor.execute(self.sql(delete), _key(timer))


def _timer(row: Mapping[str, Any]) -> DueTimer:
    due = datetime.fromisoformat(row["due_at"].replace("Z", "+00:00"))
    return DueTimer(row["timer_key"], due, json.loads(row["data"]))


def _key(timer: DueTimer) -> dict[str, str]:
    # Deleted only if it is still that timer: the feeder may have moved it meanwhile.
    return {"key": timer.key, "due": stamp(timer.due_at)}


Action = Callable[[DueTimer], None]
"""Acts on a due timer; returning means done (the timer is deleted), raising means
try again later."""


class Firing:
    """Fires the due timers of one :class:`TimerModel`: in rounds, every ``interval``
    seconds in a thread (``start``/``stop``), or one round now (``fire_due``).

    ``locks``: who may fire where the database cannot share out rows (SQLite): a lock
    named like the model; None on PostgreSQL. ``clock``: the time timers are due by.
    ``ready``: called once in the thread before its first round, e.g. to wait (a
    bounded time) until the timers have caught up with the log, so that timers that
    fell due while nothing ran fire at once rather than a round later.
    """

    def __init__(
        self,
        model: TimerModel,
        act: Action,
        *,
        locks: LockKeeper | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        interval: float = 1.0,
        batch: int = 20,
        ready: Callable[[], object] | None = None,
    ) -> None:
        self.model = model
        self.ready = ready
        self.act = act
        self.locks = locks
        self.clock = clock
        self.interval = interval
        self.batch = batch
        self._failed: dict[str, float] = {}  # key -> monotonic time it may be tried again
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def fire_due(self) -> int:
        """Act on every timer due now that this firer may take; how many were done."""
        if self.locks is not None and not self.locks.try_acquire(self.model.name):
            return 0  # another process fires them
        fired = 0
        while not self._stopping.is_set():
            now = time.monotonic()
            self._failed = {k: at for k, at in self._failed.items() if at > now}
            with self.model.claim(self.clock(), self.batch, self._failed) as (due, done):
                for timer in due:
                    if self._fire(timer):
                        done(timer)
                        fired += 1
            if len(due) < self.batch:
                return fired
        return fired

    def _fire(self, timer: DueTimer) -> bool:
        try:
            self.act(timer)
        except Exception as error:
            self._failed[timer.key] = time.monotonic() + RETRY_SECONDS
            log.warning(
                "%s: the timer %s failed; trying again in %.0f s: %s",
                self.model.name,
                timer.key,
                RETRY_SECONDS,
                error,
                # A bug shows where; a busy order or database just says so.
                exc_info=not (is_transient(error) or isinstance(error, DomainError)),
            )
            return False
        return True

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"timers-{self.model.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.locks is not None:
            self.locks.release(self.model.name)

    def _run(self) -> None:
        if self.ready is not None:
            try:
                self.ready()
            except Exception as error:  # only a head start: the rounds go on regardless
                log.warning("%s: timers not known to be caught up: %s", self.model.name, error)
        while not self._stopping.is_set():
            try:
                self.fire_due()
            except Exception as error:  # the database failed: the next round tries again
                log.warning("%s: firing timers failed: %s", self.model.name, error)
            self._stopping.wait(self.interval)
