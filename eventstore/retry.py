"""How the shop tries again: its retry policies, on tenacity.

Two kinds of failure are worth another attempt:

* **A lost optimistic-concurrency race** (``RecordConflictError``, the write side): the
  command runs again from a fresh load, a bounded number of times, after a random wait
  in a window that doubles ("full jitter"), so that many writers to one hot aggregate
  spread out instead of colliding again in lock-step.
* **A database that was busy or unreachable** (:func:`eventstore.database.is_transient`,
  the read side): the work is tried again after a wait that doubles up to a cap, plus
  some jitter so that the workers of several processes do not all come back at once.

Each policy is a ``tenacity.Retrying``: call it with the function to try,
``policy(fn, *args)``. It returns what ``fn`` returns; an error it does not retry, or
the last error once the attempts are used up, is raised as it is. A policy given a
``stop`` event waits on that event instead of sleeping, and raises :class:`Stopped` as
soon as it is set rather than trying again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from eventsourcing.persistence import RecordConflictError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential_jitter,
    wait_random_exponential,
)

from eventstore.database import is_transient

__all__ = ["CONFLICT_ATTEMPTS", "Stopped", "on_conflict", "on_transient"]

CONFLICT_ATTEMPTS = 10
"""How many times a command runs before it gives up on a hot aggregate."""
CONFLICT_WINDOW = 0.02
CONFLICT_CAP = 0.25
"""Seconds: the first window of random wait after a lost race is about as long as a
contended save on PostgreSQL (~20 ms); it doubles up to the cap. 20 concurrent receipts
to one SKU all land, the unluckiest after about 5 conflicts; giving up takes at most
~1.5 s of waiting."""

log = logging.getLogger("eventshop")


class Stopped(Exception):
    """The stop event was set while a policy waited to try again: the work is abandoned."""


def on_conflict(
    *, attempts: int = CONFLICT_ATTEMPTS, before_retry: Callable[[], None] = lambda: None
) -> Retrying:
    """Run again after a lost optimistic-concurrency race, up to ``attempts`` runs in all;
    then the last ``RecordConflictError`` is raised. ``before_retry`` is called before
    each wait (the service tells its observers)."""
    return Retrying(
        retry=retry_if_exception_type(RecordConflictError),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=CONFLICT_WINDOW, max=CONFLICT_CAP),
        before_sleep=lambda state: before_retry(),
        sleep=_sleep,
        reraise=True,
    )


def on_transient(
    what: str,
    *,
    first: float,
    cap: float,
    attempts: int | None = None,
    stop: threading.Event | None = None,
    retry_if: Callable[[BaseException], bool] = is_transient,
    before_retry: Callable[[BaseException], None] | None = None,
    logger: logging.Logger = log,
) -> Retrying:
    """Try again after a transient database error (or whatever ``retry_if`` accepts),
    waiting ``first`` seconds (plus up to as much again, at random), then twice as long
    each time up to ``cap``; ``attempts`` in all (None: until it works, or ``stop``).

    Each retry is logged as a warning, ``"<what>: <error>; retrying in <n>s"``, and
    ``before_retry(error)`` is called first."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        assert error is not None  # only failures are retried
        if before_retry is not None:
            before_retry(error)
        seconds = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning("%s: %s; retrying in %.1fs", what, error, seconds)

    return Retrying(
        retry=retry_if_exception(retry_if),
        stop=stop_never if attempts is None else stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=first, max=cap, jitter=first),
        before_sleep=before_sleep,
        sleep=_sleep if stop is None else _waiting_on(stop),
        reraise=True,
    )


def _sleep(seconds: float) -> None:
    time.sleep(seconds)  # looked up at each call, so that a test can make it instant


def _waiting_on(stop: threading.Event) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise Stopped("stopped while waiting to try again")

    return sleep
