"""Where the customers' data keys are kept: a table of their own, beside the log.

One row per data subject that has a key: the key's id, the subject, the key wrapped by
the master key (never in clear), which master key wrapped it, and when it was made.
Erasing a subject deletes its row; nothing else refers to it but the key id inside the
sealed events, so once the row is gone their personal fields cannot be read.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from contextlib import closing
from datetime import UTC, datetime
from typing import Any, NamedTuple

from psycopg import sql
from psycopg_pool import ConnectionPool

from eventstore.url import StoreURL

KEYS_TABLE = "personal_keys"


class StoredKey(NamedTuple):
    key_id: str
    subject: str
    wrapped: bytes
    master_id: str


class KeyTable(ABC):
    """The data keys' table on one store."""

    @abstractmethod
    def create_table(self) -> None: ...

    @abstractmethod
    def of_subject(self, subject: str) -> StoredKey | None:
        """The subject's key, if it has one."""

    @abstractmethod
    def by_id(self, key_id: str) -> StoredKey | None:
        """The key ``key_id``, unless it was destroyed."""

    @abstractmethod
    def add(self, key: StoredKey) -> StoredKey:
        """Store ``key`` unless its subject has one already; the subject's key either way
        (two processes making a first key at once agree on the one stored)."""

    @abstractmethod
    def destroy(self, subject: str) -> list[str]:
        """Delete the subject's key; the ids of the keys deleted."""

    @abstractmethod
    def other_master(self, master_id: str) -> str | None:
        """The id of a master key other than ``master_id`` that wrapped a stored key."""

    def close(self) -> None:  # noqa: B027 (a table without connections has none to close)
        """Let go of connections."""

    @staticmethod
    def for_store(store: StoreURL, *, wait: float = 2.0) -> KeyTable:
        if store.is_postgres:
            return PostgresKeyTable(store, wait=wait)
        if store.is_sqlite:
            return SQLiteKeyTable(store.path, wait=wait)
        return MemoryKeyTable()


class MemoryKeyTable(KeyTable):
    """For ``memory://`` stores: the keys live as long as the process."""

    def __init__(self) -> None:
        self._rows: dict[str, StoredKey] = {}
        self._guard = threading.Lock()

    def create_table(self) -> None:
        pass

    def of_subject(self, subject: str) -> StoredKey | None:
        return next((k for k in self._rows.values() if k.subject == subject), None)

    def by_id(self, key_id: str) -> StoredKey | None:
        return self._rows.get(key_id)

    def add(self, key: StoredKey) -> StoredKey:
        with self._guard:
            found = self.of_subject(key.subject)
            if found is not None:
                return found
            self._rows[key.key_id] = key
            return key

    def destroy(self, subject: str) -> list[str]:
        with self._guard:
            gone = [k.key_id for k in self._rows.values() if k.subject == subject]
            for key_id in gone:
                del self._rows[key_id]
            return gone

    def other_master(self, master_id: str) -> str | None:
        return next((k.master_id for k in self._rows.values() if k.master_id != master_id), None)

    def __reduce__(self) -> Any:
        # Keys held in one process's memory cannot travel to another (rebuild workers).
        raise TypeError("keys of a memory:// store stay in their process")


_SELECT = "SELECT key_id, subject, wrapped, master_id FROM {table}"


