"""What auditors ask of the event store: the log, histories, time travel, proof of integrity.

The :class:`Auditor` reads the stored events only (never the projections), through the
log's recorder and mapper: ``select_notifications`` in bounded batches, so that even the
whole log is read in constant memory. It writes only receipts (``receipts.py``), the
links of a log written before links (``links.py``, once, at start-up) and, on request,
chain-head checkpoints; verifying writes nothing. It never creates anything:
``eventshop.bootstrap.open_auditor`` does, once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import takewhile
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.application import project_aggregate
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import (
    ApplicationRecorder,
    EventStore,
    Mapper,
    MapperDeserialisationError,
    Notification,
)
from eventsourcing.utils import get_topic
from pydantic_core import to_jsonable_python

from domain.cart import Cart
from domain.errors import InvalidValue, NotFound
from domain.order import Order
from domain.product import Product
from domain.stock import Stock
from eventstore.causes import Cause, CausedMapper
from projections.audit.aggregate_events import aggregate_events
from projections.audit.chain import (
    GENESIS,
    Checkpoint,
    Digest,
    chain_head,
    chain_link,
    digest_bytes,
    export_record,
)
from projections.audit.checkpoints import checkpoint_table
from projections.audit.links import LinkReport, link_existing, link_table
from projections.audit.proofs import EventNotFound, InclusionProof, TreeHeads, covering, inclusion
from projections.audit.receipts import Receipt, Signer, receipt_table
from projections.audit.verification import Progress, Verification, check, merged
from projections.engine.pagination import DEFAULT_LIMIT

CHECKPOINT_EVERY = 1000
"""Keep a chain head after every that many events."""
BATCH = 5000
"""Stored events read per query when streaming the log."""
AGGREGATES: tuple[type[Aggregate], ...] = (Product, Stock, Cart, Order)
# Attributes every event has; the rest of an event's state is its data.
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})

Item = dict[str, Any]


# --- what auditors see ------------------------------------------------------------


@dataclass
class Page:
    """A page of the log; ``next_cursor`` (a position) says where the next one starts."""

    items: list[Item]
    next_cursor: str | None


@dataclass(frozen=True)
class LogFilter:
    """Which events of the log to list; ``since`` is inclusive, ``before`` exclusive."""

    type: str | None = None
    aggregate_id: UUID | None = None
    since: datetime | None = None
    before: datetime | None = None
    topics: tuple[str, ...] = field(default=(), compare=False)

    def admits(self, item: Item) -> bool:
        if self.since is None and self.before is None:
            return True
        stamp = item["timestamp"]
        if stamp is None:
            return False
        return (self.since is None or stamp >= self.since) and (
            self.before is None or stamp < self.before
        )


def render(aggregate: Aggregate) -> Item:
    """An aggregate as plain JSON: its identity and version, and its public attributes."""
    return to_jsonable_python(
        {
            "id": aggregate.id,
            "type": type(aggregate).__name__,
            "version": aggregate.version,
            "created_on": aggregate.created_on,
            "modified_on": aggregate.modified_on,
            "state": {k: v for k, v in vars(aggregate).items() if not k.startswith("_")},
        }
    )


def event_types() -> dict[str, str]:
    """Each event type of the shop (``Cart.ItemAdded``) and its stored topic."""
    return {
        event.__qualname__: get_topic(event)
        for aggregate in AGGREGATES
        for event in vars(aggregate).values()
        if isinstance(event, type) and issubclass(event, Aggregate.Event)
    }


def _short(qualname: str) -> str:
    return qualname.rpartition(".")[2]


def _utc(moment: datetime) -> datetime:
    """A time zone-aware moment; a naive one is taken to be UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- the auditor ------------------------------------------------------------------


