"""The runner: feeds every read model of a process from the event log, one
:class:`~projections.engine.worker.Worker` thread each, and answers for all of them:
read-your-writes waits and status, whether they are fed here or by other processes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from projections.engine import parking
from projections.engine.base import ReadModel, stamp
from projections.engine.feed import LiveFeed, Source
from projections.engine.locks import LockKeeper
from projections.engine.worker import State, Worker

log = logging.getLogger("eventshop.projections")

DEGRADED = "degraded"
"""The state of a read model that follows the log but has parked events."""


class Runner:
    """Runs every read model in threads of this process; answers waits and status.

    Usable without ``start()`` too (an API process whose projections run in workers):
    ``wait_for`` and ``status`` then read positions and states from the database.
    """

    def __init__(
        self,
        models: Sequence[ReadModel],
        source: Source,
        locks: LockKeeper,
        *,
        batch_size: int = 500,
        worker_id: str | None = None,
        standby_interval: float = 1.0,
        heartbeat_interval: float = 2.0,
        poll_interval: float = 0.1,
    ) -> None:
        self.source = source
        self.locks = locks
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:6]}"
        self.heartbeat_interval = heartbeat_interval
        self.feed = LiveFeed(source, poll_interval=poll_interval, capacity=batch_size * 20)
        self.workers = {
            model.name: Worker(
                model,
                source,
                self.feed,
                locks,
                batch_size=batch_size,
                worker_id=self.worker_id,
                standby_interval=standby_interval,
                publish=self._publish,
            )
            for model in models
        }
        self._status_view = models[0].view
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether this process feeds read models (``start()`` without ``stop()``)."""
        return self._heartbeat is not None

    def start(self) -> None:
        """Start feeding every read model (each where this process gets its lock)."""
        if self._heartbeat is not None:
            return
        self._stopping.clear()
        self.feed.start()
        for worker in self.workers.values():
            worker.start()
        self._heartbeat = threading.Thread(
            target=self._beat, name="projections-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every worker (each finishes its batch and frees its lock), then the feed."""
        self._stopping.set()
        for worker in self.workers.values():
            worker.stop()
        for worker in self.workers.values():
            worker.join(timeout)
        self.feed.stop()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout)
            self._heartbeat = None
        self.locks.close()

    def restart(self, name: str) -> None:
        """Start a read model's worker again, e.g. after a fix for the event it stopped on."""
        worker = self._worker(name)
        worker.stop()
        worker.join(10.0)
        worker.start()

    def position(self, name: str) -> int:
        """The last log position applied to a read model (from the database)."""
        return self._worker(name).model.view.position(self.source.application_name)

    def wait_for(self, name: str | None, position: int, timeout: float = 5.0) -> bool:
        """Wait until the read model (``None`` or ``"all"``: every one) has applied
        ``position``; False when ``timeout`` seconds pass first."""
        names = list(self.workers) if name in (None, "all") else [name]
        deadline = time.monotonic() + timeout
        return all(self._wait_one(self._worker(n), position, deadline) for n in names)

    def status(self) -> list[dict[str, Any]]:
        """Per read model: name, state, position, head, lag, events/s, last error, worker,
        and how many events it has parked (then its state is ``degraded`` rather than
        ``live`` or ``catching_up``)."""
        head = self.source.head()
        stored = self._status_view.read_status()
        with self._status_view.reading() as cursor:
            parked = parking.counts(self._status_view, cursor)
        fresh_after = time.time() - max(3 * self.heartbeat_interval, 10.0)
        answer = []
        for name, worker in self.workers.items():
            row = stored.get(name, {})
            position = worker.model.view.position(self.source.application_name)
            holder: str | None
            local_state, local_error = worker.snapshot()
            if worker.owned or local_error is not None:
                state, eps = local_state.value, worker.events_per_second
                error, holder = local_error, self.worker_id
            else:
                beat = row.get("heartbeat_at")
                fresh = beat is not None and datetime.fromisoformat(beat).timestamp() > fresh_after
                state = str(row.get("state") or State.STOPPED.value)
                if not fresh and state != State.STOPPED:
                    state = "not_running"
                eps = float(row.get("events_per_second") or 0) if fresh else 0.0
                error, holder = row.get("last_error"), row.get("worker")
            if parked.get(name) and state in (State.LIVE, State.CATCHING_UP):
                state = DEGRADED
            answer.append(
                {
                    "name": name,
                    "state": state,
                    "position": position,
                    "head": head,
                    "lag": max(head - position, 0),
                    "events_per_second": round(eps, 1),
                    "events_applied": int(row.get("events_applied") or 0),
                    "last_error": error,
                    "worker": holder,
                    "parked": parked.get(name, 0),
                }
            )
        return answer

    def _worker(self, name: str) -> Worker:
        try:
            return self.workers[name]
        except KeyError:
            raise KeyError(
                f"no projection named {name!r}; there are {sorted(self.workers)}"
            ) from None

    def _wait_one(self, worker: Worker, position: int, deadline: float) -> bool:
        delay = 0.005
        while True:
            local = worker.wait(position, deadline)
            if local is not None:
                return local
            # Fed by another process: its progress is in the database.
            if worker.model.view.position(self.source.application_name) >= position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)

    def _row(self, worker: Worker) -> dict[str, Any]:
        state, error = worker.snapshot()
        return {
            "name": worker.name,
            "state": state.value,
            "worker": self.worker_id,
            "eps": round(worker.events_per_second),
            "error": error,
            "heartbeat_at": stamp(datetime.now(UTC)),
        }

    def _publish(self, worker: Worker) -> None:
        try:
            self._status_view.write_status([self._row(worker)])
        except Exception as error:  # status is best effort; feeding must go on
            log.debug("could not publish the status of %s: %s", worker.name, error)

    def _beat(self) -> None:
        while not self._stopping.wait(self.heartbeat_interval):
            rows = [self._row(w) for w in self.workers.values() if w.owned]
            if not rows:
                continue
            try:
                self._status_view.write_status(rows)
            except Exception as error:
                log.debug("could not publish projection status: %s", error)
