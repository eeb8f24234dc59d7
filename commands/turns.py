"""Commands on one aggregate take turns instead of racing.

Two commands that change the same aggregate at the same moment would both load it,
both decide, and one of them would lose the optimistic-concurrency race and run again
(or, under load, again and again). Within a process they queue here instead: a command
waits for its turn on each aggregate it will change, then loads, decides and saves while
it holds them. Across processes the log's version check decides, and the loser runs
again from a fresh load (commands/service.py); on PostgreSQL an aggregate whose command
lost such a race is then contended for a while, and its commands also take turns in the
database (``DatabaseTurns``: a session advisory lock per aggregate), so that processes
queue for it there instead of colliding again and again.

A command takes its turns on several aggregates in one go, in a fixed order (sorted
ids), and a command that holds a turn on a stock level never asks for one on a cart or
an order: so no two commands can wait for each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from uuid import UUID

import psycopg
from eventsourcing.persistence import RecordConflictError
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from domain.errors import Busy
from eventstore.database import advisory_key
from eventstore.url import StoreURL

DEFAULT_TIMEOUT = 10.0
# How long an aggregate stays contended after a lost race or a wait for its lock.
CONTENDED_SECONDS = 5.0


class Turns:
    """One lock per aggregate id in use, made on demand and dropped when nobody holds it."""

    def __init__(
        self, timeout: float = DEFAULT_TIMEOUT, across: DatabaseTurns | None = None
    ) -> None:
        self.timeout = timeout
        self.across = across
        self._guard = threading.Lock()
        self._locks: dict[UUID, tuple[threading.RLock, int]] = {}
        self._local = threading.local()

    def close(self) -> None:
        if self.across is not None:
            self.across.close()

    @contextmanager
    def of(self, *aggregate_ids: UUID) -> Iterator[None]:
        """Hold the turn on each of these aggregates for the block (Busy after ``timeout``)."""
        deadline = time.monotonic() + self.timeout
        held: list[UUID] = []
        mine = self._mine()
        try:
            for aggregate_id in sorted(set(aggregate_ids)):
                lock = self._use(aggregate_id)
                if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    self._release_use(aggregate_id)
                    raise Busy(
                        f"waited {self.timeout:g}s for a turn on {aggregate_id}; try again",
                        aggregate_id=str(aggregate_id),
                    )
                held.append(aggregate_id)
                mine[aggregate_id] = mine.get(aggregate_id, 0) + 1
            if self.across is None:
                yield
            else:
                with self.across.hold(held, deadline, self.timeout):
                    yield
        except RecordConflictError:
            # Another process wrote one of them meanwhile: from now on, take turns with it.
            if self.across is not None:
                self.across.contended(held)
            raise
        finally:
            for aggregate_id in reversed(held):
                times = mine.get(aggregate_id, 0)  # 0: given up early (``release_held``)
                if times:
                    if times == 1:
                        del mine[aggregate_id]
                    else:
                        mine[aggregate_id] = times - 1
                    self._locks[aggregate_id][0].release()
                self._release_use(aggregate_id)

    def release_held(self) -> None:
        """Give up every turn this thread holds in this process, before its blocks end:
        its save is queued, and the next command may decide on the state it leaves.
        (Turns held in the database are kept to the end of the block.)"""
        mine = self._mine()
        for aggregate_id, times in mine.items():
            lock = self._locks[aggregate_id][0]
            for _ in range(times):
                lock.release()
        mine.clear()

    def trusts(self, aggregate_id: UUID) -> bool:
        """Whether this thread holds the turn on ``aggregate_id`` and no other process
        contends it: then nothing but this thread changes it (commands/cache.py)."""
        if aggregate_id not in self._mine():
            return False
        return self.across is None or not self.across.is_contended(aggregate_id)

    def _mine(self) -> dict[UUID, int]:
        """The turns this thread holds, each with how many times it took it."""
        mine: dict[UUID, int] = self._local.__dict__.setdefault("mine", {})
        return mine

    def _use(self, aggregate_id: UUID) -> threading.RLock:
        with self._guard:
            lock, users = self._locks.get(aggregate_id, (None, 0))
            if lock is None:
                lock = threading.RLock()
            self._locks[aggregate_id] = (lock, users + 1)
            return lock

    def _release_use(self, aggregate_id: UUID) -> None:
        with self._guard:
            lock, users = self._locks[aggregate_id]
            if users == 1:
                del self._locks[aggregate_id]
            else:
                self._locks[aggregate_id] = (lock, users - 1)


class DatabaseTurns:
    """Turns across processes sharing one PostgreSQL database, for contended aggregates.

    A command on an aggregate this process has lately seen contended (``contended``)
    holds a session advisory lock keyed by the aggregate's id while it loads, decides and
    saves; other processes' commands on it wait for that lock (bounded by the command's
    wait, then Busy). Aggregates nobody contends cost nothing: no lock, no round trip.
    Up to ``connections`` connections of its own (one per command holding such a turn),
    opened on first contention.
    """

    def __init__(
        self, store: StoreURL, *, connections: int = 5, window: float = CONTENDED_SECONDS
    ) -> None:
        self._namespace = ("turn", store.dbname, store.schema)
        self._window = window
        self._until: dict[UUID, float] = {}
        self._guard = threading.Lock()
        self._local = threading.local()
        self._pool: ConnectionPool[psycopg.Connection] = ConnectionPool(
            store.dsn(),
            min_size=0,
            max_size=connections,
            kwargs={"autocommit": True},
            open=False,  # opened on first contention: most processes never need it
        )

    @classmethod
    def for_store(cls, store: StoreURL) -> DatabaseTurns | None:
        return cls(store) if store.is_postgres else None

    def close(self) -> None:
        self._pool.close()

    def contended(self, aggregate_ids: Sequence[UUID]) -> None:
        until = time.monotonic() + self._window
        with self._guard:
            for aggregate_id in aggregate_ids:
                self._until[aggregate_id] = until

    def is_contended(self, aggregate_id: UUID) -> bool:
        with self._guard:
            until = self._until.get(aggregate_id)
            if until is not None and until <= time.monotonic():
                del self._until[aggregate_id]
                until = None
        return until is not None

    @contextmanager
    def hold(self, aggregate_ids: Sequence[UUID], deadline: float, wait: float) -> Iterator[None]:
        """Hold the database's turn on those of ``aggregate_ids`` that are contended (in
        the order given, which every process follows) until the block ends."""
        mine: set[UUID] = self._local.__dict__.setdefault("held", set())
        wanted = [a for a in aggregate_ids if a not in mine and self.is_contended(a)]
        if not wanted:
            yield
            return
        with self._guard:
            self._pool.open()  # nothing when it is open already
        try:
            conn = self._pool.getconn(timeout=max(0.001, deadline - time.monotonic()))
        except PoolTimeout:
            raise Busy(f"waited {wait:g}s for a turn; try again") from None
        try:
            self._lock(conn, wanted, deadline, wait)
            mine.update(wanted)
            try:
                yield
            finally:
                mine.difference_update(wanted)
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock_all()")
            except psycopg.Error:
                conn.close()  # its locks go with its session; the pool drops it
            self._pool.putconn(conn)

    def _lock(
        self, conn: psycopg.Connection, wanted: list[UUID], deadline: float, wait: float
    ) -> None:
        for aggregate_id in wanted:
            key = advisory_key(*self._namespace, str(aggregate_id))
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row is not None and row[0]:
                continue
            # Another process has its turn: still contended, so stay careful longer.
            self.contended([aggregate_id])
            milliseconds = max(1, int((deadline - time.monotonic()) * 1000))
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{milliseconds}ms")))
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            except psycopg.errors.LockNotAvailable:
                raise Busy(
                    f"waited {wait:g}s for a turn on {aggregate_id}; try again",
                    aggregate_id=str(aggregate_id),
                ) from None
