"""Blue/green rebuilds: a new copy of a read model, built from position 0 while the live
copy keeps answering queries and following the log, then swapped in in ONE transaction.

The protocol
------------
1. **One rebuild per read model.** A rebuild holds the read model's *rebuild lock* (a
   PostgreSQL advisory lock, or a flock next to the SQLite file) from start to end, so
   two processes never rebuild one read model at once; a second asker is refused
   (:class:`AlreadyRebuilding`). It is not the *feeding* lock: whoever feeds the live
   copy goes on doing so meanwhile.
2. **The copy.** What an interrupted rebuild left (``next_`` tables, their tracking
   table and status row) is dropped; the copy's tables are created under the ``next_``
   prefix, without their secondary indexes (a bulk load is faster without them), with a
   tracking position of its own at 0. The copy is fed from the log in large batches,
   each in one transaction fenced on the copy's tracking row, until a read finds no
   more: it has caught up with the head. A large copy's batches are decoded and handled
   by worker processes (``parallel.py``), several at once; they are still read, and
   written, one after the other in log order. Progress goes to ``projection_versions.rebuild``
   every second, for every process's ``status()``.
3. **Indexes.** On PostgreSQL the copy's indexes are built now, before the swap, which
   then only renames them (SQLite cannot rename an index: it makes them in the swap).
4. **The swap**, one transaction:

   a. lock the live tracking row (``SELECT ... FOR UPDATE``; SQLite: the transaction
      holds the file's write lock). Every feeder's batch starts by locking that row (its
      *fence*), so the live feeder, in whatever process, has either committed its batch
      or waits at the fence of the next: nothing is written to the live tables meanwhile;
   b. the copy applies what the live copy applied beyond it; a live copy a little behind
      the copy is brought level too (same code version only), so that both hold the same
      position;
   c. each table is compared: row counts and a checksum of the rows, live against copy.
      Differences are reported in the outcome, never fatal: changed code is what a
      rebuild is for;
   d. the live tables are dropped and the copy's renamed to their names (PostgreSQL:
      under ACCESS EXCLUSIVE locks taken in sorted order, the order in which every query
      takes its ACCESS SHARE locks, so queries and swap cannot deadlock);
   e. the live tracking position becomes the copy's, and its count of applied events;
      the code's version and the outcome are recorded; the copy's tracking table and
      status row are dropped.

   A query either ran before the commit (old tables, whole) or waits for its table
   locks and then sees the new tables whole (PostgreSQL takes its snapshot after the
   locks; a SQLite reader has one snapshot of the file).
5. **The live feeder resumes by itself.** Its fence finds the position moved (the copy
   was ahead): it stands down and resumes from the tracked position, in the new tables.
   Or the position is what it expected: it goes on, in the new tables, since its
   statements name tables, not copies. A feeder whose code is not the version the swap
   recorded stops feeding (``Outdated``): old code never writes into new tables.

A rebuild killed at any moment before that commit has only touched its copy, which the
next rebuild drops; the live copy was never touched and never stopped serving.

Automatic rebuilds: ``ReadSide.start()`` runs :meth:`Rebuilder.keep_current` for each
read model whose live tables an older version built: it rebuilds it, or waits while
another process does, until the tables are the code's version.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

from domain.errors import RuleBroken
from eventstore import retry
from eventstore.database import is_transient
from projections.engine.base import Prepared, ReadModel, stamp
from projections.engine.collector import fewer_collections
from projections.engine.feed import Source
from projections.engine.locks import LockKeeper
from projections.engine.parallel import Preparers
from projections.engine.tables import LostOwnership, ReadModelStore

log = logging.getLogger("eventshop.projections")

COPY_PREFIX = "next_"
"""Prefixed to the live tables' prefix, it names a rebuild's copy."""
REBUILD_BATCHES = {"postgres": 2000, "sqlite": 500}
"""Events per transaction while the copy catches up. On SQLite each batch holds the whole
file's write lock, which the shop's commands wait for: smaller batches there."""
PAUSES = {"postgres": 0.0, "sqlite": 0.01}
"""Seconds between two batches of a copy. SQLite's writers are not served in turn: a
command retrying for the lock must find it free now and then, not taken back at once."""
PROCESSES = {"postgres": os.cpu_count() or 1, "sqlite": 1}
"""Worker processes per rebuild. SQLite: none, its batches are small and paced anyway."""
PARALLEL_FROM = 50_000
"""Log events a copy must have to go before worker processes are worth starting them."""
SCAN_WINDOWS = 4
"""A read by topic scans at most this many batches' worth of log positions at first, then
about twice what the last full batch spanned. Read to the head, a batch could make the
database scan the whole rest of the log every time (it does when the log's statistics
are stale: 1.4 s instead of 6 ms per read on a 1M log)."""
LEVEL_LIVE_UP_TO = 10_000
"""In the swap, a live copy at most this far behind the copy is brought level first."""
HEARTBEAT_SECONDS = 1.0
STALE_AFTER_SECONDS = 15.0
"""A published rebuild this long without news was interrupted (its process died)."""

ProgressCallback = Callable[["Progress"], None]


class AlreadyRebuilding(RuleBroken):
    """The read model is being rebuilt already, by this process or another (409)."""

    title = "Rebuild already running"


class RebuildStopped(Exception):
    """The process is shutting down; the rebuild is abandoned (the live copy untouched)."""


class RebuildFailed(Exception):
    """A rebuild failed for a reason worth another try (the database's)."""


@dataclass
class Progress:
    """How far a rebuild (or a reset's catch-up) has got."""

    name: str
    worker: str
    started_at: str
    phase: str = "copying"
    """``copying``, ``indexing``, ``swapping``, then ``done`` or ``failed``."""
    position: int = 0
    target: int = 0
    """The head of the log, last seen."""
    events: int = 0
    """Events of the log read into the copy so far."""
    events_per_second: float = 0.0
    _window: deque[tuple[float, int]] = field(default_factory=deque, repr=False)

    @property
    def eta_seconds(self) -> float | None:
        if self.position >= self.target:
            return 0.0
        if not self.events_per_second:
            return None
        return round((self.target - self.position) / self.events_per_second, 1)

    def advance(self, position: int, events: int) -> None:
        now = time.monotonic()
        self.position = position
        self.events += events
        self._window.append((now, events))
        while self._window and self._window[0][0] < now - 5.0:
            self._window.popleft()
        span = max(now - self._window[0][0], 1.0) if self._window else 1.0
        self.events_per_second = round(sum(n for _, n in self._window) / span, 1)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON (read from other threads while the rebuild goes on)."""
        answer = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        return {**answer, "eta_seconds": self.eta_seconds}


@dataclass
class Job:
    """One rebuild (or reset) of one read model in this process."""

    name: str
    progress: Progress
    done: threading.Event = field(default_factory=threading.Event)
    outcome: dict[str, Any] | None = None
    thread: threading.Thread | None = None
    published: float = 0.0
    """When its progress was last written to the database (monotonic clock)."""
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent copying, indexing and swapping."""


class Rebuilder:
    """Runs blue/green rebuilds (and resets) of a read side's read models."""

    def __init__(
        self,
        models: Mapping[str, ReadModel],
        source: Source,
        make_view: Callable[[str, str], ReadModelStore],
        locks: LockKeeper,
        *,
        feeding_locks: LockKeeper,
        worker_id: str,
        batch_size: int | None = None,
        processes: int | None = None,
        on_swapped: Callable[[str], None] = lambda name: None,
    ) -> None:
        self.models = models
        self.source = source
        self._make_view = make_view
        self.locks = locks
        self.feeding_locks = feeding_locks
        self.worker_id = worker_id
        dialect = next(iter(models.values())).view.dialect
        self.batch_size = batch_size or REBUILD_BATCHES[dialect]
        self.processes = PROCESSES[dialect] if processes is None else processes
        """Worker processes that decode and handle a large copy's batches (``parallel.py``);
        below 2, the copy is prepared in the rebuild's own thread."""
        self.parallel_from = PARALLEL_FROM
        self.pause = PAUSES[dialect]
        self._on_swapped = on_swapped
        self._jobs: dict[str, Job] = {}
        self._mutex = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- control -------------------------------------------------------------------------

    def start(self, name: str) -> None:
        """Start rebuilding ``name`` in a thread of this process and return at once.

        KeyError for an unknown name; :class:`AlreadyRebuilding` when it is being
        rebuilt already, here or in another process."""
        job = self._claim(name)
        job.thread = self._spawn(f"rebuild-{name}", lambda: self._run_job(job, None, reraise=False))

    def run(self, name: str, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Rebuild ``name`` in this thread; returns the outcome, with the comparison.

        ``on_progress`` is called after every batch (and at each phase)."""
        job = self._claim(name)
        outcome = self._run_job(job, on_progress, reraise=True)
        assert outcome is not None
        return outcome

    def keep_current(self, name: str, retry_seconds: float = 5.0) -> None:
        """In a thread: rebuild ``name`` until its live tables are the code's version,
        or wait while another process does it; retry after database outages."""
        attempts = retry.on_transient(
            f"projection {name}: cannot rebuild",
            first=retry_seconds,
            cap=60.0,
            stop=self._stopping,
            retry_if=lambda error: isinstance(error, Exception),  # a claim, as a rebuild
            logger=log,
        )

        def loop() -> None:
            with contextlib.suppress(retry.Stopped):
                while not attempts(self._make_current, name):
                    if self._stopping.wait(retry_seconds):  # another process is on it
                        return

        self._spawn(f"rebuild-{name}-version", loop)

    def _make_current(self, name: str) -> bool:
        """Rebuild ``name`` if its live tables are older than the code: True once they are
        not (or its rebuild failed for good), False while another process rebuilds it.
        Raises what should be tried again: a failure to claim it, a transient failure."""
        model = self.models[name]
        stored = model.view.stored_version(name)
        if stored is None or stored >= model.version:
            return True
        try:
            job = self._claim(name)
        except AlreadyRebuilding:
            return False
        # Another process may have finished just before we got the lock.
        if model.view.stored_version(name) == model.version:
            self._finish(job, None)
            return True
        log.info(
            "projection %s: tables at version %s, code at %s: rebuilding",
            name,
            stored,
            model.version,
        )
        self._run_job(job, None, reraise=False)
        outcome = job.outcome or {}
        if outcome.get("error") is not None and outcome.get("transient"):
            raise RebuildFailed(outcome["error"])
        return True

    def progress(self, name: str) -> Progress | None:
        """The progress of a rebuild of ``name`` running in this process, if any."""
        with self._mutex:
            job = self._jobs.get(name)
        return None if job is None or job.done.is_set() else job.progress

    def wait(self, name: str, timeout: float = 60.0) -> dict[str, Any] | None:
        """Wait for this process's rebuild of ``name`` to end: its outcome (None if
        none ran here, or on timeout)."""
        with self._mutex:
            job = self._jobs.get(name)
        if job is None or not job.done.wait(timeout):
            return None
        return job.outcome

    def stop(self, timeout: float = 30.0) -> None:
        """Abandon running rebuilds (their live copies stay as they are) and free locks."""
        self._stopping.set()
        with self._mutex:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        self.locks.close()

    # --- the rebuild -----------------------------------------------------------------------

    def _claim(self, name: str) -> Job:
        model = self.models[name]  # KeyError: no such read model
        with self._mutex:
            running = self._jobs.get(name)
            if running is not None and not running.done.is_set():
                raise AlreadyRebuilding(f"the {name} read model is being rebuilt already")
            if not self.locks.try_acquire(name):
                raise AlreadyRebuilding(self._elsewhere(model))
            job = Job(name, Progress(name, self.worker_id, stamp(datetime.now(UTC))))
            self._jobs[name] = job
        return job

    def _elsewhere(self, model: ReadModel) -> str:
        message = f"the {model.name} read model is being rebuilt already by another process"
        with contextlib.suppress(Exception):
            running = model.view.read_versions().get(model.name, {}).get("rebuild")
            if running:
                message += f" ({running['worker']}, since {running['started_at']})"
        return message

    def _run_job(
        self, job: Job, on_progress: ProgressCallback | None, *, reraise: bool
    ) -> dict[str, Any] | None:
        live = self.models[job.name]
        started = time.monotonic()
        try:
            copy = self._fresh_copy(live)
            self._publish(job, on_progress, force=True)
            self._follow_log(job, copy, 0, on_progress, by_topic=True)
            job.phases["copy"] = round(time.monotonic() - started, 2)
            self._build_indexes(job, copy, on_progress)
            job.phases["indexes"] = max(
                0.0, round(time.monotonic() - started - job.phases["copy"], 2)
            )
            outcome = self._swap_with_retries(job, live, copy, started, on_progress)
        except BaseException as error:
            outcome = self._failed(job, live, error, started)
            log.error("projection %s: rebuild failed: %s", job.name, error, exc_info=error)
            self._finish(job, outcome)
            if reraise:
                raise
            return outcome
        log.info(
            "projection %s rebuilt: %s events at %s events/s; copies %s",
            job.name,
            outcome["events"],
            outcome["events_per_second"],
            "equal" if outcome["comparison"]["equal"] else "differ",
        )
        self._finish(job, outcome)
        self._on_swapped(job.name)
        return outcome

    def _finish(self, job: Job, outcome: dict[str, Any] | None) -> None:
        job.outcome = outcome
        with contextlib.suppress(Exception):
            self.locks.release(job.name)
        job.done.set()

    def _copy_view(self, live: ReadModel) -> ReadModelStore:
        prefix = live.view.table_prefix + COPY_PREFIX
        view = self._make_view(prefix, f"{prefix}{live.name}_tracking")
        view.versioned = False
        return view

    def _fresh_copy(self, live: ReadModel) -> ReadModel:
        """An empty copy of ``live``'s tables, without secondary indexes, at position 0."""
        view = self._copy_view(live)
        copy = type(live)(view, create=False)
        copy.fence_version = None
        view.create_support_tables()
        with view.writing() as cursor:
            view.serialise_ddl(cursor)
            for table in live.tables:  # leftovers of an interrupted rebuild
                view.drop_table(cursor, view.table_prefix + table)
            view.forget(cursor, live.name)
        view.create_table()
        copy.create(indexes=False)
        view.start_tracking(self.source.application_name)
        return copy

    def _follow_log(
        self,
        job: Job,
        model: ReadModel,
        position: int,
        on_progress: ProgressCallback | None,
        *,
        by_topic: bool,
    ) -> int:
        """Feed ``model`` from the log after ``position`` until a read finds no more.

        Three batches are in flight at once: the next is read (a thread), this one is
        decoded and handled (here), the last one is written (another thread); the
        database's work on the first and the last overlaps Python's on the middle one.

        ``by_topic``: read only the events the model handles (a copy, whose count of
        events is set from the log at the swap); a batch then covers the log up to where
        its read stopped (the head read before it, or a window short of it), and the
        tracked position says so."""
        app, mapper = self.source.application_name, self.source.mapper
        job.progress.target = self.source.head()
        preparers = self._preparers(model, job.progress.target - position if by_topic else 0)
        topics = model.topics if by_topic else None
        reader = _Reader(self.source, self.batch_size, topics, rows=preparers is not None)
        checked = time.monotonic()
        # Batches handed to workers and not yet written: enough to keep every one busy.
        depth = 2 * preparers.processes if preparers is not None else 0
        pending: deque[tuple[Future[Prepared], int]] = deque()
        with (
            fewer_collections(),
            ThreadPoolExecutor(2, thread_name_prefix=f"rebuild-{model.name}") as pool,
            contextlib.closing(preparers) if preparers else contextlib.nullcontext(),
        ):
            reading = pool.submit(reader.read, position)
            writing: Future[int] | None = None
            while True:
                self._check(job)
                batch, read_from, through, last = reading.result()
                if not last:
                    reading = pool.submit(reader.read, through)
                if through > read_from:
                    if preparers is not None:
                        pending.append((preparers.submit(batch, through), read_from))
                    else:
                        pending.append((_done(model.prepare(batch, mapper, through)), read_from))
                while pending and (last or len(pending) > depth):
                    preparing, start = pending.popleft()
                    prepared = preparing.result()
                    if writing is not None:
                        position = self._written(job, writing, position, on_progress)
                    writing = pool.submit(model.commit, prepared, app, start)
                if time.monotonic() - checked > HEARTBEAT_SECONDS:
                    job.progress.target = max(self.source.head(), position)
                    checked = time.monotonic()
                if last:
                    break
            if writing is not None:
                position = self._written(job, writing, position, on_progress)
        job.progress.target = max(job.progress.target, position)
        return position

    def _preparers(self, model: ReadModel, events: int) -> Preparers | None:
        """Worker processes for a copy with this many log events to go, if worth it."""
        if (
            self.processes < 2
            or events < self.parallel_from
            or not Preparers.can_send(model, self.source.mapper)
        ):
            return None
        return Preparers(model, self.source.mapper, self.processes)

    def _written(
        self, job: Job, writing: Future[int], position: int, on_progress: ProgressCallback | None
    ) -> int:
        new = writing.result()
        job.progress.advance(new, new - position)
        self._publish(job, on_progress)
        if self.pause:
            self._stopping.wait(self.pause)
        return new

    def _build_indexes(
        self, job: Job, copy: ReadModel, on_progress: ProgressCallback | None
    ) -> None:
        if not copy.view.renames_indexes:
            return  # SQLite: made under the live names, in the swap
        job.progress.phase = "indexing"
        self._publish(job, on_progress, force=True)
        with copy.view.writing() as cursor:
            for statement in copy.index_ddl():
                cursor.execute(statement)

    def _swap_with_retries(
        self,
        job: Job,
        live: ReadModel,
        copy: ReadModel,
        started: float,
        on_progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        job.progress.phase = "swapping"
        self._publish(job, on_progress, force=True)
        # A swap that failed rolled back whole: the copy is intact, it can be tried again.
        attempts = retry.on_transient(
            f"projection {job.name}: swap failed", first=0.2, cap=1.0, attempts=5, logger=log
        )
        outcome = attempts(self._checked_swap, job, live, copy, started)
        job.progress.phase = "done"
        job.progress.position = outcome["position"]
        self._publish(job, on_progress, force=True, database=False)
        return outcome

    def _checked_swap(
        self, job: Job, live: ReadModel, copy: ReadModel, started: float
    ) -> dict[str, Any]:
        self._check(job)
        return self._swap(job, live, copy, started)

    def _swap(self, job: Job, live: ReadModel, copy: ReadModel, started: float) -> dict[str, Any]:
        """Steps 4a-4e of the protocol, in one transaction; returns the outcome."""
        app, name = self.source.application_name, live.name
        view, copy_view = live.view, copy.view
        live_prefix, copy_prefix = view.table_prefix, copy_view.table_prefix
        # The copy read only its own topics: its count of events comes from the log
        # (counted before the transaction, which should be short).
        events = self.source.count(job.progress.position)
        with view.writing() as cursor:
            live_at = view.lock_position(cursor, app)  # the live feeder waits from here on
            copy_view.fence(cursor, app, job.progress.position)
            copy_at, leveled = self._level(cursor, copy, job.progress.position, live_at)
            events += leveled
            stored = view.read_versions_in(cursor).get(name)
            stored_version = live.version if stored is None else int(stored["version"])
            old_tables = list(dict.fromkeys([*(stored or {}).get("tables", []), *live.tables]))
            if stored_version == live.version and live_at < copy_at <= live_at + LEVEL_LIVE_UP_TO:
                live_at, _ = self._level(cursor, live, live_at, copy_at)
            comparison = self._compare(cursor, live, copy, old_tables, live_at, copy_at)

            existing = [t for t in old_tables if view.table_exists(cursor, live_prefix + t)]
            view.lock_exclusively(cursor, [live_prefix + t for t in existing])
            for table in existing:
                view.drop_table(cursor, live_prefix + table)
            for table in live.tables:
                copy_view.rename_table(cursor, copy_prefix + table, live_prefix + table)
                if view.renames_indexes:
                    view.rename_indexes(cursor, live_prefix + table, copy_prefix, live_prefix)
            if not view.renames_indexes:
                for statement in live.index_ddl():
                    cursor.execute(statement)

            view.set_position(cursor, app, copy_at)
            view.set_events_applied(cursor, name, events)
            seconds = time.monotonic() - started
            swap = seconds - job.phases.get("copy", 0.0) - job.phases.get("indexes", 0.0)
            outcome = {
                "started_at": job.progress.started_at,
                "finished_at": stamp(datetime.now(UTC)),
                "worker": self.worker_id,
                "version": live.version,
                "previous_version": stored_version,
                "position": copy_at,
                "events": events,
                "seconds": round(seconds, 2),
                "events_per_second": round(job.progress.events / max(seconds, 1e-6)),
                "phases": {**job.phases, "swap": round(swap, 2)},
                "comparison": comparison,
                "error": None,
            }
            view.record_version(cursor, name, live.version, live.tables, last_rebuild=outcome)
            copy_view.forget(cursor, name)
        return outcome

    def _level(self, cursor: Any, model: ReadModel, position: int, target: int) -> tuple[int, int]:
        """Apply the log after ``position`` up to ``target`` to ``model``, in the caller's
        transaction (which holds the model's tracking row): (position, events applied)."""
        app, events = self.source.application_name, 0
        while position < target:
            batch = self.source.read(position, self.batch_size, stop=target)
            if not batch:
                break
            position = model.apply_in(cursor, batch, self.source.mapper, app)
            events += len(batch)
        return position, events

    def _compare(
        self,
        cursor: Any,
        live: ReadModel,
        copy: ReadModel,
        old_tables: Sequence[str],
        live_at: int,
        copy_at: int,
    ) -> dict[str, Any]:
        """Row counts and checksums of each table, live copy against new copy."""
        view, copy_view = live.view, copy.view
        tables: dict[str, dict[str, Any]] = {}
        for table in dict.fromkeys([*old_tables, *live.tables]):
            old = new = None
            if table in old_tables and view.table_exists(cursor, view.table_prefix + table):
                old = view.digest(cursor, view.table_prefix + table)
            if table in live.tables:
                new = copy_view.digest(cursor, copy_view.table_prefix + table)
            tables[table] = {
                "live_rows": None if old is None else old[0],
                "new_rows": None if new is None else new[0],
                "live_checksum": None if old is None else old[1],
                "new_checksum": None if new is None else new[1],
                "equal": old == new,
            }
        differences = [table for table, found in tables.items() if not found["equal"]]
        return {
            "equal": not differences and live_at == copy_at,
            "live_position": live_at,
            "new_position": copy_at,
            "differences": differences,
            "tables": tables,
        }

    def _failed(
        self, job: Job, live: ReadModel, error: BaseException, started: float
    ) -> dict[str, Any]:
        cause = getattr(error, "error", error)  # an EventFailed's own error
        outcome = {
            "started_at": job.progress.started_at,
            "finished_at": stamp(datetime.now(UTC)),
            "worker": self.worker_id,
            "version": live.version,
            "position": job.progress.position,
            "events": job.progress.events,
            "seconds": round(time.monotonic() - started, 2),
            "comparison": None,
            "error": f"{type(error).__name__}: {error}",
            "transient": is_transient(cause) or isinstance(error, RebuildStopped),
        }
        job.progress.phase = "failed"
        with contextlib.suppress(Exception):
            live.view.write_rebuild(live.name, None, last_rebuild=outcome)
        if self.locks.holds(job.name):  # else the copy may be another rebuild's by now
            with contextlib.suppress(Exception):
                self._drop_copy(live)
        return outcome

    def _drop_copy(self, live: ReadModel) -> None:
        view = self._copy_view(live)
        with view.writing() as cursor:
            for table in live.tables:
                view.drop_table(cursor, view.table_prefix + table)
            view.forget(cursor, live.name)

    # --- reset -------------------------------------------------------------------------------

    def reset(
        self, name: str, on_progress: ProgressCallback | None = None, *, feed_here: bool = True
    ) -> None:
        """Empty the live tables of ``name`` and feed them again from position 0.

        Unlike a rebuild, the read model answers from empty, then partial, tables until
        it has caught up. Blocks until it has: feeding it here (if ``feed_here``) when no
        other process feeds it, else watching whoever does."""
        job = self._claim(name)
        live = self.models[name]
        view, app = live.view, self.source.application_name
        try:
            with view.writing() as cursor:
                view.lock_position(cursor, app)
                stored = view.read_versions_in(cursor).get(name)
                tables = list(dict.fromkeys([*(stored or {}).get("tables", []), *live.tables]))
                existing = [t for t in tables if view.table_exists(cursor, view.table_prefix + t)]
                view.lock_exclusively(cursor, [view.table_prefix + t for t in existing])
                for table in existing:
                    view.drop_table(cursor, view.table_prefix + table)
                for statement in live.ddl:
                    cursor.execute(live.sql(statement))
                view.set_position(cursor, app, 0)
                view.set_events_applied(cursor, name, 0)
                outcome = {
                    "reset": True,
                    "finished_at": stamp(datetime.now(UTC)),
                    "worker": self.worker_id,
                    "version": live.version,
                    "error": None,
                }
                view.record_version(cursor, name, live.version, live.tables, last_rebuild=outcome)
            self._on_swapped(name)
            self._refill(job, live, on_progress, feed_here)
            job.progress.phase = "done"
            self._publish(job, on_progress, force=True, database=False)
        finally:
            with contextlib.suppress(Exception):
                view.write_rebuild(name, None)  # no progress to show any more
            self._finish(job, job.outcome)

    def _refill(
        self, job: Job, live: ReadModel, on_progress: ProgressCallback | None, feed_here: bool
    ) -> None:
        job.progress.target = self.source.head()
        self._publish(job, on_progress, force=True)
        if feed_here and self.feeding_locks.try_acquire(live.name):
            try:
                self._follow_log(job, live, 0, on_progress, by_topic=False)
            finally:
                self.feeding_locks.release(live.name)
            return
        # Another worker feeds it: watch it catch up.
        app = self.source.application_name
        job.progress.target = self.source.head()
        last, still = -1, time.monotonic()
        while True:
            self._check(job)
            position = live.view.position(app)
            if position != last:
                job.progress.advance(position, max(position - max(last, 0), 0))
                last, still = position, time.monotonic()
            elif time.monotonic() - still > 60:
                raise TimeoutError(f"{live.name} has not moved from {position} for a minute")
            self._publish(job, on_progress)
            if position >= job.progress.target:
                return
            time.sleep(0.2)

    # --- plumbing ----------------------------------------------------------------------------

    def _check(self, job: Job) -> None:
        if self._stopping.is_set():
            raise RebuildStopped("the process is stopping")
        if not self.locks.holds(job.name):
            raise LostOwnership(f"the rebuild lock of {job.name} was lost")

    def _publish(
        self,
        job: Job,
        on_progress: ProgressCallback | None,
        *,
        force: bool = False,
        database: bool = True,
    ) -> None:
        progress = job.progress
        if on_progress is not None:
            on_progress(progress)
        now = time.monotonic()
        if not database or (not force and now - job.published < HEARTBEAT_SECONDS):
            return
        job.published = now
        try:
            self.models[job.name].view.write_rebuild(
                job.name, {**progress.as_dict(), "heartbeat_at": stamp(datetime.now(UTC))}
            )
        except Exception as error:  # progress is news, not state: the rebuild goes on
            log.debug("could not publish the progress of %s: %s", job.name, error)

    def _spawn(self, name: str, target: Callable[[], Any]) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._mutex:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread


class _Reader:
    """Reads a copy's batches from the log, one after the other (see ``_follow_log``):
    as Notifications, or with ``rows`` as plain tuples (``Source.read_rows``)."""

    def __init__(
        self, source: Source, batch_size: int, topics: Sequence[str] | None, *, rows: bool = False
    ) -> None:
        self.source = source
        self.batch_size = batch_size
        self.topics = topics
        self.window = batch_size * SCAN_WINDOWS
        self._read: Callable[..., Sequence[Any]] = source.read_rows if rows else source.read
        self._position: Callable[[Any], int] = itemgetter(0) if rows else attrgetter("id")

    def read(self, after: int) -> tuple[Sequence[Any], int, int, bool]:
        """``(batch, after, through, last)``: the events after ``after``; the position the
        batch takes the copy to; whether it reached the head (no more to read now)."""
        if self.topics is None:
            batch = self._read(after, self.batch_size)
            full = len(batch) == self.batch_size
            return batch, after, self._position(batch[-1]) if batch else after, not full
        head = self.source.head()
        stop = min(head, after + self.window)
        batch = self._read(after, self.batch_size, stop=stop, topics=self.topics)
        if len(batch) == self.batch_size:  # the window was wide enough: keep it about so
            last = self._position(batch[-1])
            self.window = max(self.batch_size, 2 * (last - after))
            return batch, after, last, False
        self.window *= 2
        # By topic, the batch covers the log up to where the read stopped.
        return batch, after, max(stop, after), stop == head


def _done(prepared: Prepared) -> Future[Prepared]:
    future: Future[Prepared] = Future()
    future.set_result(prepared)
    return future


def published_rebuild(
    row: Mapping[str, Any] | None, alive: bool | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The rebuild another process published in the versions table: (running, None)
    while it gives news, or (None, how it ended) once its process died. ``alive``:
    whether its lock is held (None: unknown; then news older than 15 s means dead)."""
    published = (row or {}).get("rebuild")
    if not published:
        return None, None
    beat = datetime.fromisoformat(published["heartbeat_at"]).timestamp()
    if alive or (alive is None and beat > time.time() - STALE_AFTER_SECONDS):
        return published, None
    return None, {
        "started_at": published["started_at"],
        "finished_at": None,
        "worker": published["worker"],
        "position": published["position"],
        "comparison": None,
        "error": f"interrupted at position {published['position']} (no news since"
        f" {published['heartbeat_at']}); the live copy was not touched",
    }
