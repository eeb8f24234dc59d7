"""Verification of the log against its links and its anchors (receipts, a digest). Pure.

Every event is rehashed from the link before it and compared with the link stored with
it: the first position whose bytes, presence or order changed is named exactly. Links
alone prove nothing against someone who can rewrite the database (they can recompute
them), so what counts as *verified* is only what an anchor held outside the database
covers: a receipt signed with a key that is not in the database, or a digest an auditor
kept. The result is one of

- ``verified``: every event up to the last anchor matches, and nothing follows it;
- ``unanchored``: the events match their links, but those after the last anchor are
  vouched for by nothing yet (a distinct exit code: not OK, not tampered);
- ``tampered``: at ``position``; or the log up to a receipt is not what it signed
  (rewritten and relinked): then the change lies after ``after`` and at or before it;
- ``bad receipt``: a receipt does not verify with the trusted keys, or the Merkle tree
  it signs is not the tree over the links recomputed up to it (checked when verifying
  from the start of the log: the tree needs every link).

Verification only reads: it keeps nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import Notification

from eventstore.links import GENESIS, link
from projections.audit import merkle
from projections.audit.receipts import Receipt, Tree

VERIFIED, UNANCHORED, TAMPERED, BAD_RECEIPT = "verified", "unanchored", "tampered", "bad receipt"
EXIT_CODES = {VERIFIED: 0, TAMPERED: 1, UNANCHORED: 3, BAD_RECEIPT: 4}
"""The exit code of ``eventshop audit verify`` for each result (2: a usage error)."""
PROGRESS_EVERY = 5000

Row = tuple[int, Notification | None, bytes | None]
"""A position, the event there (None: none) and the link stored there (None: none)."""


@dataclass(frozen=True)
class Progress:
    """How far a verification has got."""

    position: int
    events: int


@dataclass(frozen=True)
class Verification:
    """The outcome of a verification (module doc)."""

    status: str
    events: int
    upto: int
    verified_upto: int
    anchors: int
    head: str
    detail: str
    position: int | None = None
    after: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == VERIFIED

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Anchor:
    position: int
    link: bytes
    name: str
    # A receipt signs the link of the event at its position; a digest, the head up to it.
    exact: bool
    tree: Tree | None = None


def check(
    rows: Iterable[Row],
    receipts: Sequence[Receipt],
    keys: Mapping[str, Ed25519PublicKey],
    *,
    start: tuple[int, bytes] = (0, GENESIS),
    digest: tuple[int, bytes] | None = None,
    every: int = PROGRESS_EVERY,
) -> Iterator[Progress | Verification]:
    """Check ``rows`` (in position order, after ``start``: its position and link, taken as
    given) against their links, ``receipts`` and ``digest`` (position, head); yield
    progress every ``every`` events, and the verification last."""
    begin, head = start
    for receipt in receipts:
        if (why := receipt.problem(keys)) is not None:
            yield _result(
                BAD_RECEIPT,
                0,
                begin,
                begin,
                0,
                head,
                f"the receipt at position {receipt.position} proves nothing: {why}",
                receipt.position,
            )
            return
    anchors = sorted(
        [
            _Anchor(r.position, r.link, f"the receipt at position {r.position}", True, r.tree)
            for r in receipts
            if r.position > begin
        ]
        + (
            [_Anchor(digest[0], digest[1], f"the digest at position {digest[0]}", False)]
            if digest is not None and digest[0] >= begin
            else []
        ),
        key=lambda a: (a.position, a.exact),
    )
    state = _State(begin, head)
    pending = iter(anchors)
    anchor = next(pending, None)
    for position, event, stored_link in rows:
        while anchor is not None and anchor.position < position:
            if (failed := state.anchor(anchor)) is not None:
                yield failed
                return
            anchor = next(pending, None)
        if (failed := state.step(position, event, stored_link)) is not None:
            yield failed
            return
        if state.events % every == 0:
            yield Progress(position, state.events)
    while anchor is not None:
        if (failed := state.anchor(anchor)) is not None:
            yield failed
            return
        anchor = next(pending, None)
    yield state.outcome()


class _State:
    """The chain so far: its head, the last event, and what anchors vouched for."""

    def __init__(self, begin: int, head: bytes) -> None:
        self.begin, self.head, self.last, self.events = begin, head, begin, 0
        self.verified, self.anchors = begin, 0
        # Receipts' trees are rebuilt from the recomputed links, never from stored ones.
        self.tree = merkle.Frontier() if begin == 0 else None

    def fail(
        self, status: str, detail: str, position: int, after: int | None = None
    ) -> Verification:
        return _result(
            status,
            self.events,
            self.last,
            self.verified,
            self.anchors,
            self.head,
            detail,
            position,
            after,
        )

    def step(
        self, position: int, event: Notification | None, stored: bytes | None
    ) -> Verification | None:
        if event is None:
            return self.fail(
                TAMPERED,
                f"the event at position {position} was deleted: its link is still there",
                position,
            )
        if stored is None:
            return self.fail(
                TAMPERED,
                f"the event at position {position} has no link: it was"
                " inserted (or moved there) after it was written",
                position,
            )
        computed = link(
            self.head,
            position,
            event.originator_id,
            event.originator_version,
            event.topic,
            event.state,
        )
        if computed != stored:
            return self.fail(
                TAMPERED,
                f"the event at position {position} is not the one that"
                " was linked: its bytes, its place or an event before it changed",
                position,
            )
        self.head, self.last, self.events = computed, position, self.events + 1
        if self.tree is not None:
            self.tree.add(computed)
        return None

    def anchor(self, anchor: _Anchor) -> Verification | None:
        if anchor.exact and anchor.position != self.last:
            return self.fail(
                TAMPERED,
                f"{anchor.name} signed an event that is no longer in the"
                f" log: events after position {self.last} were deleted with their"
                " links",
                anchor.position,
                self.verified,
            )
        if anchor.link != self.head:
            return self.fail(
                TAMPERED,
                f"the log up to position {anchor.position} is not what"
                f" {anchor.name} vouches for: an event after position"
                f" {self.verified} and at or before {anchor.position} was changed"
                " and the links after it rewritten",
                anchor.position,
                self.verified,
            )
        if (
            anchor.tree is not None
            and self.tree is not None
            and (anchor.tree.size, anchor.tree.root) != (self.tree.size, self.tree.root())
        ):
            return self.fail(
                BAD_RECEIPT,
                f"{anchor.name} signs a Merkle tree of {anchor.tree.size} leaves that is not"
                f" the tree over the {self.tree.size} links up to it: inclusion proofs"
                " against it would not hold",
                anchor.position,
                self.verified,
            )
        self.verified, self.anchors = max(self.verified, anchor.position), self.anchors + 1
        return None

    def outcome(self) -> Verification:
        covered = self.verified >= self.last
        if covered:
            what = (
                (
                    f"{self.events} events up to position {self.last} match their links and"
                    f" {self.anchors} anchor(s)"
                )
                if self.events
                else "no events to check"
            )
            return _result(
                VERIFIED, self.events, self.last, self.verified, self.anchors, self.head, what
            )
        detail = (
            f"{self.events} events match their links, but positions after"
            f" {self.verified} up to {self.last} are covered by no receipt yet: nothing"
            " outside the database vouches for them"
        )
        return _result(
            UNANCHORED,
            self.events,
            self.last,
            self.verified,
            self.anchors,
            self.head,
            detail,
            None,
            self.verified,
        )


def _result(
    status: str,
    events: int,
    upto: int,
    verified: int,
    anchors: int,
    head: bytes,
    detail: str,
    position: int | None = None,
    after: int | None = None,
) -> Verification:
    return Verification(
        status, events, upto, verified, anchors, head.hex(), detail, position, after
    )


def merged(events: Iterator[Notification], links: Iterator[tuple[int, bytes]]) -> Iterator[Row]:
    """The events and the links (each in position order) side by side, by position."""
    event, stored = next(events, None), next(links, None)
    while event is not None or stored is not None:
        if stored is None or (event is not None and event.id < stored[0]):
            assert event is not None
            yield event.id, event, None
            event = next(events, None)
        elif event is None or stored[0] < event.id:
            yield stored[0], None, stored[1]
            stored = next(links, None)
        else:
            yield event.id, event, stored[1]
            event, stored = next(events, None), next(links, None)
