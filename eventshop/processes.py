"""The process managers, wired: their timers are read models of the read-side engine
(fed from the log exactly once, one feeder at a time, rebuilt from the log), and their
firings issue commands through the shop.

A new process manager is a class in ``commands/`` and two lines here: its timers'
model (``class XTimers(TimerModel): reactor = X()``) and its entry in ``PROCESSES``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import cast

from commands.expiry import PaymentExpiry
from commands.process import Fired, ProcessManager, Timer
from commands.service import Shop
from eventstore.url import StoreURL
from projections import ReadSide
from projections.engine.locks import FileLocks, LockKeeper
from projections.engine.timers import DueTimer, Firing, TimerModel

log = logging.getLogger("eventshop.processes")
CATCH_UP_SECONDS = 2.0


class PaymentExpiryTimers(TimerModel):
    reactor = PaymentExpiry()


PROCESSES: tuple[type[TimerModel], ...] = (PaymentExpiryTimers,)
"""Every process manager, as the read model of its timers."""


class Processes:
    """The firings of every process manager in this process."""

    def __init__(self, firings: Sequence[Firing]) -> None:
        self.firings = {firing.model.name: firing for firing in firings}

    def start(self) -> None:
        for firing in self.firings.values():
            firing.start()

    def stop(self) -> None:
        for firing in self.firings.values():
            firing.stop()

    def fire_due(self) -> int:
        """One round of every firing, now: how many timers were done."""
        return sum(firing.fire_due() for firing in self.firings.values())


def open_processes(
    store: StoreURL,
    shop: Shop,
    read_side: ReadSide,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    interval: float = 1.0,
) -> Processes:
    """The firings of every process manager whose timers ``read_side`` holds; nothing
    runs until ``start()``. Their timers are fed by whoever feeds the read side."""
    firings = []
    for model_class in PROCESSES:
        model = cast(TimerModel, read_side.projection(model_class.name))
        manager = cast(ProcessManager, model_class.reactor)
        firings.append(
            Firing(
                model,
                _action(manager, shop),
                locks=_fire_locks(store, model.name),
                clock=clock,
                interval=interval,
                ready=_caught_up(read_side, model.name),
            )
        )
    return Processes(firings)


def _caught_up(read_side: ReadSide, name: str) -> Callable[[], object]:
    """Wait until the timers hold what the log held when firing started (at most
    CATCH_UP_SECONDS: a long catch-up or a rebuild must not hold the due ones back)."""
    return lambda: read_side.wait_for(name, read_side.runner.source.head(), CATCH_UP_SECONDS)


def _action(manager: ProcessManager, shop: Shop) -> Callable[[DueTimer], None]:
    def act(due: DueTimer) -> None:
        firing = manager.fire(shop, Timer(due.key, due.due_at, due.data))
        level = logging.INFO if firing.outcome != Fired.REFUSED else logging.WARNING
        log.log(
            level,
            "%s fired the timer %s (due %s): %s %s",
            manager.name,
            due.key,
            due.due_at.isoformat(),
            firing.outcome,
            firing.detail or f"at position {firing.position}",
        )

    return act


def _fire_locks(store: StoreURL, name: str) -> LockKeeper | None:
    """None where the database shares due timers out (PostgreSQL's SKIP LOCKED); a lock
    file next to a SQLite database (one firer at a time); none needed in memory."""
    if store.is_postgres:
        return None
    if store.is_sqlite:
        return FileLocks({name: f"{store.path}.{name}.fire.lock"})
    return LockKeeper()
