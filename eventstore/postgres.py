"""eventsourcing's PostgreSQL persistence with every wait bounded.

The library's own options bound the wait for a pooled connection
(``POSTGRES_CONNECT_TIMEOUT``, which is psycopg_pool's ``timeout``) and for the log's
write lock (``POSTGRES_LOCK_TIMEOUT``). What it leaves unbounded is set here, on the
same pool, before it opens (:class:`Factory`, named by ``PERSISTENCE_MODULE``):

* connecting: libpq's ``connect_timeout`` (the pool's wait), and TCP keepalives, so that
  a server that vanished is noticed within seconds rather than by the kernel's timeout;
* each statement: ``statement_timeout`` (``POSTGRES_STATEMENT_TIMEOUT``, seconds);
* reconnecting: psycopg_pool tries again to connect with waits that double without
  limit, for 5 minutes, and meanwhile does not grow the pool for clients: after an
  outage of a minute, the next attempt could be a minute away. Here each attempt gives
  up after the pool's wait, and the next client that waits for a connection starts a
  new one at once; so the pool is back within about a second of the database.

And the library's recorders try each read and append again 10 times, 0.2 s apart, on
any ``OperationalError``, each try waiting the pool's whole timeout: with the database
down one call took 10 times that. The recorders here (:class:`BoundedLog`,
:class:`BoundedTracking`) try a read again only after a broken connection, at once and
a few times (``eventstore.retry.on_disconnect``), and an append never; so a call with
the database down waits once, and answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import eventsourcing.postgres as library
from eventsourcing.persistence import Notification, StoredEvent, Tracking
from eventsourcing.utils import Environment, EnvType

from eventstore import retry
from eventstore.database import is_disconnect

STATEMENT_TIMEOUT = "POSTGRES_STATEMENT_TIMEOUT"
"""eventshop's addition to the library's settings: the longest a statement may run (s)."""

# A server that stops answering is given up after about 5 + 2 x 3 seconds of silence.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}

R = TypeVar("R")


class Factory(library.PostgresFactory):
    """The library's PostgreSQL factory; its pool bounded as the module says."""

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        statement = self.env.get(STATEMENT_TIMEOUT)
        bound(self.datastore, statement_timeout=float(statement) if statement else None)


def bound(datastore: library.PostgresDatastore, *, statement_timeout: float | None) -> None:
    """Bound the connecting, reconnecting and statements of ``datastore``'s pool, which
    must not have opened yet (its settings reach only the connections it makes)."""
    pool = datastore.pool
    assert pool.closed and isinstance(pool.kwargs, dict), "bound before the pool opens"
    wait = pool.timeout  # POSTGRES_CONNECT_TIMEOUT
    # libpq counts whole seconds, and takes less than 2 as 2.
    pool.kwargs.update(KEEPALIVES, connect_timeout=max(2, math.ceil(wait)))
    if statement_timeout:
        pool.kwargs["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
    pool.reconnect_timeout = wait


class _Bounded:
    """Calls of a library recorder, without the library's retries (module docstring)."""

    datastore: library.PostgresDatastore

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bounded_reads = retry.on_disconnect(before_retry=self._drain)

    def _bounded_read(self, method: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``method`` (a bound method of the library's), its own retries left out."""
        return self._bounded_reads(_unretried(method), *args, **kwargs)

    def _bounded_write(self, method: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``method``, once: after a broken connection its outcome is unknown, and the
        caller must not be told it failed when it may have been written."""
        try:
            return _unretried(method)(*args, **kwargs)
        except Exception as error:
            if is_disconnect(error):
                self._drain()
            raise

    def _drain(self) -> None:
        # A connection broke: its siblings, made at the same time, most likely did too
        # (a restarted or failed-over server). The pool replaces them all, so that the
        # next call gets a new one rather than each of the dead ones in turn.
        self.datastore.pool.drain()


def _unretried(method: Callable[..., R]) -> Callable[..., R]:
    # The library's retry decorator keeps the plain function as ``__wrapped__``.
    plain = getattr(method, "__wrapped__", None)
    owner = getattr(method, "__self__", None)
    if plain is None or owner is None:
        return method
    return lambda *args, **kwargs: plain(owner, *args, **kwargs)  # type: ignore[no-any-return]


class BoundedLog(_Bounded):
    """For a subclass of the library's ``PostgresApplicationRecorder`` (the log)."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        return self._bounded_write(super().insert_events, stored_events, **kwargs)  # type: ignore[misc]

    def select_events(self, *args: Any, **kwargs: Any) -> Sequence[StoredEvent]:
        return self._bounded_read(super().select_events, *args, **kwargs)  # type: ignore[misc]

    def select_notifications(self, *args: Any, **kwargs: Any) -> Sequence[Notification]:
        return self._bounded_read(super().select_notifications, *args, **kwargs)  # type: ignore[misc]

    def max_notification_id(self) -> int | None:
        return self._bounded_read(super().max_notification_id)  # type: ignore[misc]


class BoundedTracking(_Bounded):
    """For a subclass of the library's ``PostgresTrackingRecorder`` (a read model)."""

    def insert_tracking(self, tracking: Tracking) -> None:
        self._bounded_write(super().insert_tracking, tracking)  # type: ignore[misc]

    def max_tracking_id(self, application_name: str) -> int | None:
        return self._bounded_read(super().max_tracking_id, application_name)  # type: ignore[misc]

    def has_tracking_id(self, application_name: str, notification_id: int | None) -> bool:
        return self._bounded_read(  # type: ignore[no-any-return]
            super().has_tracking_id,  # type: ignore[misc]
            application_name,
            notification_id,
        )


class LogRecorder(BoundedLog, library.PostgresApplicationRecorder):
    """The log, as the read side reads it."""
