"""Inclusion proofs: one event is in the log a signed receipt covers, in O(log n) hashes.

The leaves of the tree (``merkle.py``) are the events' links, in log order: leaf ``i``
is the link of the ``i``-th event (positions may skip, so a leaf's index is its rank,
not its position). Links rather than the events' bytes, because

- a link binds the event's position, aggregate, version, topic and stored bytes
  (``eventstore/links.py``), and a link is what a receipt already signs: the event at
  the receipt's own position is the tree's last leaf, and its link the receipt's link;
- the tree is then a function of the links table alone, 32 bytes a position: a proof is
  computed without reading any event but the one proved;
- from the link before it, the proved event's link is recomputed from its bytes, so a
  proof shows the event as stored, not only that some link is in the tree (finding other
  bytes with the same link would take a SHA-256 preimage).

A receipt signs the tree's size and root over the links up to its position (receipt
message v2, ``receipts.py``). A proof is checked with nothing but the receipt's public
key (:func:`check_proof`): the signature, then the event's link from the link before
it, then the audit path from that leaf up to the signed root.

Computing a proof streams the links up to the receipt once, holding O(log n) hashes; no
subtree hash is cached, so nothing kept in the database is trusted over recomputation.
"""

from __future__ import annotations

import binascii
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.errors import InvalidValue, NotFound, RuleBroken
from eventstore.links import GENESIS
from projections.audit import merkle
from projections.audit.chain import chain_link, read_record
from projections.audit.links import Link, LinkTable
from projections.audit.receipts import Receipt, ReceiptTable, Tree


class EventNotFound(NotFound):
    """No event is at that position of the log."""

    title = "Event not found"


class ReceiptNotFound(NotFound):
    """No receipt was issued at that position."""

    title = "Receipt not found"


class NotCovered(InvalidValue):
    """The event comes after the receipt's position: the receipt cannot cover it."""

    title = "Event not covered by the receipt"

    def __init__(self, detail: str) -> None:
        super().__init__("receipt", detail)


class Unprovable(RuleBroken):
    """No proof can be made: the receipt signs no tree (made before proofs), or the event
    has no link (inserted behind the application's back)."""

    title = "No proof can be made"


# --- computing a proof over the links table ------------------------------------------


def covering(receipts: ReceiptTable, position: int, at: int | None) -> Receipt:
    """The receipt at position ``at`` (None: the newest), if a proof of the event at
    ``position`` can be checked against it."""
    if at is None:
        receipt = receipts.last()
        if receipt is None:
            raise ReceiptNotFound("no receipt was issued yet: POST /api/audit/receipts")
    else:
        found = receipts.after(at - 1, 1) if at > 0 else []
        if not found or found[0].position != at:
            raise ReceiptNotFound(f"no receipt was issued at position {at}")
        receipt = found[0]
    if position > receipt.position:
        raise NotCovered(
            f"the receipt at position {receipt.position} covers positions up to it, not"
            f" {position}: use a later receipt (POST /api/audit/receipts signs one now)"
        )
    if receipt.tree is None:
        raise Unprovable(
            f"the receipt at position {receipt.position} was signed before inclusion"
            " proofs and signs no tree: use a later receipt"
        )
    return receipt


def links_upto(links: LinkTable, after: int, upto: int, batch: int) -> Iterator[Link]:
    """The stored links after ``after`` up to ``upto``, in order, batch by batch."""
    while found := links.between(after, upto, batch):
        yield from found
        if len(found) < batch:
            return
        after = found[-1][0]


@dataclass(frozen=True)
class Inclusion:
    """Where the link at ``position`` is in the tree over the links up to some position."""

    position: int
    link: bytes
    previous_link: bytes
    leaf_index: int
    tree_size: int
    path: list[bytes]
    root: bytes


