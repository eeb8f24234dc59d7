"""Replaying the log into a read model in large batches: a rebuild's copy, a reset's tables.

Three batches are in flight at once: the next is read (a thread), this one is decoded and
handled (here, or in worker processes: ``parallel.py``), the last one is written (another
thread); the database's work on the first and the last overlaps Python's on the middle
one. Batches are still read, and written, one after the other in log order, each in one
transaction fenced on the read model's tracking row.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from operator import attrgetter, itemgetter
from typing import Any

from projections.engine.base import EventFailed, Prepared, ReadModel, Unblocked, transient
from projections.engine.collector import fewer_collections
from projections.engine.feed import Source, notification
from projections.engine.parallel import Preparers
from projections.engine.progress import HEARTBEAT_SECONDS, Progress

PARALLEL_FROM = 50_000
"""Log events a copy must have to go before worker processes are worth starting them."""
SCAN_WINDOWS = 4
"""A read by topic scans at most this many batches' worth of log positions at first, then
about twice what the last full batch spanned. Read to the head, a batch could make the
database scan the whole rest of the log every time (it does when the log's statistics
are stale: 1.4 s instead of 6 ms per read on a 1M log)."""


Writing = tuple[Future[int], int, Sequence[Any], int, int]
"""A batch being written: (its commit, the position it follows, its events, its end, the
events of the log it covers)."""


class LogReplay:
    """Feeds read models from the log of ``source``, ``batch_size`` events a transaction;
    a large replay's batches are prepared by ``processes`` worker processes (below 2:
    in the calling thread)."""

    def __init__(
        self,
        source: Source,
        batch_size: int,
        *,
        processes: int = 1,
        parallel_from: int = PARALLEL_FROM,
    ) -> None:
        self.source = source
        self.batch_size = batch_size
        self.processes = processes
        self.parallel_from = parallel_from

    def feed(
        self,
        model: ReadModel,
        position: int,
        progress: Progress,
        *,
        by_topic: bool,
        check: Callable[[], None],
        written: Callable[[], None],
    ) -> int:
        """Feed ``model`` from the log after ``position`` until a read finds no more;
        returns the position it got to. ``progress`` advances with every batch written,
        after which ``written()`` is called; ``check()`` before each batch read raises to
        abandon the replay.

        ``by_topic``: read only the events the model handles (a copy, whose count of
        events is set from the log at the swap); a batch then covers the log up to where
        its read stopped (the head read before it, or a window short of it), and the
        tracked position says so."""
        app, mapper = self.source.application_name, self.source.mapper
        head = self.source.head()
        # The progress may have been aimed already (a reset's): count only what is new.
        progress.aim(head, self.source.count(head, after=max(position, progress.target)))
        preparers = self._preparers(model, progress.target - position if by_topic else 0)
        topics = model.topics if by_topic else None
        reader = LogReader(self.source, self.batch_size, topics, rows=preparers is not None)
        checked = time.monotonic()
        # Batches handed to workers and not yet written: enough to keep every one busy.
        depth = 2 * preparers.processes if preparers is not None else 0
        pending: deque[tuple[Future[Prepared], int, Sequence[Any], int, int]] = deque()

        def wait_written(writing: Writing, position: int) -> int:
            future, start, batch, through, covered = writing
            try:
                new = future.result()
            except (EventFailed, Unblocked) as failed:
                if isinstance(failed, EventFailed) and (failed.exact or transient(failed)):
                    raise
                # The database refused the batch's rows: find the event at fault. Or it
                # was prepared before the batch ahead of it parked an event: again.
                events = [notification(r) for r in batch] if preparers else list(batch)
                new = model.apply_split(events, mapper, app, start, through)
            progress.advance(new, covered)
            written()
            return new

        with (
            fewer_collections(),
            ThreadPoolExecutor(2, thread_name_prefix=f"rebuild-{model.name}") as pool,
            contextlib.closing(preparers) if preparers else contextlib.nullcontext(),
        ):
            reading = pool.submit(reader.read, position)
            writing: Writing | None = None
            while True:
                check()
                batch, read_from, through, last, covered = reading.result()
                if not last:
                    reading = pool.submit(reader.read, through)
                if through > read_from:
                    if preparers is not None:
                        held = {r[0]: model.hold[r[0]] for r in batch if r[0] in model.hold}
                        preparing = preparers.submit(list(batch), through, held, model.blocked)
                    else:
                        preparing = _done(model.prepare(batch, mapper, through))
                    pending.append((preparing, read_from, batch, through, covered))
                while pending and (last or len(pending) > depth):
                    preparing, start, done, until, count = pending.popleft()
                    prepared = preparing.result()
                    if writing is not None:
                        position = wait_written(writing, position)
                    commit = pool.submit(model.commit, prepared, app, start)
                    writing = (commit, start, done, until, count)
                if time.monotonic() - checked > HEARTBEAT_SECONDS:
                    head = max(self.source.head(), progress.target)
                    progress.aim(head, self.source.count(head, after=progress.target))
                    checked = time.monotonic()
                if last:
                    break
            if writing is not None:
                position = wait_written(writing, position)
        progress.aim(max(progress.target, position), 0)
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


class LogReader:
    """Reads a replay's batches from the log, one after the other: as Notifications, or
    with ``rows`` as plain tuples (``Source.read_rows``, for worker processes)."""

    def __init__(
        self, source: Source, batch_size: int, topics: Sequence[str] | None, *, rows: bool = False
    ) -> None:
        self.source = source
        self.batch_size = batch_size
        self.topics = topics
        self.window = batch_size * SCAN_WINDOWS
        self._read: Callable[..., Sequence[Any]] = source.read_rows if rows else source.read
        self._position: Callable[[Any], int] = itemgetter(0) if rows else attrgetter("id")

    def read(self, after: int) -> tuple[Sequence[Any], int, int, bool, int]:
        """``(batch, after, through, last, covered)``: the events after ``after``; the
        position the batch takes the copy to; whether it reached the head (no more to
        read now); how many events of the log the batch covers (by topic, those of
        other topics too: counted by the database, the progress counts events)."""
        if self.topics is None:
            batch = self._read(after, self.batch_size)
            full = len(batch) == self.batch_size
            through = self._position(batch[-1]) if batch else after
            return batch, after, through, not full, len(batch)
        head = self.source.head()
        stop = min(head, after + self.window)
        batch = self._read(after, self.batch_size, stop=stop, topics=self.topics)
        if len(batch) == self.batch_size:  # the window was wide enough: keep it about so
            last = self._position(batch[-1])
            self.window = max(self.batch_size, 2 * (last - after))
            return batch, after, last, False, self.source.count(last, after=after)
        self.window *= 2
        # By topic, the batch covers the log up to where the read stopped.
        through = max(stop, after)
        return batch, after, through, stop == head, self.source.count(through, after=after)


def _done(prepared: Prepared) -> Future[Prepared]:
    future: Future[Prepared] = Future()
    future.set_result(prepared)
    return future
