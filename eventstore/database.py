"""What the shop asks of its database beyond the library's persistence modules.

Advisory-lock keys (one worker per read model, one migrator at a time), the lock that
serialises table creation across processes, and which errors are worth retrying.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import eventsourcing.persistence as es
import psycopg
from psycopg_pool import PoolClosed, PoolTimeout, TooManyRequests

from eventstore.url import StoreURL


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock, from names."""
    digest = hashlib.sha256("\x1f".join(("eventshop", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def migration_lock(store: StoreURL) -> Iterator[None]:
    """Serialise schema changes of concurrent starters (CREATE ... IF NOT EXISTS races)."""
    if not store.is_postgres:
        yield
        return
    key = advisory_key("migrate", store.dbname, store.schema)
    with psycopg.connect(store.dsn(), autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def is_transient(error: BaseException) -> bool:
    """Worth retrying as is: the database was busy or unreachable, the code is not at fault."""
    if isinstance(error, es.OperationalError | es.InterfaceError | psycopg.OperationalError):
        return True
    if isinstance(error, sqlite3.OperationalError):
        message = str(error).lower()
        return "locked" in message or "busy" in message
    return False


# Connection exceptions (class 08) and the server ending the session (admin shutdown,
# crash shutdown, cannot connect now).
_SESSION_ENDED = ("57P01", "57P02", "57P03")


def is_disconnect(error: BaseException) -> bool:
    """The connection broke (the server went away or ended the session): the same work on
    another connection may well succeed at once. Not a wait that ran out (no connection
    in time, a lock or statement timeout), which would only wait as long again, nor the
    pool refusing (closed, too many waiting)."""
    cause = error.__cause__ if isinstance(error, es.PersistenceError) else error
    if isinstance(cause, PoolTimeout | PoolClosed | TooManyRequests) or not isinstance(
        cause, psycopg.OperationalError | psycopg.InterfaceError
    ):
        return False
    state = cause.sqlstate
    return state is None or state.startswith("08") or state in _SESSION_ENDED