class SQLiteKeyTable(KeyTable):
    def __init__(self, path: str, *, wait: float) -> None:
        self.path, self.wait = path, wait

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=max(self.wait, 5.0))

    def create_table(self) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE} (key_id TEXT PRIMARY KEY,"
                " subject TEXT NOT NULL UNIQUE, wrapped BLOB NOT NULL, master_id TEXT NOT NULL,"
                " created_at TEXT NOT NULL)"
            )

    def _one(self, where: str, value: str) -> StoredKey | None:
        with closing(self._connect()) as conn:
            row = conn.execute(f"{_SELECT.format(table=KEYS_TABLE)} WHERE {where} = ?", (value,))
            found = row.fetchone()
        return StoredKey(found[0], found[1], bytes(found[2]), found[3]) if found else None

    def of_subject(self, subject: str) -> StoredKey | None:
        return self._one("subject", subject)

    def by_id(self, key_id: str) -> StoredKey | None:
        return self._one("key_id", key_id)

    def add(self, key: StoredKey) -> StoredKey:
        with closing(self._connect()) as conn, conn:
            conn.execute(
                f"INSERT INTO {KEYS_TABLE} VALUES (?, ?, ?, ?, ?) ON CONFLICT (subject) DO NOTHING",
                (*key, datetime.now(UTC).isoformat()),
            )
        found = self.of_subject(key.subject)
        assert found is not None  # only an erasure deletes, and it comes later
        return found

    def destroy(self, subject: str) -> list[str]:
        with closing(self._connect()) as conn, conn:
            rows = conn.execute(
                f"DELETE FROM {KEYS_TABLE} WHERE subject = ? RETURNING key_id", (subject,)
            ).fetchall()
        return [row[0] for row in rows]

    def other_master(self, master_id: str) -> str | None:
        with closing(self._connect()) as conn:
            found = conn.execute(
                f"SELECT master_id FROM {KEYS_TABLE} WHERE master_id <> ? LIMIT 1", (master_id,)
            ).fetchone()
        return found[0] if found else None


class PostgresKeyTable(KeyTable):
    def __init__(self, store: StoreURL, *, wait: float) -> None:
        self.store, self.wait = store, wait
        self._table = sql.Identifier(store.schema, KEYS_TABLE)
        # Few connections, opened when first needed: keys are looked up once per
        # customer and then cached (eventstore/personal.py).
        self._pool: ConnectionPool[Any] = ConnectionPool(
            store.dsn(),
            min_size=0,
            max_size=2,
            timeout=max(wait, 1.0),
            kwargs={"autocommit": True, "connect_timeout": max(int(wait), 2)},
            open=False,
        )
        self._opened = threading.Lock()

    def __reduce__(self) -> Any:
        # A rebuild's worker process opens connections of its own.
        return (_postgres_table, (self.store, self.wait))

    def _pool_open(self) -> ConnectionPool[Any]:
        with self._opened:
            if self._pool.closed:
                self._pool.open()
        return self._pool

    def create_table(self) -> None:
        with self._pool_open().connection() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key_id text PRIMARY KEY,"
                    " subject text NOT NULL UNIQUE, wrapped bytea NOT NULL,"
                    " master_id text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
                ).format(self._table)
            )

    def _one(self, where: str, value: str) -> StoredKey | None:
        query = sql.SQL(_SELECT + " WHERE {column} = %s").format(
            table=self._table, column=sql.Identifier(where)
        )
        with self._pool_open().connection() as conn:
            found = conn.execute(query, (value,)).fetchone()
        return StoredKey(found[0], found[1], bytes(found[2]), found[3]) if found else None

    def of_subject(self, subject: str) -> StoredKey | None:
        return self._one("subject", subject)

    def by_id(self, key_id: str) -> StoredKey | None:
        return self._one("key_id", key_id)

    def add(self, key: StoredKey) -> StoredKey:
        with self._pool_open().connection() as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (key_id, subject, wrapped, master_id) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (subject) DO NOTHING"
                ).format(self._table),
                tuple(key),
            )
        found = self.of_subject(key.subject)
        assert found is not None  # only an erasure deletes, and it comes later
        return found

    def destroy(self, subject: str) -> list[str]:
        with self._pool_open().connection() as conn:
            rows = conn.execute(
                sql.SQL("DELETE FROM {} WHERE subject = %s RETURNING key_id").format(self._table),
                (subject,),
            ).fetchall()
        return [row[0] for row in rows]

    def other_master(self, master_id: str) -> str | None:
        with self._pool_open().connection() as conn:
            found = conn.execute(
                sql.SQL("SELECT master_id FROM {} WHERE master_id <> %s LIMIT 1").format(
                    self._table
                ),
                (master_id,),
            ).fetchone()
        return found[0] if found else None

    def close(self) -> None:
        self._pool.close()


def _postgres_table(store: StoreURL, wait: float) -> PostgresKeyTable:
    return PostgresKeyTable(store, wait=wait)
