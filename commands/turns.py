"""Commands on one aggregate take turns instead of racing.

Two commands that change the same aggregate at the same moment would both load it,
both decide, and one of them would lose the optimistic-concurrency race and run again
(or, under load, again and again). Within a process they queue here instead: a command
waits for its turn on each aggregate it will change, then loads, decides and saves while
it holds them. Across processes the log's version check still decides, and the loser
runs again from a fresh load (commands/service.py).

A command takes its turns on several aggregates in one go, in a fixed order (sorted
ids), and a command that holds a turn on a stock level never asks for one on a cart or
an order: so no two commands can wait for each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from domain.errors import Busy

DEFAULT_TIMEOUT = 10.0


class Turns:
    """One lock per aggregate id in use, made on demand and dropped when nobody holds it."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._guard = threading.Lock()
        self._locks: dict[UUID, tuple[threading.RLock, int]] = {}

    @contextmanager
    def of(self, *aggregate_ids: UUID) -> Iterator[None]:
        """Hold the turn on each of these aggregates for the block (Busy after ``timeout``)."""
        deadline = time.monotonic() + self.timeout
        held: list[UUID] = []
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
            yield
        finally:
            for aggregate_id in reversed(held):
                self._locks[aggregate_id][0].release()
                self._release_use(aggregate_id)

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
