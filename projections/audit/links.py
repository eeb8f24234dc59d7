"""Reading the links written with the events, and linking a log written before them.

The write side writes each event's link with it (``eventstore/links.py``). A log kept
before links existed gets them once, from :func:`link_existing`: the chain is computed
over the events as they are now and compared with the chain heads that were recorded
(``audit_checkpoints``), which says how much of what is linked was anchored then.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg import sql

from eventstore.links import GENESIS, LINKS_TABLE, link
from projections.audit.checkpoints import CheckpointTable

Link = tuple[int, bytes]


class LinkTable(Protocol):
    """The links kept beside the log, by position."""

    def between(self, after: int, upto: int | None, limit: int) -> list[Link]:
        """The links after ``after`` up to ``upto``, in order, at most ``limit``."""
        ...

    def last(self) -> Link | None: ...

    def at_or_before(self, position: int) -> Link | None: ...

    def count(self, upto: int) -> int:
        """How many links there are at or before ``upto``."""
        ...

    def insert(self, links: Sequence[Link]) -> None:
        """Add links (only :func:`link_existing` does: the writers add their own)."""
        ...


def link_table(recorder: ApplicationRecorder) -> LinkTable:
    """The links table beside the log ``recorder`` reads."""
    if isinstance(recorder, PostgresApplicationRecorder):
        return _PostgresLinks(recorder)
    if isinstance(recorder, SQLiteApplicationRecorder):
        return _SQLiteLinks(recorder)
    return _MemoryLinks(recorder)


class _PostgresLinks:
    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self.datastore = recorder.datastore
        self.table = sql.Identifier(self.datastore.schema, LINKS_TABLE)

    def _select(self, tail: str, params: Sequence[Any]) -> list[Link]:
        query = sql.SQL("SELECT position, link FROM {} " + tail).format(self.table)
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, params)
            return [(r["position"], bytes(r["link"])) for r in cursor.fetchall()]

    def between(self, after: int, upto: int | None, limit: int) -> list[Link]:
        if upto is None:
            return self._select("WHERE position > %s ORDER BY position LIMIT %s", (after, limit))
        return self._select(
            "WHERE position > %s AND position <= %s ORDER BY position LIMIT %s",
            (after, upto, limit),
        )

    def last(self) -> Link | None:
        rows = self._select("ORDER BY position DESC LIMIT 1", ())
        return rows[0] if rows else None

    def at_or_before(self, position: int) -> Link | None:
        rows = self._select("WHERE position <= %s ORDER BY position DESC LIMIT 1", (position,))
        return rows[0] if rows else None

    def count(self, upto: int) -> int:
        query = sql.SQL("SELECT count(*) AS n FROM {} WHERE position <= %s").format(self.table)
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, (upto,))
            row = cursor.fetchone()
            return int(row["n"]) if row else 0

    def insert(self, links: Sequence[Link]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                sql.SQL(
                    "INSERT INTO {} (position, link)"
                    " SELECT * FROM unnest(%s::bigint[], %s::bytea[])"
                ).format(self.table),
                ([p for p, _ in links], [h for _, h in links]),
            )


_SQLITE_MAX = 2**63 - 1


class _SQLiteLinks:
    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self.datastore = recorder.datastore

    def _select(self, tail: str, params: Sequence[Any]) -> list[Link]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT position, link FROM {LINKS_TABLE} {tail}", params)
            return [(r[0], bytes(r[1])) for r in cursor.fetchall()]

    def between(self, after: int, upto: int | None, limit: int) -> list[Link]:
        if after >= _SQLITE_MAX:
            return []
        upto = _SQLITE_MAX if upto is None else min(upto, _SQLITE_MAX)
        return self._select(
            "WHERE position > ? AND position <= ? ORDER BY position LIMIT ?", (after, upto, limit)
        )

    def last(self) -> Link | None:
        rows = self._select("ORDER BY position DESC LIMIT 1", ())
        return rows[0] if rows else None

    def at_or_before(self, position: int) -> Link | None:
        rows = self._select(
            "WHERE position <= ? ORDER BY position DESC LIMIT 1", (min(position, _SQLITE_MAX),)
        )
        return rows[0] if rows else None

    def count(self, upto: int) -> int:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {LINKS_TABLE} WHERE position <= ?",
                (min(upto, _SQLITE_MAX),),
            )
            return int(cursor.fetchone()[0])

    def insert(self, links: Sequence[Link]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(f"INSERT INTO {LINKS_TABLE} (position, link) VALUES (?, ?)", links)


class _MemoryLinks:
    """The in-memory recorder keeps its links in a dict (``links``), written with events."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.kept: dict[int, bytes] = getattr(recorder, "links", {})

    def between(self, after: int, upto: int | None, limit: int) -> list[Link]:
        found = sorted(p for p in self.kept if p > after and (upto is None or p <= upto))
        return [(p, self.kept[p]) for p in found[:limit]]

    def last(self) -> Link | None:
        return (top := max(self.kept), self.kept[top]) if self.kept else None

    def at_or_before(self, position: int) -> Link | None:
        below = [p for p in self.kept if p <= position]
        return (top := max(below), self.kept[top]) if below else None

    def count(self, upto: int) -> int:
        return sum(1 for p in self.kept if p <= upto)

    def insert(self, links: Sequence[Link]) -> None:
        self.kept.update(links)


