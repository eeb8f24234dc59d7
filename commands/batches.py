"""A batch of saves for group commit (commands/group_commit.py): what a save is, how a
command says what its save was decided after, and which saves of a batch fit the log
(pure: the recorder reads the versions and keys under its lock, these decide)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent

from commands.idempotency import KeyRecord


@dataclass(frozen=True)
class _Queueing:
    on_queued: Callable[[object], None]
    after: Sequence[object]


_queueing: ContextVar[_Queueing | None] = ContextVar("queueing", default=None)


@contextmanager
def when_queued(callback: Callable[[object], None], after: Sequence[object] = ()) -> Iterator[None]:
    """Call ``callback`` with a save made in the block once it is queued to be written,
    before its caller waits for the commit (commands/service.py then lets the next command
    on the same aggregates decide, on the state this save will leave). ``after``: the
    queued saves (as given to such callbacks) whose states the save was decided on: it is
    written only if they were (another process may have taken their versions meanwhile,
    and the version check alone would not see that the state differs)."""
    token = _queueing.set(_Queueing(callback, after))
    try:
        yield
    finally:
        _queueing.reset(token)


class Signal:
    """A one-shot event: set once, then every wait returns at once. A lock held from the
    start and released by ``set``: ``threading.Event`` builds a Condition and a lock for
    each one, several microseconds per save, and each of its waits another lock."""

    __slots__ = ("_is_set", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._is_set = False

    def set(self) -> None:
        # Set by one thread at a time: the writer, or the caller it handed its role to.
        if not self._is_set:
            self._is_set = True
            self._lock.release()

    def is_set(self) -> bool:
        return self._is_set

    def wait(self, timeout: float | None = None) -> bool:
        """Whether it was set (False: ``timeout`` seconds passed first)."""
        if self._is_set:
            return True
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self._lock.release()  # for the next waiter
        return True


@dataclass(eq=False)
class Save:
    """One caller's save: its events, its key, and what became of it."""

    events: Sequence[StoredEvent]
    key: KeyRecord | None
    taken: bool = False
    done: bool = False
    ids: list[int] = field(default_factory=list)
    error: BaseException | None = None
    after: list[Save] = field(default_factory=list)  # decided on their states
    writer: bool = False  # its caller writes the batches now
    woken: Signal = field(default_factory=Signal)  # done, or writer


def current_queueing() -> _Queueing | None:
    """What the save being made now was decided after, and whom to tell it is queued."""
    return _queueing.get()


def versions_free(batch: list[Save], latest: dict[Any, int]) -> list[Save]:
    """The saves each of whose aggregates goes on from the version it is at (in the
    log, or after a save before it in the batch); the others fail. A save decided on
    the state another save would have left, which failed, fails too: it would leave
    a gap."""
    accepted = []
    for save in batch:
        first: dict[Any, int] = {}
        for event in save.events:
            first.setdefault(uuid_of(event.originator_id), event.originator_version)
        moved = [i for i, version in first.items() if version != latest.get(i, 0) + 1]
        if moved:
            save.error = IntegrityError(
                f"{', '.join(map(str, moved))} is not at the version this save follows:"
                " a concurrent write got there first"
            )
            continue
        for event in save.events:
            latest[uuid_of(event.originator_id)] = event.originator_version
        accepted.append(save)
    return accepted


def followed_written(saves: list[Save]) -> list[Save]:
    """The saves every save they were decided after was written (before them in this
    batch, or earlier); the others fail. Each forgets those saves then (a chain of
    them would otherwise keep every save of a hot aggregate alive)."""
    written = []
    for save in saves:
        failed = any(before.error is not None for before in save.after)
        save.after = []
        if failed:
            save.error = IntegrityError("decided on the state of a save that was not written")
            continue
        written.append(save)
    return written


def keys_free(
    saves: list[Save], stored: dict[tuple[str, str], datetime]
) -> tuple[list[Save], list[tuple[str, str]]]:
    """The saves whose idempotency key is not live already (the others fail), and
    the expired keys they replace, to be deleted first."""
    expired: list[tuple[str, str]] = []
    accepted = []
    claimed: set[tuple[str, str]] = set()
    for save in saves:
        key = save.key
        if key is None:
            accepted.append(save)
            continue
        ident = (key.caller, key.key)
        created = stored.get(ident)
        live = created is not None and (
            key.replaces_before is None or created >= key.replaces_before
        )
        if live or ident in claimed:
            save.error = IntegrityError(f"Idempotency-Key {key.key!r} is already stored")
            continue
        if created is not None:
            expired.append(ident)
        claimed.add(ident)
        accepted.append(save)
    return accepted, expired


def all_follow(batch: list[Save], latest: dict[Any, int]) -> bool:
    """Whether every save's aggregates go on from the version they are at (in the log,
    or after the saves before it in the batch): ``versions_free`` with no failure."""
    latest = dict(latest)
    for save in batch:
        first: dict[Any, int] = {}
        for event in save.events:
            first.setdefault(uuid_of(event.originator_id), event.originator_version)
        if any(version != latest.get(i, 0) + 1 for i, version in first.items()):
            return False
        for event in save.events:
            latest[uuid_of(event.originator_id)] = event.originator_version
    return True


def uuid_of(originator_id: Any) -> Any:
    # Stored events may carry an id as a UUID or as its text; the database answers UUIDs.
    return originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
