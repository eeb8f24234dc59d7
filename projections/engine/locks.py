"""Who feeds which read model: one holder at a time across all processes.

The lock only saves work; correctness does not depend on it: a batch commits only if the
tracking row still holds the position the batch started from (see ``store.fence``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from typing import Any

import psycopg


class LockKeeper:
    """Holds read models' locks for this process. This base one: a process holds them all
    (an in-memory store, which no other process can see)."""

    def try_acquire(self, name: str) -> bool:
        return True

    def holds(self, name: str) -> bool:
        """Whether this process still holds the lock (asked often: cheap)."""
        return True

    def release(self, name: str) -> None:
        return None

    def held_anywhere(self, name: str) -> bool | None:
        """Whether some process holds the lock now (None: cannot tell)."""
        return None

    def close(self) -> None:
        return None


class AdvisoryLocks(LockKeeper):
    """PostgreSQL session advisory locks, all on one dedicated connection per process.

    When that connection breaks (or the process dies), PostgreSQL frees its locks and a
    standby worker takes over; this process notices at its next check and stands by.
    """

    def __init__(self, dsn: str, keys: dict[str, int], check_every: float = 1.0) -> None:
        self._dsn = dsn
        self._keys = keys
        self._check_every = check_every
        self._conn: psycopg.Connection[Any] | None = None
        self._held: set[str] = set()
        self._checked = 0.0
        self._mutex = threading.Lock()

    def try_acquire(self, name: str) -> bool:
        with self._mutex:
            if name in self._held:
                return True
            try:
                conn = self._connection()
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (self._keys[name],)
                ).fetchone()
            except psycopg.Error:
                self._drop()
                raise
            if row and row[0]:
                self._held.add(name)
                return True
            return False

    def holds(self, name: str) -> bool:
        with self._mutex:
            if name not in self._held or self._conn is None:
                return False
            if time.monotonic() - self._checked > self._check_every:
                try:
                    self._conn.execute("SELECT 1")
                except psycopg.Error:
                    self._drop()
                    return False
                self._checked = time.monotonic()
            return True

    def release(self, name: str) -> None:
        with self._mutex:
            if name not in self._held or self._conn is None:
                return
            self._held.discard(name)
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._keys[name],))
            except psycopg.Error:
                self._drop()

    def held_anywhere(self, name: str) -> bool | None:
        # pg_locks shows a bigint advisory key as two oids, high and low 32 bits.
        key = self._keys[name] & 0xFFFFFFFFFFFFFFFF
        with self._mutex:
            try:
                row = (
                    self._connection()
                    .execute(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                        " AND classid = %s::oid AND objid = %s::oid AND objsubid = 1 AND granted"
                        " AND database = (SELECT oid FROM pg_database"
                        " WHERE datname = current_database()))",
                        (key >> 32, key & 0xFFFFFFFF),
                    )
                    .fetchone()
                )
            except psycopg.Error:
                self._drop()
                return None
        return bool(row and row[0])

    def close(self) -> None:
        with self._mutex:
            self._drop()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._drop()
            self._conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=5,
                application_name="eventshop-projection-locks",
                # A holder cut off from the server must lose its locks in seconds.
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
            )
            self._checked = time.monotonic()
        return self._conn

    def _drop(self) -> None:
        # Every lock of this process went with the connection.
        self._held.clear()
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None


class FileLocks(LockKeeper):
    """flock()s on files next to a SQLite database; the kernel frees them when we die."""

    def __init__(self, paths: dict[str, str]) -> None:
        self._paths = paths
        self._fds: dict[str, int] = {}
        self._mutex = threading.Lock()

    def try_acquire(self, name: str) -> bool:
        with self._mutex:
            if name in self._fds:
                return True
            fd = os.open(self._paths[name], os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fds[name] = fd
            return True

    def holds(self, name: str) -> bool:
        return name in self._fds

    def held_anywhere(self, name: str) -> bool | None:
        if name in self._fds:
            return True
        try:
            fd = os.open(self._paths[name], os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            # A shared probe, at once undone: it fails only while someone holds it.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also frees the probe
        return False

    def release(self, name: str) -> None:
        with self._mutex:
            fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for name in list(self._fds):
            self.release(name)
