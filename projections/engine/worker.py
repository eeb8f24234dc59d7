"""One read model's worker: feeds it from the event log, exactly once, in log order.

A worker first takes the read model's lock (see ``locks.py``), so that across all
processes one worker at a time feeds it; the others stand by and take over when the
holder dies. Holding it, the worker *catches up*: it reads the log in batches and applies
each batch in one transaction; then it *goes live* on the process's
:class:`~projections.engine.feed.LiveFeed` and still commits whatever has arrived
meanwhile as one batch.

An event a handler fails on is parked and the read model goes on (``parking.py``); a
read model whose policy is ``stop`` stops instead, with the event and the error in its
status and in the log, its position just before that event, so that it resumes from it
once the code is fixed and the worker restarted. Database outages are retried with
backoff (``eventstore/retry.py``).

A worker feeds only tables built by its own version of the read model's code; tables of
another version wait, answering queries, for the blue/green rebuild that replaces them
(``rebuild.py``), and the worker feeds the new tables as soon as they are swapped in.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from eventsourcing.persistence import Notification

from eventstore import retry
from projections.engine.base import EventFailed, ReadModel, stamp, transient
from projections.engine.collector import fewer_collections
from projections.engine.feed import LiveFeed, Source, Tap
from projections.engine.locks import LockKeeper
from projections.engine.tables import LostOwnership, Outdated

log = logging.getLogger("eventshop.projections")

POSITION_CHECK_SECONDS = 1.0
"""How often an idle live worker checks that its position was not moved under it."""
LINGER_SECONDS = 0.05
DEFER_SECONDS = 0.2
QUIET_SECONDS = 0.02
"""Under load a live worker gathers events: it writes those with rows to write at most
LINGER_SECONDS after its last write, the others within DEFER_SECONDS, and everything
once no event came for QUIET_SECONDS (``_follow``)."""


class Moved(LostOwnership):
    """The tracked position moved under an idle worker: a rebuild's swap, or a reset."""


class _Reported(Exception):
    """A failure the worker has stopped on, reported while it held the lock."""


class State(StrEnum):
    STARTING = "starting"
    STANDBY = "standby"  # another worker holds the lock
    CATCHING_UP = "catching_up"
    LIVE = "live"
    RETRYING = "retrying"  # the database failed; trying again
    OUTDATED = "outdated"  # the live tables are another version's; waiting for a rebuild
    STOPPED = "stopped"  # by stop(), or on a failing event (then last_error says which)


