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
