"""Worker processes that decode and handle a rebuild's batches, so that it uses every core.

Replaying the log is Python work: decoding each event and running its handler cost more
than reading the events and writing the rows. In one process that work runs on one core
whatever the threads (the GIL). A rebuild of a large log therefore hands its batches to
worker processes: the rebuild's own threads read the batches from the log and write the
prepared rows in log order, exactly as without workers (same fence, same transactions),
while up to ``processes`` batches are decoded and handled at once elsewhere.

A worker holds a *detached* copy of the read model (its handlers, no database) and the
application's mapper; it gets a batch of the log and sends back the row operations its
handlers recorded (:class:`~projections.engine.writes.Writes` pickles them) and the events
it parked; with the ``stop`` policy a handler error comes back as the same
``EventFailed``, naming the event. Workers are forked from a clean server process
(``forkserver``: no copy of the parent's threads, locks or connections; as with
``spawn``, a script that starts a rebuild must guard its top level with ``if __name__ ==
"__main__"``) and end with the pool; a worker whose parent was killed exits at once.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from eventsourcing.persistence import Mapper

from projections.engine.base import Prepared, ReadModel
from projections.engine.collector import REPLAY_THRESHOLD
from projections.engine.feed import Row, notification
from projections.engine.parking import ParkedEvent

log = logging.getLogger("eventshop.projections")


class Preparers:
    """A pool of worker processes preparing batches of one read model."""

    def __init__(self, model: ReadModel, mapper: Mapper[Any], processes: int) -> None:
        self.processes = processes
        self._pool = ProcessPoolExecutor(
            processes,
            mp_context=_context(),
            initializer=_start,
            initargs=(type(model), model.view.dialect, mapper),
        )

    @staticmethod
    def can_send(model: ReadModel, mapper: Mapper[Any]) -> bool:
        """Whether the read model's class and the mapper can go to another process."""
        try:
            pickle.dumps((type(model), mapper))
        except Exception as error:
            log.info("projection %s: rebuilding in one process: %s", model.name, error)
            return False
        return True

    def submit(
        self,
        rows: list[Row],
        through: int,
        hold: Mapping[int, ParkedEvent],
        blocked: Mapping[str, int],
    ) -> Future[Prepared]:
        """Decode and handle a batch (``Source.read_rows``: plain tuples pickle in C) in
        a worker: its ``Prepared`` (or its ``EventFailed``). ``hold``: its events the
        copy keeps parked or skipped; ``blocked``: as ``ReadModel.prepare``."""
        return self._pool.submit(_prepare, rows, through, hold, blocked)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


_forkserver: multiprocessing.context.BaseContext | None = None
_forkserver_lock = threading.Lock()


def _context() -> multiprocessing.context.BaseContext:
    """Where workers come from: forked from a server process started once (the first
    rebuild pays for its imports, later ones start their workers at once), which never
    held the parent's threads, locks or connections."""
    global _forkserver
    with _forkserver_lock:
        if _forkserver is None:
            context = multiprocessing.get_context("forkserver")
            # What every worker needs, imported once in the server instead of in each.
            context.set_forkserver_preload(["__main__", __name__, "eventstore.transcoder"])
            _forkserver = context
        return _forkserver


# --- in the worker processes ---------------------------------------------------------------

_model: ReadModel | None = None
_mapper: Mapper[Any] | None = None


def _start(model_class: type[ReadModel], dialect: str, mapper: Mapper[Any]) -> None:
    global _model, _mapper
    # A worker holds both ends of the pool's pipes, so it would never see them close if
    # the parent were killed: it watches the parent itself.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, REPLAY_THRESHOLD), *older)  # see projections/engine/collector.py
    _model, _mapper = model_class.detached(dialect), mapper


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()  # returns when the parent process has ended, however it ended
    os._exit(1)


def _prepare(
    rows: list[Row], through: int, hold: Mapping[int, ParkedEvent], blocked: Mapping[str, int]
) -> Prepared:
    assert _model is not None and _mapper is not None
    events = [notification(row) for row in rows]
    prepared = _model.prepare(events, _mapper, through, hold=hold, blocked=blocked)
    prepared.writes.seal()  # statements made here, not in the parent
    return prepared
