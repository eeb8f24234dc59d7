"""The shop's retry policies (eventstore/retry.py): what they retry, how often, and how
they stop. Waits are made instant, and recorded."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator

import pytest
from eventsourcing.persistence import RecordConflictError
from tenacity import Retrying

from eventstore import retry


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", slept.append)
    return slept


def failing(*errors: BaseException, then: str = "done") -> Callable[[], str]:
    """A function that raises these errors, one per call, then returns ``then``."""
    pending: Iterator[BaseException] = iter(errors)

    def call() -> str:
        error = next(pending, None)
        if error is not None:
            raise error
        return then

    return call


BUSY = sqlite3.OperationalError("database is locked")


def test_a_lost_race_is_run_again_with_growing_random_waits(waits: list[float]) -> None:
    told: list[str] = []
    policy = retry.on_conflict(attempts=5, before_retry=lambda: told.append("retried"))
    assert policy(failing(*[RecordConflictError("lost")] * 4)) == "done"
    assert told == ["retried"] * 4 and len(waits) == 4
    windows = [retry.CONFLICT_WINDOW * 2**n for n in range(4)]
    assert all(
        0 <= wait <= min(w, retry.CONFLICT_CAP) for wait, w in zip(waits, windows, strict=True)
    )


def test_a_command_that_keeps_losing_raises_the_last_conflict(waits: list[float]) -> None:
    with pytest.raises(RecordConflictError, match="4"):  # the fifth
        retry.on_conflict(attempts=5)(failing(*[RecordConflictError(str(n)) for n in range(9)]))
    assert len(waits) == 4


def test_only_conflicts_are_run_again(waits: list[float]) -> None:
    with pytest.raises(ValueError):
        retry.on_conflict()(failing(ValueError("a bug")))
    assert waits == []


def test_transient_errors_are_retried_with_capped_exponential_waits(
    waits: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    policy = retry.on_transient("feeding", first=0.5, cap=4.0, attempts=7)
    assert policy(failing(*[BUSY] * 6)) == "done"
    lows = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(low <= wait <= min(low + 0.5, 4.0) for wait, low in zip(waits, lows, strict=True))
    assert "feeding: database is locked; retrying in" in caplog.text


def test_other_errors_and_the_last_transient_one_are_raised_as_they_are(
    waits: list[float],
) -> None:
    with pytest.raises(KeyError):
        retry.on_transient("x", first=0.1, cap=1.0)(failing(KeyError("bug")))
    assert waits == []
    with pytest.raises(sqlite3.OperationalError):
        retry.on_transient("x", first=0.1, cap=1.0, attempts=3)(failing(*[BUSY] * 3))
    assert len(waits) == 2


def test_before_retry_is_told_each_error() -> None:
    seen: list[BaseException] = []
    policy = retry.on_transient(
        "x", first=0.0, cap=0.0, retry_if=lambda e: True, before_retry=seen.append
    )
    errors = [ValueError("one"), KeyError("two")]
    assert policy(failing(*errors)) == "done"
    assert seen == errors


def test_a_stop_event_ends_the_wait_and_the_retries() -> None:
    stop = threading.Event()
    policy = retry.on_transient("x", first=30.0, cap=30.0, stop=stop)
    calls: list[int] = []

    def busy() -> None:
        calls.append(1)
        stop.set()  # as if stop() came meanwhile: the 30 s wait ends at once
        raise BUSY

    with pytest.raises(retry.Stopped):
        policy(busy)
    assert calls == [1]


def _run(policy_class: type[Retrying], conflicts: int, waits: list[float]) -> tuple[object, ...]:
    told: list[str] = []
    parts = retry.on_conflict(attempts=3, before_retry=lambda: told.append("retried"))
    policy = policy_class(
        retry=parts.retry,
        stop=parts.stop,
        wait=parts.wait,
        before_sleep=parts.before_sleep,
        sleep=parts.sleep,
        reraise=True,
    )
    waits.clear()
    try:
        outcome: object = policy(failing(*[RecordConflictError("lost")] * conflicts))
    except RecordConflictError as error:
        outcome = repr(error)
    return outcome, told, len(waits), policy.statistics["attempt_number"]


@pytest.mark.parametrize("conflicts", [0, 1, 2, 5])
def test_a_policy_counts_and_waits_as_tenacity_does(conflicts: int, waits: list[float]) -> None:
    """The policies take a first attempt that works outside tenacity's machinery: the
    outcome, the retries told, the waits and the attempts counted are tenacity's own."""
    assert isinstance(retry.on_conflict(), Retrying)
    assert _run(retry._Retrying, conflicts, waits) == _run(Retrying, conflicts, waits)
