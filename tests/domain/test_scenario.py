"""The given/when/then helper itself: each check it makes can fail."""

from __future__ import annotations

import pytest
from eventsourcing.domain import event

from domain.base import ShopAggregate
from domain.errors import RuleBroken
from tests.domain.scenario import ev, given


class Counter(ShopAggregate):
    """A throw-away aggregate with one honest and two dishonest commands."""

    class Started(ShopAggregate.Created):
        start: int

    class Counted(ShopAggregate.Event):
        by: int

    @event(Started)
    def __init__(self, start: int) -> None:
        self.n = start

    def count(self, by: int) -> None:
        if by <= 0:
            raise RuleBroken("count up only", by=by)
        self._counted(by)

    @event(Counted)
    def _counted(self, by: int) -> None:
        self.n += by

    def count_off_the_books(self) -> None:
        self.n += 1  # changes state without an event

    def count_then_refuse(self) -> None:
        self._counted(1)
        raise RuleBroken("too late")


STARTED = ev(Counter.Started, start=1)


def test_given_replays_the_history_and_then_checks_new_events() -> None:
    counter = (
        given(STARTED, ev(Counter.Counted, by=2))
        .when(lambda c: c.count(3))
        .then(ev(Counter.Counted, by=3))
    )
    assert (counter.n, counter.version) == (6, 3)


def test_then_fails_on_other_events() -> None:
    with pytest.raises(AssertionError):
        given(STARTED).when(lambda c: c.count(3)).then(ev(Counter.Counted, by=4))
    with pytest.raises(AssertionError):
        given(STARTED).when(lambda c: c.count(3)).then()


def test_then_fails_when_state_changes_outside_an_event() -> None:
    with pytest.raises(AssertionError):
        given(STARTED).when(lambda c: c.count_off_the_books()).then()


def test_then_raises_checks_the_error_and_its_info() -> None:
    error = given(STARTED).when(lambda c: c.count(0)).then_raises(RuleBroken, by=0)
    assert error.detail == "count up only"
    with pytest.raises(AssertionError):
        given(STARTED).when(lambda c: c.count(0)).then_raises(RuleBroken, by=1)
    with pytest.raises(pytest.fail.Exception):
        given(STARTED).when(lambda c: c.count(1)).then_raises(RuleBroken)


def test_then_raises_fails_when_a_refused_command_recorded_something() -> None:
    with pytest.raises(AssertionError, match="recorded events"):
        given(STARTED).when(lambda c: c.count_then_refuse()).then_raises(RuleBroken)


def test_a_history_starts_with_a_created_event() -> None:
    with pytest.raises(TypeError):
        given(ev(Counter.Counted, by=1)).when(lambda c: c.count(1)).then()
