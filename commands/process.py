"""Process managers: what turns events and timers into commands.

A process manager declares how it *reacts* to events of the log, with methods marked
:func:`reacts_to` that answer timer changes (:func:`schedule` a key at a time, or
:func:`unschedule` it) and do no I/O; and how it *acts* when a timer is due
(:meth:`ProcessManager.act`), by issuing commands to the :class:`~commands.service.Shop`.
A reaction that wants a command at once schedules a timer due now.

Its timers are its state. They are kept in the database and derived from the log like a
read model (``projections/engine/timers.py``, wired in ``eventshop/processes.py``): a
position kept exactly once with them, one feeder at a time, rebuilt from the log. Due
timers are fired once across processes, and late after downtime.

:meth:`ProcessManager.fire` runs ``act`` under the process manager's cause (the actor
``process:<name>``, so the events it causes name it) and an idempotency key made of the
timer's key and due time: a timer fired again (its firer died after the command and
before deleting it) replays the first command's answer instead of running a second.
A command the domain refuses (the order was paid meanwhile) is a final answer too; only
``Busy`` and ``ConcurrencyConflict`` (and a failing database) leave the timer to be fired
again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from eventsourcing.utils import get_topic

from commands.idempotency import fingerprint, idempotent
from commands.outcome import Done
from commands.service import Shop
from domain.errors import Busy, ConcurrencyConflict, DomainError
from eventstore.causes import caused_by

F = TypeVar("F", bound=Callable[..., Iterable["Timer"]])

ROLE = "process"
"""The role recorded in the cause of a process manager's events."""


@dataclass(frozen=True)
class Timer:
    """A timer change (``due_at`` None: unschedule ``key``), or a due timer to act on."""

    key: str
    due_at: datetime | None
    data: Mapping[str, Any] = field(default_factory=dict)
    """JSON values the action needs (stored with the timer)."""


def schedule(key: str, due_at: datetime, **data: Any) -> Timer:
    """Schedule (or move) the timer ``key`` to ``due_at``, with ``data`` for its action."""
    return Timer(key, due_at, data)


def unschedule(key: str) -> Timer:
    """Drop the timer ``key`` if there is one."""
    return Timer(key, None)


def reacts_to(*event_classes: type) -> Callable[[F], F]:
    """Mark a method ``(self, event) -> Iterable[Timer]`` as the reaction to these events."""

    def mark(method: F) -> F:
        method.__reacts_to__ = event_classes  # type: ignore[attr-defined]
        return method

    return mark


class Fired(StrEnum):
    DONE = "done"
    REPLAYED = "replayed"  # fired before: the first command's answer
    REFUSED = "refused"  # the domain said no (e.g. the order was paid meanwhile)


@dataclass(frozen=True)
class Firing:
    """How acting on one timer ended."""

    outcome: Fired
    detail: str = ""
    position: int | None = None


class ProcessManager(ABC):
    """Reacts to events with timers, and issues commands when they are due.

    Subclasses set ``name`` (also the name of its timers as a read model), mark their
    reactions with :func:`reacts_to`, and implement :meth:`act`. Raise ``version`` when
    the reactions change what is scheduled: its timers are then rebuilt from the log.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    reactions: ClassVar[dict[str, Callable[..., Iterable[Timer]]]] = {}
    topics: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Callable[..., Iterable[Timer]]] = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                for event_class in getattr(attribute, "__reacts_to__", ()):
                    found[get_topic(event_class)] = attribute
        cls.reactions = found
        cls.topics = tuple(found)

    @property
    def actor(self) -> str:
        """Who the events of its commands name as their cause."""
        return f"process:{self.name}"

    def react(self, event: Any) -> list[Timer]:
        """The timer changes an event of the log makes (none for events it ignores)."""
        reaction = self.reactions.get(get_topic(type(event)))
        return [] if reaction is None else list(reaction(self, event))

    @abstractmethod
    def act(self, shop: Shop, timer: Timer) -> Done:
        """Issue the command(s) of a due timer; a DomainError refuses them (each process
        manager says what its timers do: commands/expiry.py)."""

    def fire(self, shop: Shop, timer: Timer) -> Firing:
        """Act on a due timer once: as this process manager, under an idempotency key
        of the timer. ``Busy``, ``ConcurrencyConflict`` and database errors are raised:
        the timer stays and is fired again later."""
        due = timer.due_at.isoformat() if timer.due_at is not None else ""
        key = f"{self.name}:{timer.key}:{due}"
        with (
            caused_by(self.actor, ROLE, correlation_id=key),
            idempotent(key, fingerprint(self.name, timer.key, due)),
        ):
            try:
                done = self.act(shop, timer)
            except (Busy, ConcurrencyConflict):
                raise
            except DomainError as refused:
                return Firing(Fired.REFUSED, refused.detail)
        outcome = Fired.REPLAYED if done.replayed else Fired.DONE
        return Firing(outcome, position=done.position)