class Auditor:
    """Read-only questions about the shop's event log, and its tamper evidence.

    ``checkpoint_every``: a chain head is kept after every that many events.
    ``batch``: how many stored events are read per query when streaming.
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        checkpoint_every: int = CHECKPOINT_EVERY,
        batch: int = BATCH,
    ) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.events_store = EventStore(mapper, recorder)
        self.checkpoint_every = checkpoint_every
        self.batch = batch
        self.checkpoints = checkpoint_table(recorder)
        self.links = link_table(recorder)
        self.receipts = receipt_table(recorder)
        self.trees = TreeHeads(self.links, batch)

    def create_tables(self) -> None:
        """Create the checkpoints and receipts tables if missing: at migration, under the
        migration lock (``eventshop.bootstrap.open_auditor``); nothing else here runs DDL."""
        self.checkpoints.create_table()
        self.receipts.create_table()

    def head(self) -> int:
        """The position of the last event in the log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    # --- reading the log --------------------------------------------------------

    def stream(
        self,
        after: int = 0,
        until: int | None = None,
        topics: Sequence[str] = (),
        batch: int | None = None,
        read_ahead: bool = True,
    ) -> Iterator[Notification]:
        """The stored events after ``after`` up to ``until``, in log order, batch by batch.

        With ``read_ahead`` the next batch is read while this one is used: the reading
        thread waits on the database without holding the GIL, so reading and hashing
        overlap. At most two batches are held at once.
        """
        size = batch or self.batch

        def fetch(start: int) -> Sequence[Notification]:
            return self.recorder.select_notifications(
                start, size, stop=until, topics=list(topics), inclusive_of_start=False
            )

        if not read_ahead:
            while rows := fetch(after):
                yield from rows
                if len(rows) < size:
                    return
                after = rows[-1].id
            return
        with ThreadPoolExecutor(1, thread_name_prefix="audit-read-ahead") as reader:
            ahead: Future[Sequence[Notification]] | None = reader.submit(fetch, after)
            while ahead is not None:
                rows = ahead.result()
                ahead = reader.submit(fetch, rows[-1].id) if len(rows) == size else None
                yield from rows

    def log_filter(
        self,
        type: str | None = None,
        aggregate_id: UUID | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
    ) -> LogFilter:
        """A filter of the log; ``type`` is ``Cart.ItemAdded`` or just ``ItemAdded``."""
        topics: tuple[str, ...] = ()
        if type:
            topics = tuple(t for name, t in event_types().items() if type in (name, _short(name)))
            if not topics:
                known = ", ".join(sorted(event_types()))
                raise InvalidValue("type", f"unknown event type {type!r}; the types are: {known}")
        return LogFilter(
            type,
            aggregate_id,
            _utc(since) if since else None,
            _utc(before) if before else None,
            topics,
        )

    def events(
        self,
        after: int = 0,
        limit: int = DEFAULT_LIMIT,
        where: LogFilter | None = None,
        scan: int = 20_000,
    ) -> Page:
        """A page of the log after position ``after``.

        Time filters are applied to decoded events, so one page reads at most ``scan``
        stored events; ``next_cursor`` then says where to go on (the page may be short).
        """
        where = where or LogFilter()
        if where.aggregate_id is not None:
            source: Iterator[Notification] = self._aggregate_stream(where.aggregate_id, after)
        else:
            # Without time filters every row read is listed: read no more than a page.
            timed = where.since is not None or where.before is not None
            size = self.batch if timed else min(self.batch, limit + 1)
            source = self.stream(after, topics=where.topics, batch=size, read_ahead=False)
        items: list[Item] = []
        scanned, last = 0, after
        for stored in source:
            scanned, last = scanned + 1, stored.id
            if where.topics and stored.topic not in where.topics:
                continue
            item = self.item(stored)
            if where.admits(item):
                items.append(item)
            if len(items) == limit or scanned == scan:
                return Page(items, str(last) if last < self.head() else None)
        return Page(items, None)

    def history(self, aggregate_id: UUID) -> list[Item]:
        """Every event of one aggregate, in log order; NotFound if it has none."""
        items = [self.item(stored) for stored in self._aggregate_stream(aggregate_id, 0)]
        if not items:
            raise NotFound(f"Aggregate {aggregate_id} does not exist")
        return items

    def exists(self, aggregate_id: UUID) -> bool:
        """Whether the aggregate has any event in the log."""
        return bool(aggregate_events(self.recorder, aggregate_id, 0, 1))

    def item(self, stored: Notification) -> Item:
        """A stored event as auditors see it: where, what, when, the data, and who."""
        qualname = stored.topic.partition(":")[2]
        event, cause = self._decode(stored)
        state = vars(event) if event is not None else {}
        return {
            "position": stored.id,
            "aggregate_id": str(stored.originator_id),
            "aggregate_type": qualname.partition(".")[0],
            "version": stored.originator_version,
            "type": qualname,
            "timestamp": state.get("timestamp"),
            "data": (
                to_jsonable_python({k: v for k, v in state.items() if k not in _ENVELOPE})
                if event is not None
                else None
            ),
            "metadata": cause.as_dict() if cause is not None else None,
        }

    # --- time travel ---------------------------------------------------------------

    def state(
        self, aggregate_id: UUID, version: int | None = None, at: datetime | None = None
    ) -> Item:
        """The aggregate as it was at ``version``, or at time ``at`` (else as it is now).

        Replayed from the stored events alone: snapshots are not covered by the hash
        chain, so the answer rests only on what ``verify`` can vouch for.
        """
        if version is not None and at is not None:
            raise InvalidValue("version", "give either a version or a time, not both")
        events = list(self.events_store.get(aggregate_id))
        if not events:
            raise NotFound(f"Aggregate {aggregate_id} does not exist")
        if version is not None:
            if not 1 <= version <= len(events):
                raise NotFound(
                    f"Aggregate {aggregate_id} has versions 1 to {len(events)}, not {version}"
                )
            events = events[:version]
        elif at is not None:
            moment = _utc(at)
            events = list(takewhile(lambda e: e.timestamp <= moment, events))  # type: ignore[attr-defined]
            if not events:
                raise NotFound(
                    f"Aggregate {aggregate_id} did not exist yet at {moment.isoformat()}"
                )
        aggregate = project_aggregate(None, events)
        assert aggregate is not None  # there was at least one event
        return render(aggregate)

    # --- export ------------------------------------------------------------------

    def export(self, after: int = 0, until: int | None = None) -> Iterator[str]:
        """The log as NDJSON lines, streamed: each event's item plus its exact stored bytes.

        ``topic``, ``state`` (base64) and ``link`` let :func:`.chain.read_export_links`
        rebuild the stored events and their links, so that an export can be verified
        against receipts away from the database.
        """
        for _, stored, stored_link in self._rows(after, until):
            if stored is None:
                continue  # a link without its event: verify names it, the export cannot
            record = export_record(self.item(stored), stored, stored_link)
            yield json.dumps(to_jsonable_python(record), separators=(",", ":")) + "\n"

    # --- tamper evidence ------------------------------------------------------------

    def digest(self, upto: int | None = None) -> Digest:
        """The chain head over every event up to ``upto`` (default: the whole log)."""
        upto = self._upto(upto)
        count, head = chain_head(self.stream(0, upto))
        return Digest(upto, count, head.hex())

    def checkpoint(self) -> Checkpoint | None:
        """Extend the kept chain heads to the end of the log; the newest one, if any.

        Continues from the last checkpoint without rereading what it covers (``verify``
        is what rereads everything). Safe to run from several processes at once.
        """
        last = self.checkpoints.last()
        head, count, after = (last.head, last.events, last.position) if last else (GENESIS, 0, 0)
        new: list[Checkpoint] = []
        for stored in self.stream(after):
            head, count = chain_link(head, stored), count + 1
            if count % self.checkpoint_every == 0:
                new.append(Checkpoint(stored.id, count, head))
                if len(new) == 100:
                    self.checkpoints.save(new)
                    new = []
        self.checkpoints.save(new)
        return self.checkpoints.last()

    def verify(
        self,
        keys: Mapping[str, Ed25519PublicKey],
        digest: str | None = None,
        upto: int | None = None,
        after: int = 0,
        receipts: Sequence[Receipt] | None = None,
    ) -> Verification:
        """Recompute every link up to ``upto`` and check it against the stored links, the
        receipts (the store's, or those given) signed by ``keys``, and ``digest`` (the head
        at ``upto``). See :mod:`.verification`; it writes nothing."""
        *_, result = self.verify_steps(keys, digest, upto, after, receipts)
        assert isinstance(result, Verification)
        return result

    def verify_steps(
        self,
        keys: Mapping[str, Ed25519PublicKey],
        digest: str | None = None,
        upto: int | None = None,
        after: int = 0,
        receipts: Sequence[Receipt] | None = None,
    ) -> Iterator[Progress | Verification]:
        """:meth:`verify` step by step: progress every few thousand events, then the result."""
        if upto is not None and upto < 0:
            raise InvalidValue("upto", "upto must not be negative")
        if after < 0:
            raise InvalidValue("from", "from must not be negative")
        given = (self.head() if upto is None else upto, digest_bytes(digest)) if digest else None
        # From the stored link at or before ``after``, taken as given.
        begin = (self.links.at_or_before(after) if after else None) or (0, GENESIS)
        anchors = list(receipts) if receipts is not None else self.all_receipts()
        anchors = [r for r in anchors if upto is None or r.position <= upto]
        rows = self._rows(begin[0], upto)
        yield from check(rows, anchors, keys, start=begin, digest=given, every=self.batch)

    def _rows(self, after: int, upto: int | None) -> Iterator[tuple[int, Any, bytes | None]]:
        def links() -> Iterator[tuple[int, bytes]]:
            start = after
            while batch := self.links.between(start, upto, self.batch):
                yield from batch
                if len(batch) < self.batch:
                    return
                start = batch[-1][0]

        return merged(self.stream(after, upto), links())

    # --- receipts and links ---------------------------------------------------------

    def issue_receipt(self, signer: Signer) -> Receipt | None:
        """Sign the last link and the Merkle tree up to it now (None if the log is empty);
        an existing receipt at that position is kept and returned instead."""
        last = self.links.last()
        if last is None:
            return None
        return self.receipts.add(signer.sign(*last, tree=self.trees.upto(last[0])))

    def proof(self, position: int, receipt_at: int | None = None) -> InclusionProof:
        """The inclusion proof of the event at ``position`` in the log the receipt at
        ``receipt_at`` (default: the newest) signed (:mod:`.proofs`)."""
        found = self.recorder.select_notifications(position, 1, stop=position) if position else []
        if not found or found[0].id != position:
            raise EventNotFound(f"there is no event at position {position}")
        receipt = covering(self.receipts, position, receipt_at)
        path = inclusion(self.links, position, receipt.position, self.batch)
        record = to_jsonable_python(export_record(self.item(found[0]), found[0], path.link))
        return InclusionProof(
            record,
            path.previous_link,
            path.leaf_index,
            path.tree_size,
            path.path,
            path.root,
            receipt,
        )

    def all_receipts(self) -> list[Receipt]:
        found: list[Receipt] = []
        while batch := self.receipts.after(found[-1].position if found else 0, 1000):
            found.extend(batch)
        return found

    def link_existing(self) -> LinkReport | None:
        """Write the links of the events past the last link, once (``links.py``)."""
        last = self.links.last()
        if (last[0] if last else 0) >= self.head():
            return None
        return link_existing(
            self.stream(last[0] if last else 0), self.links, self.checkpoints, self.batch
        )

    # --- helpers -------------------------------------------------------------------

    def _aggregate_stream(self, aggregate_id: UUID, after: int) -> Iterator[Notification]:
        while True:
            batch = aggregate_events(self.recorder, aggregate_id, after, self.batch)
            yield from batch
            if len(batch) < self.batch:
                return
            after = batch[-1].id

    def _decode(self, stored: Notification) -> tuple[DomainEventProtocol[Any] | None, Cause | None]:
        mapper = self.mapper
        try:
            if isinstance(mapper, CausedMapper):
                return mapper.decode(stored)
            return mapper.to_domain_event(stored), None
        except (MapperDeserialisationError, ValueError, TypeError, KeyError):
            # An undecodable (perhaps tampered) event is still listed, without its data.
            return None, None

    def _upto(self, upto: int | None) -> int:
        head = self.head()
        if upto is None:
            return head
        if not 0 <= upto <= head:
            raise InvalidValue("upto", f"upto must be between 0 and the log's head, {head}")
        return upto