# --- linking a log written before links ----------------------------------------------


@dataclass(frozen=True)
class LinkReport:
    """What :func:`link_existing` did: which positions it linked, and how many of them a
    recorded chain head vouched for."""

    first: int
    last: int
    events: int
    anchored_upto: int
    checkpoints: int
    mismatch_at: int | None

    @property
    def detail(self) -> str:
        linked = f"linked {self.events} events at positions {self.first}-{self.last}"
        if self.anchored_upto >= self.first:
            anchored = (
                f"positions {self.first}-{self.anchored_upto} match the chain heads recorded"
                f" at {self.checkpoints} checkpoint(s)"
            )
        else:
            anchored = "no recorded chain head covers any of them"
        tail = ""
        if self.mismatch_at is not None:
            tail = (
                f"; the log differs from the head recorded at position {self.mismatch_at}:"
                f" an event after {self.anchored_upto} and at or before {self.mismatch_at}"
                " changed before links were written"
            )
        if self.anchored_upto < self.last:
            tail += (
                f"; positions {max(self.anchored_upto + 1, self.first)}-{self.last} were linked"
                " as found, anchored by nothing"
            )
        return f"{linked}; {anchored}{tail}"


def link_existing(
    events: Iterator[Notification], links: LinkTable, checkpoints: CheckpointTable, batch: int
) -> LinkReport | None:
    """Write the links of ``events`` (the log after its last link) once; None if none.

    Run by the composition root at start-up, under the migration lock, before this
    process writes: writers chain on from the last link, so they need it to be there.
    """
    start = links.last()
    after, head = start if start is not None else (0, GENESIS)
    first = last = count = matched = 0
    anchored, mismatch = after, None
    expected = iter(checkpoints.between(after, 2**63 - 1, 1_000_000))
    pending = next(expected, None)
    new: list[Link] = []
    for stored in events:
        while pending is not None and mismatch is None and pending.position < stored.id:
            mismatch, anchored, matched = _check(pending, last, head, mismatch, anchored, matched)
            pending = next(expected, None)
        head = link(
            head,
            stored.id,
            stored.originator_id,
            stored.originator_version,
            stored.topic,
            stored.state,
        )
        first, last, count = first or stored.id, stored.id, count + 1
        new.append((stored.id, head))
        if len(new) == batch:
            links.insert(new)
            new = []
    while pending is not None and mismatch is None and count:
        mismatch, anchored, matched = _check(pending, last, head, mismatch, anchored, matched)
        pending = next(expected, None)
    if new:
        links.insert(new)
    if not count:
        return None
    return LinkReport(first, last, count, anchored, matched, mismatch)


def _check(
    expected: Any, last: int, head: bytes, mismatch: int | None, anchored: int, matched: int
) -> tuple[int | None, int, int]:
    # A recorded head names the chain up to its position: the events before it now.
    if expected.head == head:
        return None, max(anchored, last), matched + 1
    return expected.position, anchored, matched
