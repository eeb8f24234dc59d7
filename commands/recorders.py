"""Which recorder the write side writes with, per store (chosen the library's way).

Both keep idempotency keys with the events (commands/idempotency.py). On PostgreSQL,
concurrent saves are written in one transaction (commands/group_commit.py), and every
call waits for the database once, not as often as the library would try it again
(eventstore/postgres.py).
"""

from __future__ import annotations

from eventsourcing.utils import get_topic

from commands.group_commit import GroupCommitRecorder
from commands.idempotency import SQLiteKeyRecorder
from eventstore.postgres import BoundedLog
from eventstore.url import POSTGRES_MODULE


class PostgresRecorder(BoundedLog, GroupCommitRecorder):
    """The write side's PostgreSQL recorder: group commit, with bounded waits."""


RECORDER_TOPICS = {
    "eventsourcing.sqlite": get_topic(SQLiteKeyRecorder),
    POSTGRES_MODULE: get_topic(PostgresRecorder),
}
"""The recorder of each ``PERSISTENCE_MODULE`` (``APPLICATION_RECORDER_TOPIC``)."""
