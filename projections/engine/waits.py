"""Read-your-writes waits that hold no thread, for an asyncio server.

A query asked with ``?min_position=N`` waits until its read model has applied position
N. Waiting in a thread (``Runner.wait_for``) holds that thread for the whole wait: 60
such queries took every worker thread of the API, and commands queued behind them for
seconds. Here a wait is a future on the event loop. One watcher task per loop looks at
the positions for every waiter at once: every ``tick`` in this process's memory for a
read model fed here (hurrying its worker, as a waiting reader does), and at most every
``poll`` in the database for one fed by another process, by one read in a thread,
whatever the number of waiters. At most ``limit`` queries wait at once; one more is
refused at once (:class:`TooManyWaiters`), rather than queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from projections.engine.runner import Runner

log = logging.getLogger("eventshop.projections")


class TooManyWaiters(Exception):
    """As many queries as allowed wait for read models already."""


@dataclass(eq=False)
class _Waiter:
    names: tuple[str, ...]
    position: int
    reached: asyncio.Future[None]


@dataclass
class _Loop:
    """The waiters of one event loop, and its watcher."""

    waiters: set[_Waiter] = field(default_factory=set)
    watcher: asyncio.Task[None] | None = None
    # Read model -> (when read, position), for those fed by other processes.
    polled: dict[str, tuple[float, int]] = field(default_factory=dict)


class PositionWaits:
    """Waits of coroutines for read models' positions (module docstring)."""

    def __init__(
        self, runner: Runner, *, limit: int, tick: float = 0.005, poll: float = 0.01
    ) -> None:
        self.runner = runner
        self.limit = limit
        self.tick = tick
        self.poll = poll
        self._loops: dict[asyncio.AbstractEventLoop, _Loop] = {}

    @property
    def waiting(self) -> int:
        """How many queries wait now."""
        return sum(len(state.waiters) for state in list(self._loops.values()))

    async def wait(self, name: str | None, position: int, timeout: float) -> bool:
        """Wait until the read model ``name`` (None or ``"all"``: every one) has applied
        ``position``: True; False once ``timeout`` seconds have passed. TooManyWaiters if
        ``limit`` queries wait already; KeyError for an unknown read model."""
        names = tuple(self.runner.workers) if name in (None, "all") else (name,)
        if unknown := [n for n in names if n not in self.runner.workers]:
            raise KeyError(f"no projection named {unknown[0]!r}")
        if self.waiting >= self.limit:
            raise TooManyWaiters(f"{self.limit} queries wait for read models already")
        loop = asyncio.get_running_loop()
        state = self._loops.setdefault(loop, _Loop())
        waiter = _Waiter(names, position, loop.create_future())
        state.waiters.add(waiter)
        if state.watcher is None:
            state.watcher = loop.create_task(self._watch(loop, state))
        try:
            await asyncio.wait_for(waiter.reached, timeout)
        except TimeoutError:
            return False
        finally:
            state.waiters.discard(waiter)
        return True

    async def _watch(self, loop: asyncio.AbstractEventLoop, state: _Loop) -> None:
        try:
            while state.waiters:
                wanted: dict[str, int] = {}
                for waiter in state.waiters:
                    for name in waiter.names:
                        wanted[name] = max(wanted.get(name, 0), waiter.position)
                positions = {
                    name: await self._position(name, wanted[name], state) for name in wanted
                }
                for waiter in list(state.waiters):
                    if not waiter.reached.done() and all(
                        positions[name] >= waiter.position for name in waiter.names
                    ):
                        waiter.reached.set_result(None)
                await asyncio.sleep(self.tick)
        finally:
            # No await between the last look at the waiters and this: a waiter that
            # comes next starts a new watcher.
            state.watcher = None
            if not state.waiters:
                self._loops.pop(loop, None)

    async def _position(self, name: str, awaited: int, state: _Loop) -> int:
        worker = self.runner.workers[name]
        if worker.owned:
            # As a waiting reader does: a polling feed (SQLite) looks at the log now, and
            # the live loop writes what it holds back.
            worker.feed.wake()
            worker.expect(awaited)
            return worker.position
        now = time.monotonic()
        read_at, position = state.polled.get(name, (0.0, -1))
        if now - read_at < self.poll:
            return position
        try:
            position = await asyncio.to_thread(self.runner.position, name)
        except Exception as error:  # the database is down: the waits run out, 503
            log.debug("could not read the position of %s: %s", name, error)
        state.polled[name] = (time.monotonic(), position)
        return position
