"""Blue/green rebuilds: a new copy of a read model, built from position 0 while the live
copy keeps answering queries and following the log, then swapped in in ONE transaction.

The protocol
------------
1. **One rebuild per read model.** A rebuild holds the read model's *rebuild lock* (a
   PostgreSQL advisory lock, or a flock next to the SQLite file) from start to end, so
   two processes never rebuild one read model at once; a second asker is refused
   (:class:`AlreadyRebuilding`). It is not the *feeding* lock: whoever feeds the live
   copy goes on doing so meanwhile (``jobs.py``).
2. **The copy.** What an interrupted rebuild left (``next_`` tables, their tracking
   table and status row) is dropped; the copy's tables are created under the ``next_``
   prefix, without their secondary indexes, with a tracking position of its own at 0
   (``swap.py``). Events parked (or skipped) in the live copy stay so: the copy does
   not apply them (``parking.py``). The copy is fed from the log in large batches, each
   in one transaction fenced on the copy's tracking row, until a read finds no more: it
   has caught up with the head. A large copy's batches are decoded and handled by worker processes
   (``parallel.py``), several at once; they are still read, and written, one after the
   other in log order (``replay.py``). Progress goes to ``projection_versions.rebuild``
   every second, for every process's ``status()`` (``progress.py``).
3. **Indexes.** On PostgreSQL the copy's indexes are built now, before the swap, which
   then only renames them (SQLite cannot rename an index: it makes them in the swap).
4. **The swap**, one transaction (``swap.py``): the live feeder is held at its fence,
   both copies are brought to one position and compared table by table (differences are
   reported in the outcome, never fatal: changed code is what a rebuild is for), the
   live tables are dropped and the copy's renamed to their names; the live position
   becomes the copy's, and the code's version and the outcome (``outcome.py``) are
   recorded. A query sees either the old tables whole or the new ones whole.
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
import functools
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from eventstore import retry
from projections.engine import parking
from projections.engine.base import ReadModel, stamp, transient
from projections.engine.feed import Source
from projections.engine.jobs import AlreadyRebuilding, Job, Jobs, RebuildStopped
from projections.engine.locks import LockKeeper
from projections.engine.outcome import Comparison, RebuildOutcome
from projections.engine.progress import Progress, ProgressCallback
from projections.engine.replay import PARALLEL_FROM, LogReplay
from projections.engine.swap import MakeView, build_indexes, drop_copy, fresh_copy, swap

__all__ = ["AlreadyRebuilding", "RebuildFailed", "RebuildStopped", "Rebuilder"]

log = logging.getLogger("eventshop.projections")


class RebuildFailed(Exception):
    """A rebuild failed for a reason worth another try (the database's)."""


class Rebuilder:
    """Runs blue/green rebuilds (and resets) of a read side's read models."""

    def __init__(
        self,
        models: Mapping[str, ReadModel],
        source: Source,
        make_view: MakeView,
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
        store = next(iter(models.values())).view  # what suits its database
        self.batch_size = batch_size or store.rebuild_batch
        self.processes = store.rebuild_processes if processes is None else processes
        """Worker processes that decode and handle a large copy's batches (``parallel.py``);
        below 2, the copy is prepared in the rebuild's own thread."""
        self.parallel_from = PARALLEL_FROM
        self.pause = store.rebuild_pause
        self._on_swapped = on_swapped
        self._jobs = Jobs(models, locks, worker_id)

    # --- control -------------------------------------------------------------------------

    def start(self, name: str) -> None:
        """Start rebuilding ``name`` in a thread of this process and return at once.

        KeyError for an unknown name; :class:`AlreadyRebuilding` when it is being
        rebuilt already, here or in another process."""
        job = self._jobs.claim(name)
        self._jobs.spawn(f"rebuild-{name}", lambda: self._run_job(job, reraise=False))

    def run(self, name: str, on_progress: ProgressCallback | None = None) -> RebuildOutcome:
        """Rebuild ``name`` in this thread; returns the outcome, with the comparison.

        ``on_progress`` is called after every batch (and at each phase)."""
        return self._run_job(self._jobs.claim(name, on_progress), reraise=True)

    def keep_current(self, name: str, retry_seconds: float = 5.0) -> None:
        """In a thread: rebuild ``name`` until its live tables are the code's version,
        or wait while another process does it; retry after database outages."""
        attempts = retry.on_transient(
            f"projection {name}: cannot rebuild",
            first=retry_seconds,
            cap=60.0,
            stop=self._jobs.stopping,
            retry_if=lambda error: isinstance(error, Exception),  # a claim, as a rebuild
            logger=log,
        )

        def loop() -> None:
            with contextlib.suppress(retry.Stopped):
                while not attempts(self._make_current, name):
                    if self._jobs.stopping.wait(retry_seconds):  # another process is on it
                        return

        self._jobs.spawn(f"rebuild-{name}-version", loop)

    def exclusive(self, name: str) -> contextlib.AbstractContextManager[None]:
        """No rebuild of ``name`` (anywhere) while the block runs: a change of its parked
        events. :class:`AlreadyRebuilding` if one runs."""
        return self._jobs.exclusive(name)

    def progress(self, name: str) -> Progress | None:
        """The progress of a rebuild of ``name`` running in this process, if any."""
        return self._jobs.progress(name)

    def wait(self, name: str, timeout: float = 60.0) -> RebuildOutcome | None:
        """Wait for this process's rebuild of ``name`` to end: its outcome (None if
        none ran here, or on timeout)."""
        return self._jobs.wait(name, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Abandon running rebuilds (their live copies stay as they are) and free locks."""
        self._jobs.stop(timeout)

    # --- the rebuild -----------------------------------------------------------------------

    def _make_current(self, name: str) -> bool:
        """Rebuild ``name`` if its live tables are older than the code: True once they are
        not (or its rebuild failed for good), False while another process rebuilds it.
        Raises what should be tried again: a failure to claim it, a transient failure."""
        model = self.models[name]
        stored = model.view.stored_version(name)
        if stored is None or stored >= model.version:
            return True
        try:
            job = self._jobs.claim(name)
        except AlreadyRebuilding:
            return False
        # Another process may have finished just before we got the lock.
        if model.view.stored_version(name) == model.version:
            self._jobs.finish(job, None)
            return True
        log.info(
            "projection %s: tables at version %s, code at %s: rebuilding",
            name,
            stored,
            model.version,
        )
        outcome = self._run_job(job, reraise=False)
        if outcome.error is not None and outcome.transient:
            raise RebuildFailed(outcome.error)
        return True

    def _run_job(self, job: Job, *, reraise: bool) -> RebuildOutcome:
        live = self.models[job.name]
        started = time.monotonic()
        try:
            copy = fresh_copy(live, self._make_view, self.source.application_name)
            # Parked events stay parked, skipped ones skipped: the copy does not apply them.
            with live.view.reading() as cursor:
                copy.hold = parking.held(live.view, cursor, live.name)
            self._jobs.publish(job, force=True)
            self._replay(job, copy, by_topic=True)
            job.phases["copy"] = round(time.monotonic() - started, 2)
            if copy.view.renames_indexes:  # else made under the live names, in the swap
                job.progress.phase = "indexing"
                self._jobs.publish(job, force=True)
                build_indexes(copy)
            job.phases["indexes"] = max(
                0.0, round(time.monotonic() - started - job.phases["copy"], 2)
            )
            job.progress.phase = "swapping"
            self._jobs.publish(job, force=True)
            # A swap that failed rolled back whole: the copy is intact, try it again.
            attempts = retry.on_transient(
                f"projection {job.name}: swap failed", first=0.2, cap=1.0, attempts=5, logger=log
            )
            outcome = attempts(self._swap, job, live, copy, started)
        except BaseException as error:
            outcome = self._failed(job, live, error, started)
            log.error("projection %s: rebuild failed: %s", job.name, error, exc_info=error)
            self._jobs.finish(job, outcome)
            if reraise:
                raise
            return outcome
        job.progress.phase = "done"
        job.progress.position = outcome.position or job.progress.position
        self._jobs.publish(job, force=True, database=False)
        log.info(
            "projection %s rebuilt: %s events at %s events/s; copies %s",
            job.name,
            outcome.events,
            outcome.events_per_second,
            "equal" if outcome.comparison is not None and outcome.comparison.equal else "differ",
        )
        self._jobs.finish(job, outcome)
        self._on_swapped(job.name)
        return outcome

    def _replay(self, job: Job, model: ReadModel, *, by_topic: bool) -> int:
        """Feed ``model`` from the log, from position 0, until it has caught up."""

        def written() -> None:
            self._jobs.publish(job)
            if self.pause:
                self._jobs.stopping.wait(self.pause)

        replay = LogReplay(
            self.source, self.batch_size, processes=self.processes, parallel_from=self.parallel_from
        )
        check = functools.partial(self._jobs.check, job)
        return replay.feed(model, 0, job.progress, by_topic=by_topic, check=check, written=written)

    def _swap(self, job: Job, live: ReadModel, copy: ReadModel, started: float) -> RebuildOutcome:
        self._jobs.check(job)

        def outcome(
            position: int, events: int, previous_version: int, comparison: Comparison
        ) -> RebuildOutcome:
            seconds = time.monotonic() - started
            swapping = seconds - job.phases.get("copy", 0.0) - job.phases.get("indexes", 0.0)
            return self._outcome(
                job,
                live,
                started,
                previous_version=previous_version,
                position=position,
                events=events,
                events_per_second=round(job.progress.events / max(seconds, 1e-6)),
                phases={**job.phases, "swap": round(swapping, 2)},
                comparison=comparison,
            )

        position = job.progress.position
        return swap(self.source, live, copy, position, batch_size=self.batch_size, outcome=outcome)

    def _outcome(self, job: Job, live: ReadModel, started: float, **facts: Any) -> RebuildOutcome:
        """How ``job`` ended: what every outcome says, and these ``facts``."""
        said: dict[str, Any] = {
            "started_at": job.progress.started_at,
            "finished_at": stamp(datetime.now(UTC)),
            "worker": self._jobs.worker_id,
            "version": live.version,
            "position": job.progress.position,
            "events": job.progress.events,
            "seconds": round(time.monotonic() - started, 2),
        }
        return RebuildOutcome(**{**said, **facts})

    def _failed(
        self, job: Job, live: ReadModel, error: BaseException, started: float
    ) -> RebuildOutcome:
        stopped = isinstance(error, RebuildStopped)
        outcome = self._outcome(
            job,
            live,
            started,
            error=f"{type(error).__name__}: {error}",
            transient=stopped or transient(error),
        )
        job.progress.phase = "failed"
        with contextlib.suppress(Exception):
            live.view.write_rebuild(live.name, None, last_rebuild=outcome)
        if self.locks.holds(job.name):  # else the copy may be another rebuild's by now
            with contextlib.suppress(Exception):
                drop_copy(live, self._make_view)
        return outcome

    # --- reset -------------------------------------------------------------------------------

    def reset(
        self, name: str, on_progress: ProgressCallback | None = None, *, feed_here: bool = True
    ) -> None:
        """Empty the live tables of ``name`` and feed them again from position 0.

        Unlike a rebuild, the read model answers from empty, then partial, tables until
        it has caught up. Blocks until it has: feeding it here (if ``feed_here``) when no
        other process feeds it, else watching whoever does."""
        job = self._jobs.claim(name, on_progress)
        live = self.models[name]
        view, app = live.view, self.source.application_name
        started = time.monotonic()
        outcome: RebuildOutcome | None = None
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
                # Starting over: every event is applied (or parked) again.
                parking.clear(view, cursor, name, skipped=True)
                outcome = self._outcome(job, live, started, reset=True, position=0, events=0)
                view.record_version(cursor, name, live.version, live.tables, last_rebuild=outcome)
            self._on_swapped(name)
            self._refill(job, live, feed_here)
            job.progress.phase = "done"
            self._jobs.publish(job, force=True, database=False)
        finally:
            with contextlib.suppress(Exception):
                view.write_rebuild(name, None)  # no progress to show any more
            self._jobs.finish(job, outcome)

    def _refill(self, job: Job, live: ReadModel, feed_here: bool) -> None:
        head = self.source.head()
        job.progress.aim(head, self.source.count(head))
        self._jobs.publish(job, force=True)
        if feed_here and self.feeding_locks.try_acquire(live.name):
            try:
                self._replay(job, live, by_topic=False)
            finally:
                self.feeding_locks.release(live.name)
            return
        # Another worker feeds it: watch it catch up.
        app = self.source.application_name
        head = self.source.head()
        job.progress.aim(head, self.source.count(head, after=job.progress.target))
        last, still = -1, time.monotonic()
        while True:
            self._jobs.check(job)
            position = live.view.position(app)
            if position != last:
                job.progress.advance(position, self.source.count(position, after=max(last, 0)))
                last, still = position, time.monotonic()
            elif time.monotonic() - still > 60:
                raise TimeoutError(f"{live.name} has not moved from {position} for a minute")
            self._jobs.publish(job)
            if position >= job.progress.target:
                return
            time.sleep(0.2)