def inclusion(links: LinkTable, position: int, upto: int, batch: int) -> Inclusion:
    """The audit path of the link at ``position`` in the tree over the links up to
    ``upto``, streaming them once; Unprovable if there is no link at ``position``."""
    size, index = links.count(upto), links.count(position) - 1
    here = links.between(position - 1, position, 1)
    if not here or here[0][0] != position:
        raise Unprovable(
            f"the event at position {position} has no link: it was inserted after it was"
            " written, or its link deleted (eventshop audit verify names what changed)"
        )
    # Each node of the path is the root of its own range of leaves: one frontier per range.
    ranges = sorted(
        (start, end, n) for n, (start, end) in enumerate(merkle.path_ranges(index, size))
    )
    nodes: list[bytes] = [b""] * len(ranges)
    part, at, rank = merkle.Frontier(), 0, -1
    previous, leaf = GENESIS, b""
    for rank, (at_position, stored) in enumerate(links_upto(links, 0, upto, batch)):
        if rank == index:
            if at_position != position:
                break  # links came or went meanwhile: caught below
            leaf = stored
            continue
        if rank == index - 1:
            previous = stored
        if at == len(ranges):
            break  # more links than counted: caught below
        _, end, n = ranges[at]
        part.add(stored)
        if rank == end - 1:
            nodes[n], part, at = part.root(), merkle.Frontier(), at + 1
    # The path's nodes are computed from the stored links: with the leaf they give the
    # root of the tree over them, computed nowhere else.
    root = merkle.root_from_path(index, size, merkle.leaf_hash(leaf), nodes)
    complete = leaf and rank + 1 == size and at == len(ranges)
    if not complete or root is None or links.count(upto) != size:
        raise Unprovable("the links changed while the proof was computed: ask again")
    return Inclusion(position, leaf, previous, index, size, nodes, root)


class TreeHeads:
    """The tree over the links up to the newest receipt, kept in memory and extended with
    the links written since, so that signing a receipt reads only those (module doc)."""

    def __init__(self, links: LinkTable, batch: int) -> None:
        self.links, self.batch = links, batch
        self._lock = threading.Lock()
        self._position, self._frontier = 0, merkle.Frontier()

    def upto(self, position: int) -> Tree:
        """The tree over the links at or before ``position``."""
        with self._lock:
            if position < self._position:
                self._position, self._frontier = 0, merkle.Frontier()
            for at, stored in links_upto(self.links, self._position, position, self.batch):
                self._frontier.add(stored)
                self._position = at
            self._position = max(self._position, position)
            return Tree(self._frontier.size, self._frontier.root())


# --- the proof and its check, with no database -----------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    """An event as stored (an export record), the link before it and its audit path in
    the tree the receipt signed: all an auditor needs to check it offline."""

    event: dict[str, Any]
    previous_link: bytes
    leaf_index: int
    tree_size: int
    path: list[bytes]
    root: bytes
    receipt: Receipt

    @property
    def position(self) -> int:
        return int(self.event["position"])

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "event": self.event,
            "previous_link": self.previous_link.hex(),
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "audit_path": [node.hex() for node in self.path],
            "root": self.root.hex(),
            "receipt": self.receipt.as_json(),
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> InclusionProof:
        try:
            event = dict(item["event"])
            read_record(event)
            return cls(
                event,
                bytes.fromhex(item["previous_link"]),
                int(item["leaf_index"]),
                int(item["tree_size"]),
                [bytes.fromhex(node) for node in item["audit_path"]],
                bytes.fromhex(item["root"]),
                Receipt.from_json(item["receipt"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as error:
            raise InvalidValue("proof", f"not an inclusion proof: {error}") from None


def check_proof(proof: InclusionProof, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """Why ``proof`` does not show its event in the log its receipt signed with one of
    ``keys`` (by key id); None if it does. Pure: no database."""
    receipt, position = proof.receipt, proof.position
    if (why := receipt.problem(keys)) is not None:
        return f"the receipt at position {receipt.position} proves nothing: {why}"
    tree = receipt.tree
    if tree is None:
        return (
            f"the receipt at position {receipt.position} was signed before inclusion proofs:"
            " it signs no tree to check a path against"
        )
    if position > receipt.position:
        return f"the event at position {position} comes after the receipt's {receipt.position}"
    stored, stored_link = read_record(proof.event)
    computed = chain_link(proof.previous_link, stored)
    if stored_link is not None and computed != stored_link:
        return (
            f"the event at position {position} is not the one that was linked: its bytes,"
            " its place or its aggregate changed"
        )
    if position == receipt.position and computed != receipt.link:
        return f"the event at position {position} is not the one the receipt signed"
    if (proof.tree_size, proof.root) != (tree.size, tree.root):
        return (
            f"the proof is for a tree of {proof.tree_size} leaves with another root than the"
            f" receipt's ({tree.size} leaves): the links up to {receipt.position} were"
            " rewritten since it was signed"
        )
    root = merkle.root_from_path(
        proof.leaf_index, tree.size, merkle.leaf_hash(computed), proof.path
    )
    if root != tree.root:
        return (
            f"the event at position {position} (leaf {proof.leaf_index}) and its audit path do"
            f" not lead to the root the receipt at position {receipt.position} signed: the"
            " event, the link before it or the path is not what was signed"
        )
    return None
