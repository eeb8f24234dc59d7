"""Recently used aggregates, kept in memory between commands.

The library's repository cache, as it comes, brings a cached aggregate up to date from
the log on every load ("fast-forward"): one query per command, even when nothing else
wrote the aggregate. Here a command that holds an aggregate's turn in this process
(commands/turns.py), on an aggregate no other process contends, takes the cached copy
as it is: nothing in this process can have changed it meanwhile, and if another process
did, the save's version check refuses the save (``RecordConflictError``), the entry is
dropped, and the command runs again from the log. Every other load (an aggregate the
command reads but does not change, like a product's price; a contended one) is brought
up to date from the log, as before.

On PostgreSQL a command gives up its turns as soon as its save is queued to be written
(commands/group_commit.py), before the commit; the next command on the same aggregate
then decides on the state that save leaves (``queued``), so that commands on a hot
aggregate are decided one after another at the speed of the CPU and written together,
rather than one commit apiece. Nothing is acknowledged before its own commit, and the
version check under the lock refuses any save whose aggregate is not at the version it
was decided on: if a queued save fails, every save decided after it on the same
aggregate fails too (and runs again from the log). A command that a rule refuses, on
such a state, is refused only once that state has committed (``confirmed``): the save
it followed may fail, or be its own twin's under one idempotency key.

An aggregate holding personal data (one whose events declare personal fields, like an
Order) is kept at most ``personal_ttl`` seconds from the moment it was read from the
log, then read again: its customer's data may have been erased meanwhile by another
process (eventstore/personal.py says why that bounds how long erased data can live on).

Cached aggregates are never changed in place, so that copies can be taken without a
lock: a load hands out a deep copy, and a save replaces the entry with the saved
aggregate, if it is newer than the entry (the library's own fast-forward, which would
change entries in place, is off: ``CACHE_ENV``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository, project_aggregate
from eventsourcing.domain import Aggregate

from commands.batches import Signal
from domain.personal import personal_data

# Aggregates kept (the least recently used go first), unless the Shop is given another
# AGGREGATE_CACHE_MAXSIZE; and the library's settings this module relies on.
CACHE_SIZE = "10000"
CACHE_ENV = {"AGGREGATE_CACHE_FASTFORWARD": "n", "DEEPCOPY_FROM_AGGREGATE_CACHE": "y"}


@dataclass(eq=False)
class _Flight:
    """A save queued to be written: settled once committed (``ok``) or failed."""

    settled: Signal = field(default_factory=Signal)
    ok: bool = False
    save: object = None  # the recorder's handle of the save (commands/group_commit.py)


class Aggregates:
    """Loads aggregates through the repository's cache (see the module's docstring)."""

    def __init__(
        self,
        repository: Repository[Any],
        trusted: Callable[[UUID], bool],
        personal_ttl: float = float("inf"),
    ) -> None:
        """``trusted(id)``: whether this thread may take the cached copy of ``id`` as it
        is (it holds the aggregate's turn, and no other process contends it);
        ``personal_ttl``: how long a copy holding personal data may be kept."""
        self.repository = repository
        self.trusted = trusted
        self.personal_ttl = personal_ttl
        # When each cached aggregate holding personal data was read from the log.
        self._read_at: dict[UUID, float] = {}
        # Queued to be written, not yet committed, each with its save's flight.
        self._ahead: dict[UUID, tuple[Aggregate, _Flight]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # this thread's command: its flight, those it used

    def begin(self) -> None:
        """A command's attempt starts on this thread."""
        self._local.used = []
        self._local.cached = []
        self._local.flight = None

    def confirmed(self, timeout: float) -> bool:
        """Whether the state this attempt decided on was the log's: every queued save it
        decided after has committed (waiting for them, up to ``timeout`` seconds each),
        and no other process wrote an aggregate it took from the cache as it was. A save
        needs none of this (its version check says so); a refusal does: it writes
        nothing, so nothing else would catch a decision taken on a stale copy."""
        flights: list[_Flight] = getattr(self._local, "used", [])
        if not all(f.settled.wait(timeout) and f.ok for f in flights):
            return False
        cached: list[tuple[UUID, int]] = getattr(self._local, "cached", [])
        stale = [
            aggregate_id
            for aggregate_id, version in cached
            if next(iter(self.repository.event_store.get(aggregate_id, gt=version, limit=1)), None)
        ]
        self._forget(stale)
        return not stale

    def load(self, aggregate_id: UUID) -> Aggregate:
        """The aggregate, a copy of its own (``AggregateNotFoundError`` if none)."""
        trusted = self.trusted(aggregate_id)
        with self._lock:
            ahead = self._ahead.get(aggregate_id) if trusted else None
        if ahead is not None:
            copy: Aggregate = copied(ahead[0])
            self._local.__dict__.setdefault("used", []).append(ahead[1])
            return copy
        cache = self.repository.cache
        if cache is None:
            return self._get(aggregate_id)
        self._expire(aggregate_id)
        try:
            cached: Aggregate = cache.get(aggregate_id)  # type: ignore[assignment]
        except KeyError:
            return self._get(aggregate_id)  # read from the log, and cached
        aggregate: Aggregate = copied(cached)
        if trusted:
            self._local.__dict__.setdefault("cached", []).append((aggregate_id, aggregate.version))
            return aggregate
        newer = self.repository.event_store.get(originator_id=aggregate_id, gt=aggregate.version)
        if project_aggregate(aggregate, newer) is None:
            raise AggregateNotFoundError(aggregate_id)
        return aggregate  # brought up to date in place (it is this load's own copy)

    def followed(self) -> list[object]:
        """The queued saves whose states this attempt decided on (their recorder's
        handles): its own save must be written only if they are."""
        flights: list[_Flight] = getattr(self._local, "used", [])
        return [f.save for f in flights if f.save is not None]

    def queued(self, aggregates: Mapping[UUID, Aggregate], save: object = None) -> None:
        """This thread's save of these aggregates is queued (``save``: the recorder's
        handle of it): the next command on them starts from them."""
        flight = self._local.flight = _Flight(save=save)
        with self._lock:
            self._ahead.update((i, (a, flight)) for i, a in aggregates.items())

    def saved(self, aggregates: Mapping[UUID, Any]) -> None:
        """These aggregates' saves committed: cache them (unless a newer one is)."""
        cache = self.repository.cache
        with self._lock:
            for aggregate_id, aggregate in aggregates.items():
                ahead = self._ahead.get(aggregate_id)
                if ahead is not None and ahead[0] is aggregate:
                    del self._ahead[aggregate_id]
                if cache is None:
                    continue
                try:
                    cached: Any = cache.get(aggregate_id)
                except KeyError:
                    cached = None
                if cached is None or cached.version < aggregate.version:
                    cache.put(aggregate_id, aggregate)
                    if _holds_personal_data(type(aggregate)):
                        self._read_at.setdefault(aggregate_id, time.monotonic())
        self._settle(ok=True)

    def failed(self, aggregates: Mapping[UUID, Any]) -> None:
        """These aggregates' saves failed: forget what this process thought of them
        (a save decided after them fails too; the next command reads the log)."""
        self._forget(aggregates)
        self._settle(ok=False)

    def forget(self, aggregate_ids: Iterable[UUID]) -> None:
        """Drop these aggregates from memory (their customer's data was erased): the
        next command on one reads it from the log, where its personal fields are erased."""
        self._forget(aggregate_ids)

    def _forget(self, aggregate_ids: Iterable[UUID]) -> None:
        cache = self.repository.cache
        with self._lock:
            for aggregate_id in aggregate_ids:
                self._ahead.pop(aggregate_id, None)
                self._read_at.pop(aggregate_id, None)
                if cache is not None:
                    with contextlib.suppress(KeyError):
                        cache.get(aggregate_id, evict=True)

    def _settle(self, ok: bool) -> None:
        flight: _Flight | None = getattr(self._local, "flight", None)
        if flight is not None:
            flight.ok = ok
            flight.settled.set()
            self._local.flight = None

    def _get(self, aggregate_id: UUID) -> Aggregate:
        since = time.monotonic()
        aggregate: Aggregate = self.repository.get(aggregate_id)
        if _holds_personal_data(type(aggregate)):
            with self._lock:
                self._read_at.setdefault(aggregate_id, since)
        return aggregate

    def _expire(self, aggregate_id: UUID) -> None:
        """Drop the cached copy of an aggregate holding personal data once it is older
        than ``personal_ttl``."""
        with self._lock:
            read_at = self._read_at.get(aggregate_id)
        if read_at is not None and read_at + self.personal_ttl <= time.monotonic():
            self._forget([aggregate_id])
        if len(self._read_at) > 2 * _CACHE_LIMIT:
            now = time.monotonic()
            with self._lock:
                for old in [i for i, t in self._read_at.items() if t + self.personal_ttl <= now]:
                    del self._read_at[old]


_CACHE_LIMIT = int(CACHE_SIZE)


_PERSONAL: dict[type[Any], bool] = {}


def _holds_personal_data(aggregate_class: type[Any]) -> bool:
    """Whether any event of the class declares personal fields."""
    found = _PERSONAL.get(aggregate_class)
    if found is None:
        found = _PERSONAL[aggregate_class] = any(
            isinstance(member, type) and personal_data(member) is not None
            for member in vars(aggregate_class).values()
        )
    return found


_IMMUTABLE = frozenset({str, int, float, bool, bytes, Decimal, UUID, datetime, date, type(None)})


def copied(value: Any) -> Any:
    """A deep copy of an aggregate (or of a value in its state) for one command to change.

    ``copy.deepcopy`` took about a twentieth of a command's CPU: it keeps a memo of every
    object and asks each for its reduction. Aggregates hold plain containers, immutable
    values and small dataclasses, copied here directly; anything else goes to deepcopy.
    Unlike deepcopy, an object referred to twice is copied twice: no aggregate's state
    shares a mutable value between two of its attributes.
    """
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is dict:
        return {key: copied(item) for key, item in value.items()}
    if kind is list:
        return [copied(item) for item in value]
    if kind is tuple:
        return tuple(copied(item) for item in value)
    if isinstance(value, Aggregate) or (is_dataclass(value) and hasattr(value, "__dict__")):
        twin = object.__new__(kind)
        twin.__dict__.update({name: copied(item) for name, item in vars(value).items()})
        return twin
    return deepcopy(value)
