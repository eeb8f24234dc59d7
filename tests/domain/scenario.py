"""Given events / when command / then events (or error): tests that read like the rules.

In the spirit of Emmett's ``given(events).when(command).then(events)``, over our
eventsourcing aggregates::

    given(ev(Stock.Created, sku="MUG"), ev(Stock.Received, quantity=3, note=""))
        .when(lambda stock: stock.reserve(ORDER, 5))
        .then_raises(InsufficientStock, short=[{"sku": "MUG", "requested": 5, "available": 3}])

``given`` rebuilds the aggregate by replaying its history through each event's own
``mutate`` (the path the repository takes), so the apply steps are tested too. Events
are compared by class and payload; ids, versions and timestamps are the library's
business and are checked for consistency, not spelled out in every test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate, CanInitAggregate
from eventsourcing.utils import get_topic, resolve_topic

from domain.errors import DomainError

A = TypeVar("A", bound=Aggregate)
E = TypeVar("E", bound=DomainError)

# Attributes every stored event carries that say where and when, not what.
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


@dataclass(frozen=True)
class Fact:
    """An event as a test states it: its class and its payload."""

    cls: type[Aggregate.Event]
    data: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.data.items())
        return f"{self.cls.__qualname__}({args})"


def ev(cls: type[Aggregate.Event], **data: Any) -> Fact:
    """An event of ``cls`` with payload ``data``: ``ev(Stock.Received, quantity=5, note="")``."""
    return Fact(cls, data)


def fact_of(event: Any) -> Fact:
    """A recorded event seen as a Fact (its class and payload, no envelope)."""
    return Fact(type(event), {k: v for k, v in vars(event).items() if k not in _ENVELOPE})


def record(history: tuple[Fact, ...] | list[Fact], aggregate_id: UUID) -> list[Any]:
    """The events of ``history`` as the store would hold them, versions 1, 2, …"""
    if not history:
        return []
    first = history[0].cls
    if not issubclass(first, CanInitAggregate):
        raise TypeError(f"a history starts with a created event, not {first.__qualname__}")
    owner_topic = get_topic(first).rsplit(".", 1)[0]
    events = []
    for version, fact in enumerate(history, start=1):
        envelope: dict[str, Any] = {
            "originator_id": aggregate_id,
            "originator_version": version,
            "timestamp": fact.cls.create_timestamp(),
        }
        if version == 1:
            resolve_topic(owner_topic)  # fail early on an event class outside an aggregate
            envelope["originator_topic"] = owner_topic
        events.append(fact.cls(**envelope, **fact.data))
    return events


def replay(events: list[Any]) -> Any:
    """The aggregate that ``events`` build, or None when there are none."""
    aggregate = None
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class Scenario(Generic[A]):
    """One test: a history, a command, and what must come of it."""

    def __init__(self, history: tuple[Fact, ...], aggregate_id: UUID) -> None:
        self._history = history
        self._id = aggregate_id
        self._command: Callable[[A], Any] | None = None

    def when(self, command: Callable[[A], Any]) -> Scenario[A]:
        """The command, as a function of the aggregate (None when the history is empty)."""
        self._command = command
        return self

    def then(self, *expected: Fact) -> A:
        """The command records exactly ``expected``; returns the aggregate for more checks."""
        past = record(self._history, self._id)
        aggregate = replay(past)
        result = self._run(aggregate)
        if aggregate is None:
            # A creating command (given nothing) hands back the new aggregate.
            assert isinstance(result, Aggregate), f"a creating command returned {result!r}"
            aggregate = result
        new = list(aggregate.collect_events())
        assert [fact_of(e) for e in new] == list(expected)
        assert {e.originator_id for e in new} <= {aggregate.id}
        assert [e.originator_version for e in new] == list(
            range(len(past) + 1, len(past) + 1 + len(new))
        )
        # The events alone rebuild what the command left: state changes only in apply steps.
        assert replay(past + new) == aggregate
        return aggregate

    def then_raises(self, error: type[E], match: str | None = None, **info: Any) -> E:
        """The command is refused with ``error`` carrying ``info``, and records nothing."""
        past = record(self._history, self._id)
        aggregate = replay(past)
        with pytest.raises(error, match=match) as caught:
            self._run(aggregate)
        for key, value in info.items():
            assert key in caught.value.info, f"{error.__name__} carries no {key!r}"
            assert caught.value.info[key] == value, f"{error.__name__}.{key}"
        if aggregate is not None:
            assert list(aggregate.collect_events()) == [], "a refused command recorded events"
            assert aggregate == replay(past), "a refused command changed the aggregate"
        return caught.value

    def _run(self, aggregate: A | None) -> Any:
        assert self._command is not None, "when(...) names no command"
        return self._command(aggregate)  # type: ignore[arg-type]


def given(*history: Fact, aggregate_id: UUID | None = None) -> Scenario[Any]:
    """Start a scenario from the events an aggregate has already recorded."""
    return Scenario(history, aggregate_id or uuid4())