class Worker:
    """Feeds one read model: lock, catch up, go live; stops only on stop() or a failing event."""

    def __init__(
        self,
        model: ReadModel,
        source: Source,
        feed: LiveFeed,
        locks: LockKeeper,
        *,
        batch_size: int,
        worker_id: str,
        standby_interval: float,
        publish: Callable[[Worker], None],
    ) -> None:
        self.model = model
        self.name = model.name
        self.source = source
        self.feed = feed
        self.locks = locks
        self.batch_size = batch_size
        self.worker_id = worker_id
        self.standby_interval = standby_interval
        self._publish = publish
        self.state = State.STOPPED
        self.position = 0
        """The position applied, as far as this process knows (while it holds the lock)."""
        self.owned = False
        self.last_error: dict[str, Any] | None = None
        self._stopping = threading.Event()
        self._progress = threading.Condition()
        self._rate: deque[tuple[float, int]] = deque()
        self._thread: threading.Thread | None = None
        self._outdated: str | None = None
        self._nudged = threading.Event()
        self._tap: Tap | None = None
        self._awaited = 0  # the furthest position a reader waits for (``wait``)
        self._hurry = threading.Event()  # set by a reader who waits, and by stop()

    # --- control -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        with self._progress:
            self.last_error = None
            self.state = State.STARTING
        self._thread = threading.Thread(
            target=self._run, name=f"projection-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._nudged.set()
        self._hurry.set()
        tap = self._tap
        if tap is not None:
            tap.wake()

    def nudge(self) -> None:
        """Try again now: a rebuild has just swapped in new tables."""
        self._nudged.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def events_per_second(self) -> float:
        """Events applied per second, over the last five seconds."""
        horizon = time.monotonic() - 5.0
        with self._progress:
            while self._rate and self._rate[0][0] < horizon:
                self._rate.popleft()
            return sum(n for _, n in self._rate) / 5.0

    def expect(self, position: int) -> None:
        """A reader waits for ``position``: the live loop, which may be holding noted
        batches back, looks now (without blocking the caller)."""
        with self._progress:
            if position > self._awaited:
                self._awaited = position
                tap = self._tap
                if tap is not None and position > self.position:
                    self._hurry.set()
                    tap.wake()

    def wait(self, position: int, deadline: float) -> bool | None:
        """Block until this process has applied ``position``: True; False at the deadline;
        None when this process does not feed the read model (then ask the database)."""
        self.expect(position)
        with self._progress:
            while self.position < position:
                if not self.owned:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.feed.wake()
                self._progress.wait(min(remaining, 0.05))
            return True

    # --- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        rounds = retry.on_transient(
            f"projection {self.name}",
            first=0.5,
            cap=retry.RESUME_WITHIN,
            stop=self._stopping,
            retry_if=transient,
            before_retry=lambda error: self._set_state(State.RETRYING),
            logger=log,
        )
        try:
            while not self._stopping.is_set():
                try:
                    rounds(self._round)
                except (retry.Stopped, _Reported):
                    return
                except Exception as error:
                    self._fail(error)
                    return
        finally:
            with self._progress:
                self.state = State.STOPPED
                self._progress.notify_all()

    def _round(self) -> None:
        """Take the lock and feed until stopped or the lock is lost; stand by meanwhile.
        Raises what failed (a transient error is tried again, see ``_run``)."""
        if not self.locks.try_acquire(self.name):
            self._set_state(State.STANDBY)
            self._stopping.wait(self.standby_interval)
            return
        # Every outcome is published while the lock is still held, so that it cannot
        # overwrite the state of a worker that takes over.
        self.owned = True
        pause = False
        try:
            self._feed()
            self._set_state(State.STOPPED, publish=True)
        except Outdated as outdated:
            if str(outdated) != self._outdated:
                log.warning("projection %s not fed: %s", self.name, outdated)
                self._outdated = str(outdated)
            self._set_state(State.OUTDATED, publish=True)
            pause = True
        except Moved as moved:
            log.info("projection %s: %s", self.name, moved)
        except LostOwnership as lost:
            log.warning("projection %s: %s; standing by", self.name, lost)
            self._set_state(State.STANDBY)
        except Exception as error:
            if transient(error):
                self._set_state(State.RETRYING, publish=True)
                raise
            self._fail(error)
            raise _Reported from error
        finally:
            self.owned = False
            self.locks.release(self.name)
        if pause:
            # Not ours to feed; a worker of the tables' version may take it meanwhile.
            self._nudged.wait(self.standby_interval)
            self._nudged.clear()

    def _feed(self) -> None:
        stored = self.model.view.stored_version(self.name)
        if stored is not None and stored != self.model.version:
            raise Outdated(self.name, stored, self.model.version)
        self._outdated = None
        position = self.model.view.position(self.source.application_name)
        with self._progress:
            self.position = position
            self._progress.notify_all()
        while not self._stopping.is_set():
            self._set_state(State.CATCHING_UP, publish=True)
            position = self._catch_up(position)
            tap, mark = self.feed.attach()
            self._tap = tap
            try:
                # The feed has everything after ``mark``; the log has the rest.
                position = self._catch_up(position, until=mark)
                self._set_state(State.LIVE, publish=True)
                position = self._follow(tap, position)
            finally:
                self._tap = None
                self.feed.detach(tap)

    def _catch_up(self, position: int, until: int | None = None) -> int:
        with fewer_collections():
            while not self._stopping.is_set() and (until is None or position < until):
                notifications = self.source.read(position, self.batch_size, stop=until)
                if notifications:
                    position = self._apply(notifications, position)
                self._check_lock()
                if len(notifications) < self.batch_size:
                    break
        return position

    def _follow(self, tap: Tap, position: int) -> int:
        """Apply what the feed brings, as batches; return when detached or stopping.

        Under load, what arrives is gathered and written in fewer, larger transactions:
        events with rows to write at most ``LINGER_SECONDS`` after the last write, events
        this read model has no rows for (most of the log, for most read models) within
        ``DEFER_SECONDS``; everything at once when the feed is quiet for
        ``QUIET_SECONDS``, when a reader waits for a position (``wait``), or when a
        batch is full. Six read models each committing every few events of the log took
        about a tenth of the shop's CPU. A crash loses nothing: what was not yet written
        is read again.
        """
        checked = time.monotonic()
        pending: list[Notification] = []
        rows = False  # whether any pending event has rows to write
        while not self._stopping.is_set():
            batch = self._drain(tap, position, QUIET_SECONDS if pending else 0.25)
            now = time.monotonic()
            if batch:
                pending.extend(batch)
                rows = rows or self._handles(batch)
            if pending and (
                not batch
                or self._awaited > position
                or len(pending) >= self.batch_size
                or now - checked >= (LINGER_SECONDS if rows else DEFER_SECONDS)
            ):
                position = self._apply(pending, position)
                pending, rows, checked = [], False, now
            elif pending:
                # Let more arrive before looking again (not woken by each event: six
                # threads woken per event cost as much as their transactions did).
                due = checked + (LINGER_SECONDS if rows else DEFER_SECONDS)
                self._hurry.wait(min(QUIET_SECONDS, max(0.0, due - now)))
                self._hurry.clear()
            elif tap.detached.is_set():
                return position
            elif self._nudged.is_set() or now - checked > POSITION_CHECK_SECONDS:
                self._nudged.clear()
                self._check_position(position)
                checked = now
            self._check_lock()
        if pending:  # stopping: leave the database where this process is
            position = self._apply(pending, position)
        return position

    def _handles(self, batch: Sequence[Notification]) -> bool:
        handlers = self.model.handlers
        return any(notification.topic in handlers for notification in batch)

    def _check_position(self, position: int) -> None:
        """Idle, a batch's fence never runs: see whether a rebuild's swap or a reset has
        moved the tracked position meanwhile, and if so start again from it."""
        tracked = self.model.view.position(self.source.application_name)
        if tracked != position:
            raise Moved(
                f"{self.name} was swapped or reset to position {tracked}; resuming from there"
            )

    def _drain(self, tap: Tap, position: int, wait: float) -> list[Notification]:
        batch: list[Notification] = []
        with contextlib.suppress(queue.Empty):
            # A wake (None) ends the batch early: the caller looks at why.
            notification = tap.queue.get(timeout=wait)
            while notification is not None:
                batch.append(notification)
                if len(batch) == self.batch_size:
                    break
                notification = tap.queue.get_nowait()
        return [n for n in batch if n.id > position]

    def _apply(self, notifications: Sequence[Notification], position: int) -> int:
        """Apply and track a run of the log after ``position`` (the tracked one), in one
        transaction (or, if the database refuses its rows, in parts: ``apply_split``)."""
        new = self.model.apply_split(
            notifications, self.source.mapper, self.source.application_name, position
        )
        with self._progress:
            self.position = new
            self._rate.append((time.monotonic(), len(notifications)))
            self._progress.notify_all()
        return new

    def _check_lock(self) -> None:
        if not self.locks.holds(self.name):
            raise LostOwnership(f"the lock of {self.name} was lost")

    def _fail(self, error: BaseException) -> None:
        details = (
            error.as_dict()
            if isinstance(error, EventFailed)
            else {"position": None, "error": f"{type(error).__name__}: {error}"}
        )
        log.error(
            "projection %s STOPPED on a failing event; it resumes from that event after a"
            " fix and a restart: %s",
            self.name,
            error,
            exc_info=error,
        )
        failure = {**details, "at": stamp(datetime.now(UTC)), "worker": self.worker_id}
        self._set_state(State.STOPPED, publish=True, error=failure)

    def _set_state(
        self, state: State, *, publish: bool = False, error: dict[str, Any] | None = None
    ) -> None:
        with self._progress:
            self.state = state
            if error is not None:
                self.last_error = error
        if publish:
            self._publish(self)

    def snapshot(self) -> tuple[State, dict[str, Any] | None]:
        """The state and the last error, as one consistent pair."""
        with self._progress:
            return self.state, self.last_error
