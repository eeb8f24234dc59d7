"""How the shop tries again: its retry policies, on tenacity.

Three kinds of failure are worth another attempt:

* **A lost optimistic-concurrency race** (``RecordConflictError``, the write side): the
  command runs again from a fresh load, a bounded number of times, after a random wait
  in a window that doubles ("full jitter"), so that many writers to one hot aggregate
  spread out instead of colliding again in lock-step.
* **A database that was busy or unreachable** (:func:`eventstore.database.is_transient`,
  the read side): the work is tried again after a wait that doubles up to a cap, plus
  some jitter so that the workers of several processes do not all come back at once.
* **A broken connection** (:func:`eventstore.database.is_disconnect`, a read of the
  event store): tried again at once, on another connection, a few times; never a wait
  that ran out, so that a call with the database down waits once, not ten times.

Each policy is a ``tenacity.Retrying``: call it with the function to try,
``policy(fn, *args)``. It returns what ``fn`` returns; an error it does not retry, or
the last error once the attempts are used up, is raised as it is. A policy given a
``stop`` event waits on that event instead of sleeping, and raises :class:`Stopped` as
soon as it is set rather than trying again.

Every command runs under :func:`on_conflict`, and nearly every one succeeds at once:
the policies take that first attempt outside tenacity's machinery (its per-attempt
bookkeeping cost ~10 us a command), and hand over to it, where it left off, once the
first attempt fails.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from eventsourcing.persistence import RecordConflictError
from tenacity import (
    DoAttempt,
    DoSleep,
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential_jitter,
    wait_random_exponential,
)

from eventstore.database import is_disconnect, is_transient

__all__ = ["CONFLICT_ATTEMPTS", "Stopped", "on_conflict", "on_disconnect", "on_transient"]

CONFLICT_ATTEMPTS = 10
"""How many times a command runs before it gives up on a hot aggregate."""
CONFLICT_WINDOW = 0.02
CONFLICT_CAP = 0.25
"""Seconds: the first window of random wait after a lost race is about as long as a
contended save on PostgreSQL (~20 ms); it doubles up to the cap. 20 concurrent receipts
to one SKU all land, the unluckiest after about 5 conflicts; giving up takes at most
~1.5 s of waiting."""

log = logging.getLogger("eventshop")


R = TypeVar("R")


class Stopped(Exception):
    """The stop event was set while a policy waited to try again: the work is abandoned."""


class _Retrying(Retrying):
    """``tenacity.Retrying`` with a short way through a first attempt that succeeds.

    The same calls in the same order as ``Retrying.__call__``: statistics begun, the
    ``before`` hook, the attempt, and the retry predicate asked about a result
    (exception predicates never retry one); only tenacity's action list for the first
    attempt is skipped. A failed first attempt is handed to tenacity's own loop with its
    outcome recorded, exactly where that loop would be after it.
    """

    def __call__(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        if not self.enabled:
            return fn(*args, **kwargs)
        self.begin()
        retry_state = RetryCallState(retry_object=self, fn=fn, args=args, kwargs=kwargs)
        if self.before is not None:
            self.before(retry_state)
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            retry_state.set_exception(sys.exc_info())  # type: ignore[arg-type]
        else:
            if isinstance(self.retry, retry_if_exception):
                return result
            retry_state.set_result(result)
        # From here on, tenacity's own Retrying.__call__ loop.
        while True:
            do = self.iter(retry_state=retry_state)
            if isinstance(do, DoAttempt):
                try:
                    result = fn(*args, **kwargs)
                except BaseException:
                    retry_state.set_exception(sys.exc_info())  # type: ignore[arg-type]
                else:
                    retry_state.set_result(result)
            elif isinstance(do, DoSleep):
                retry_state.prepare_for_next_attempt()
                self.sleep(do)
            else:
                return do


def on_conflict(
    *, attempts: int = CONFLICT_ATTEMPTS, before_retry: Callable[[], None] = lambda: None
) -> Retrying:
    """Run again after a lost optimistic-concurrency race, up to ``attempts`` runs in all;
    then the last ``RecordConflictError`` is raised. ``before_retry`` is called before
    each wait (the service tells its observers)."""
    return _Retrying(
        retry=retry_if_exception_type(RecordConflictError),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=CONFLICT_WINDOW, max=CONFLICT_CAP),
        before_sleep=lambda state: before_retry(),
        sleep=_sleep,
        reraise=True,
    )


RESUME_WITHIN = 2.0
"""Seconds: the longest wait between tries of a loop that must resume by itself after
a database outage (a read model's worker, the live feed), so that it is back within
about this long of the database; a few cheap failed connects a second meanwhile."""

DISCONNECT_ATTEMPTS = 3
"""Runs of a read whose connection keeps breaking: the first retry gets a connection
made after the break (see ``before_retry``); a third failure is no passing break."""


def on_disconnect(
    *, attempts: int = DISCONNECT_ATTEMPTS, before_retry: Callable[[], None] = lambda: None
) -> Retrying:
    """Run again at once after the connection broke, up to ``attempts`` runs in all;
    anything else (a wait that ran out among them) is raised as it is. ``before_retry``
    is called before each new run (the recorder drops its pool's other connections,
    which broke with it)."""
    return _Retrying(
        retry=retry_if_exception(is_disconnect),
        stop=stop_after_attempt(attempts),
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

    return _Retrying(
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
