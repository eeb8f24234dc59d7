"""The write side's PostgreSQL recorder: group commit, and idempotency keys kept with events.

Every save appends under the events table's EXCLUSIVE lock, which keeps positions in
commit order (no reader of the log ever skips an event). Taken once per save, that lock
and the commit after it are the write path's ceiling. Here the saves that arrive
together in one process are written in ONE transaction under ONE acquisition of the lock
and acknowledged together once it has committed:

* the first caller to find no writer at work becomes the writer: it takes every pending
  save (up to ``MAX_BATCH``), writes them, wakes their callers, and hands over to a
  waiting caller when its own save is done;
* under the lock, each save's versions are checked against the log (and against the
  saves before it in the batch), and its idempotency key against the keys table: a save
  that conflicts is left out and fails alone with ``IntegrityError`` (a
  ``RecordConflictError``, which the service retries); its batch-mates are written;
* the remaining saves' events go in with one INSERT, their keys with another, in the
  same transaction; a save is entirely in or entirely out, and a checkout's cart, order
  and stock events, being one save, stay one unit;
* each event's hash link (``eventstore/links.py``) goes in with one more INSERT, sent
  with the keys' and the COMMIT: the events' INSERT returns the last link before them
  (read under the lock, so no other writer can move it), the links are hashed here;
* a batch is first written hopefully: the lock, the checks and the INSERT go in one
  round trip, and the COMMIT in a second. Only if a save does not fit (its versions
  moved, its key is stored, the primary key refuses a row) is that transaction rolled
  back and the batch written checked: lock and checks first, then the saves that fit
  (three round trips). A rolled-back try leaves its positions unused: the log's
  positions may skip, as they may after any failed write on PostgreSQL.

Only this recorder inserts keys, always under the lock, so the keys checked under it
cannot change before the transaction commits. The table's primary key on (aggregate,
version) still guards every insert: if anything slipped past the checks, the whole
batch fails and no caller is told otherwise.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Connection, Cursor, Pipeline
from psycopg.errors import UniqueViolation
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Identifier

from commands.batches import (
    Save,
    all_follow,
    current_queueing,
    followed_written,
    keys_free,
    uuid_of,
    versions_free,
    when_queued,
)
from commands.idempotency import SAVE_KWARG, KeyRecord, KeyStore
from domain.errors import Busy
from eventstore import links

# Saves written per transaction at most: enough to amortise the lock and the commit,
# few enough that one transaction stays short.
MAX_BATCH = 256
# How long a save may wait for its turn to be written before it gives up (seconds).
DEFAULT_QUEUE_TIMEOUT = 10.0
# Before taking a batch smaller than the last one, the writer lets the other threads run
# up to this many times (time.sleep(0) gives up the interpreter lock): callers whose
# saves were just acknowledged are then queued again with their next save. 16 threads
# appending: batches of 9.5 saves on average without, 15 with (4,150 -> 4,900-5,100
# appends/s). A writer alone, or with as many saves as last time, never waits.
GATHER_YIELDS = 3


__all__ = ["GroupCommitRecorder", "when_queued"]

_Writer = Callable[[Connection[DictRow], Pipeline, list[Save]], None]


def _rendered(statement: Any) -> Any:
    return statement.as_bytes(None) if isinstance(statement, Composable) else statement


class _Undo(Exception):
    """The hopeful write found a save that does not fit: roll back, write checked."""


class GroupCommitRecorder(PostgresApplicationRecorder, KeyStore):
    """PostgreSQL application recorder writing concurrent saves together (module doc)."""

    queue_timeout = DEFAULT_QUEUE_TIMEOUT

    def __init__(self, datastore: PostgresDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        if datastore.enable_db_functions:
            # That insert path skips the batch writer: keys would silently not be kept.
            raise ValueError("eventshop's recorder needs POSTGRES_ENABLE_DB_FUNCTIONS off")
        schema = Identifier(datastore.schema)
        events = SQL("{}.{}").format(schema, Identifier(events_table_name))
        prefix = events_table_name.removesuffix("_events")
        self.keys_table_name = f"{prefix}_idempotency_keys"
        keys = SQL("{}.{}").format(schema, Identifier(self.keys_table_name))
        links_table = SQL("{}.{}").format(schema, Identifier(links.LINKS_TABLE))
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {keys} ("
                    "caller text NOT NULL, key text NOT NULL, fingerprint text NOT NULL, "
                    "aggregate_id uuid NOT NULL, aggregate_version bigint NOT NULL, "
                    "position bigint NOT NULL, created_at timestamptz NOT NULL, "
                    "PRIMARY KEY (caller, key))"
                ).format(keys=keys),
                SQL("CREATE INDEX IF NOT EXISTS {index} ON {keys} (created_at)").format(
                    index=Identifier(f"{self.keys_table_name}_created_at"), keys=keys
                ),
                SQL(
                    "CREATE TABLE IF NOT EXISTS {links} (position bigint PRIMARY KEY,"
                    " link bytea NOT NULL)"
                ).format(links=links_table),
            ]
        )
        # One index probe per aggregate (max() on the primary key's prefix), however
        # long its history: a hot stock level must not cost a scan of its events.
        self._versions = SQL(
            "SELECT ids.id AS originator_id, (SELECT max(originator_version) FROM {events} e"
            " WHERE e.originator_id = ids.id) AS version"
            " FROM unnest(%s::{id_type}[]) AS ids(id)"
        ).format(events=events, id_type=Identifier(datastore.originator_id_type))
        self._insert = SQL(
            "INSERT INTO {events} (originator_id, originator_version, topic, state)"
            " SELECT originator_id, originator_version, topic, state"
            # Four arrays of plain types: psycopg dumps them in C, where an array of the
            # composite type is escaped field by field in Python.
            " FROM unnest(%s::{id_type}[], %s::bigint[], %s::text[], %s::bytea[])"
            " AS rows(originator_id, originator_version, topic, state)"
            " RETURNING originator_id, originator_version, notification_id,"
            # The chain's last link before these events (one InitPlan, not one per row).
            " (SELECT link FROM {links} ORDER BY position DESC LIMIT 1) AS previous_link"
        ).format(
            events=events,
            id_type=Identifier(datastore.originator_id_type),
            links=links_table,
        )
        self._notify = SQL("NOTIFY {0}").format(Identifier(self.channel_name))
        self._insert_links = SQL(
            "INSERT INTO {links} (position, link) SELECT * FROM unnest(%s::bigint[], %s::bytea[])"
        ).format(links=links_table)
        self._live_keys = SQL(
            "SELECT caller, key, created_at FROM {keys}"
            " WHERE (caller, key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
        ).format(keys=keys)
        self._delete_keys = SQL(
            "DELETE FROM {keys}"
            " WHERE (caller, key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
        ).format(keys=keys)
        self._insert_keys = SQL(
            "INSERT INTO {keys} SELECT * FROM unnest("
            "%s::text[], %s::text[], %s::text[], %s::uuid[], %s::bigint[], %s::bigint[],"
            " %s::timestamptz[])"
        ).format(keys=keys)
        self._select_key = SQL(
            "SELECT caller, key, fingerprint, aggregate_id, aggregate_version, position,"
            " created_at FROM {keys} WHERE caller = %s AND key = %s"
        ).format(keys=keys)
        self._purge = SQL("DELETE FROM {keys} WHERE created_at < %s").format(keys=keys)
        # Rendered once: a composed statement is rendered again at every execute.
        self._lock_statements = [_rendered(statement) for statement in self.lock_table_statements]
        for name in ("_versions", "_insert", "_insert_links", "_live_keys", "_delete_keys"):
            setattr(self, name, _rendered(getattr(self, name)))
        for name in ("_insert_keys", "_select_key", "_purge", "_notify"):
            setattr(self, name, _rendered(getattr(self, name)))
        self._pending: deque[Save] = deque()
        self._lock = threading.Lock()  # guards the queue and the writer's role
        self._writing = False
        self._last_batch = 1  # saves in the last batch written

    # --- saving ------------------------------------------------------------------------------

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Write these events (and the save's key) with whatever else is pending; return
        their positions once the transaction that holds them has committed."""
        if not stored_events:
            return []
        queueing = current_queueing()
        save = Save(stored_events, kwargs.get(SAVE_KWARG))
        if queueing is not None:
            save.after = [a for a in queueing.after if isinstance(a, Save)]
        deadline = time.monotonic() + self.queue_timeout
        with self._lock:
            self._pending.append(save)
            if not self._writing:
                self._writing = save.writer = True
        if queueing is not None:
            queueing.on_queued(save)
        if not save.writer:
            self._await(save, deadline)
        if not save.done:  # made the writer
            self._write_until_done(save)
        if save.error is not None:
            raise save.error
        return save.ids

    def _await(self, save: Save, deadline: float) -> None:
        """Until ``save`` is written or its caller is made the writer. Each caller waits
        on its own event, so that a batch wakes its callers alone, not every waiter."""
        while not save.woken.wait(None if save.taken else max(0.0, deadline - time.monotonic())):
            with self._lock:
                if save.taken or save.writer:
                    # Being written: that transaction is bounded by the lock and
                    # statement timeouts, so its outcome is awaited, not abandoned.
                    continue
                self._pending.remove(save)
                save.error = Busy(
                    f"waited {self.queue_timeout:g}s for a turn to write; the store is busy"
                )
                raise save.error

    def _write_until_done(self, own: Save) -> None:
        """Write batches of pending saves until ``own`` is written; then hand over to the
        first caller still waiting, if any."""
        try:
            while not own.done:
                for _ in range(GATHER_YIELDS):
                    if len(self._pending) >= self._last_batch:
                        break
                    time.sleep(0)
                with self._lock:
                    batch = [
                        self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))
                    ]
                    for save in batch:
                        save.taken = True
                    self._last_batch = len(batch)
                try:
                    self._write(batch)
                finally:
                    for save in batch:
                        save.done = True
                        save.woken.set()
        finally:
            with self._lock:
                if self._pending:
                    successor = self._pending[0]
                    successor.writer = True
                    successor.woken.set()
                else:
                    self._writing = False

    def _write(self, batch: list[Save]) -> None:
        """Write the batch in one transaction, pipelined: two round trips when no save
        conflicts (the common case), else three, after a first try rolled back."""
        try:
            if not self._in_transaction(self._write_hopeful, batch):
                self._in_transaction(self._write_checked, batch)
        except BaseException as error:
            for save in batch:
                if save.error is None:
                    save.ids = []
                    save.error = error
            if not isinstance(error, Exception):
                raise

    def _in_transaction(self, write: _Writer, batch: list[Save]) -> bool:
        """Run ``write`` in a pipelined transaction; False if it asked to be undone."""
        failed: Exception | None = None
        with self.datastore.get_connection() as conn, conn.pipeline() as pipeline:
            try:
                with conn.transaction():  # rolled back by whatever ``write`` raises
                    write(conn, pipeline, batch)
            except Exception as error:
                # Raised once the pipeline has closed (psycopg warns otherwise).
                failed = error
        if isinstance(failed, (_Undo, UniqueViolation)):
            return False
        if failed is not None:
            raise failed
        return True

    def _write_hopeful(
        self, conn: Connection[DictRow], pipeline: Pipeline, batch: list[Save]
    ) -> None:
        """Lock, check and insert in one round trip, on the hope that every save fits; if
        one does not (its versions moved, its key is stored, a save it follows failed),
        raise ``_Undo``, and the transaction is rolled back for ``_write_checked``."""
        if any(before.error is not None for save in batch for before in save.after):
            raise _Undo
        ids = list({uuid_of(event.originator_id) for save in batch for event in save.events})
        keyed = [save.key for save in batch if save.key is not None]
        with (
            conn.cursor() as lock,
            conn.cursor() as versions,
            conn.cursor() as keys,
            conn.cursor() as insert,
        ):
            for statement in self._lock_statements:
                lock.execute(statement, prepare=True)
            versions.execute(self._versions, (ids,), prepare=True)
            if keyed:
                names = ([k.caller for k in keyed], [k.key for k in keyed])
                keys.execute(self._live_keys, names, prepare=True)
            self._insert_rows(insert, batch)
            pipeline.sync()
            latest = {row["originator_id"]: row["version"] or 0 for row in versions.fetchall()}
            if (keyed and keys.fetchall()) or not all_follow(batch, latest):
                raise _Undo
            returned = insert.fetchall()
        with conn.cursor() as write:
            self._finish(write, batch, returned)

    def _write_checked(
        self, conn: Connection[DictRow], pipeline: Pipeline, batch: list[Save]
    ) -> None:
        """Lock and check first; insert the saves that fit; the others fail alone."""
        ids = list({uuid_of(event.originator_id) for save in batch for event in save.events})
        keyed = [save.key for save in batch if save.key is not None]
        with conn.cursor() as lock, conn.cursor() as versions, conn.cursor() as keys:
            for statement in self._lock_statements:
                lock.execute(statement, prepare=True)
            versions.execute(self._versions, (ids,), prepare=True)
            if keyed:
                names = ([k.caller for k in keyed], [k.key for k in keyed])
                keys.execute(self._live_keys, names, prepare=True)
            pipeline.sync()
            latest = {row["originator_id"]: row["version"] or 0 for row in versions.fetchall()}
            stored = (
                {(r["caller"], r["key"]): r["created_at"] for r in keys.fetchall()} if keyed else {}
            )
        accepted, expired = keys_free(versions_free(batch, latest), stored)
        accepted = followed_written(accepted)
        if not accepted:
            return
        with conn.cursor() as write, conn.cursor() as insert:
            if expired:
                write.execute(self._delete_keys, ([c for c, _ in expired], [k for _, k in expired]))
            self._insert_rows(insert, accepted)
            pipeline.sync()
            self._finish(write, accepted, insert.fetchall())

    def _insert_rows(self, insert: Cursor[DictRow], saves: list[Save]) -> None:
        events = [e for save in saves for e in save.events]
        columns = (
            [e.originator_id for e in events],
            [e.originator_version for e in events],
            [e.topic for e in events],
            [e.state for e in events],
        )
        insert.execute(self._insert, columns, prepare=True, binary=True)

    def _finish(self, write: Cursor[DictRow], saves: list[Save], returned: list[DictRow]) -> None:
        """Give the saves their positions; queue the NOTIFY, their keys and the events'
        links, to be sent with the COMMIT."""
        for save in saves:
            save.after = []
        position = {
            (row["originator_id"], row["originator_version"]): row["notification_id"]
            for row in returned
        }
        for save in saves:
            save.ids = [
                position[(uuid_of(e.originator_id), e.originator_version)] for e in save.events
            ]
        write.execute(self._notify, prepare=True)
        self._insert_keys_of(write, saves)
        self._insert_links_of(write, saves, returned[0]["previous_link"] if returned else None)

    def _insert_links_of(self, write: Cursor[DictRow], saves: list[Save], previous: Any) -> None:
        in_order = sorted(
            ((i, e) for save in saves for i, e in zip(save.ids, save.events, strict=True)),
            key=lambda pair: pair[0],
        )
        chained = links.chain(previous, in_order)
        write.execute(self._insert_links, chained, prepare=True, binary=True)

    def _insert_keys_of(self, curs: Cursor[DictRow], saves: list[Save]) -> None:
        keys = [(save.key, save.ids[-1]) for save in saves if save.key is not None]
        if not keys:
            return
        curs.execute(
            self._insert_keys,
            (
                [k.caller for k, _ in keys],
                [k.key for k, _ in keys],
                [k.fingerprint for k, _ in keys],
                [k.aggregate_id for k, _ in keys],
                [k.aggregate_version for k, _ in keys],
                [position for _, position in keys],
                [k.created_at for k, _ in keys],
            ),
        )

    # --- keys ----------------------------------------------------------------------------------

    def select_key(self, caller: str, key: str) -> KeyRecord | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._select_key, (caller, key))
            row = curs.fetchone()
        if row is None:
            return None
        return KeyRecord.from_row(row)

    def purge_keys(self, before: datetime) -> int:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._purge, (before,))
            return int(curs.rowcount)
