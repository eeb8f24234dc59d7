"""The Merkle tree of RFC 6962 (§2.1; RFC 9162 §2.1) over a list of leaves. Pure: no I/O.

A leaf is hashed as ``SHA-256(0x00 ‖ leaf)`` and a node as ``SHA-256(0x01 ‖ left ‖ right)``;
the tree of ``n > 1`` leaves is split at ``k``, the largest power of two smaller than
``n``. The prefixes keep a leaf from passing for a node (the second-preimage attack on
plain Merkle trees); the split makes the tree of the first ``k`` leaves a perfect
subtree of every later tree, which is what lets :class:`Frontier` extend a root leaf by
leaf in O(log n) memory.

An audit path (RFC 9162 §2.1.3) is the list of sibling subtree roots from the leaf up;
:func:`root_from_path` is the RFC's verification algorithm (§2.1.3.2). The log's use of
the tree (which leaves, which receipts) is in ``proofs.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "audit_path",
    "leaf_hash",
    "node_hash",
    "path_ranges",
    "root",
    "root_from_path",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the tree of no leaves (RFC 6962: the hash of the empty string)."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(size: int) -> int:
    """The RFC's ``k`` for a tree of ``size`` > 1 leaves: the largest power of two < size."""
    return 1 << ((size - 1).bit_length() - 1)


class Frontier:
    """The root of a growing tree, fed leaf by leaf, holding O(log n) hashes.

    It keeps the roots of the perfect subtrees the leaves so far decompose into (one per
    1 bit of the size, largest first); the RFC's root folds them from the right.
    """

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[bytes] = []

    def add(self, leaf: bytes) -> None:
        """Append one leaf (its data, not its hash)."""
        self.add_hash(leaf_hash(leaf))

    def add_hash(self, hashed: bytes) -> None:
        """Append one leaf by its leaf hash (or a perfect subtree's root of one leaf)."""
        node, size = hashed, self.size
        # Each trailing 1 bit of the old size is a perfect subtree the new one completes.
        while size & 1:
            node = node_hash(self._peaks.pop(), node)
            size >>= 1
        self._peaks.append(node)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> Frontier:
        for leaf in leaves:
            self.add(leaf)
        return self

    def root(self) -> bytes:
        if not self._peaks:
            return EMPTY_ROOT
        node = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            node = node_hash(peak, node)
        return node


def root(leaves: Sequence[bytes]) -> bytes:
    """The tree's root (MTH), in O(log n) memory beyond the leaves themselves."""
    return Frontier().extend(leaves).root()


def path_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaves ``[start, end)`` under each node of the audit path of leaf ``index`` in a
    tree of ``size`` leaves, from the leaf up (RFC 9162 §2.1.3.1's PATH(m, D[n])).

    Each node's hash is the root of its range of leaves alone, so a path can be computed
    by streaming the leaves once, in order, through one :class:`Frontier` per range.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def audit_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf ``index`` among ``leaves`` (all in memory: for small trees)."""
    return [root(leaves[start:end]) for start, end in path_ranges(index, len(leaves))]


def root_from_path(index: int, size: int, hashed: bytes, path: Sequence[bytes]) -> bytes | None:
    """The root that leaf hash ``hashed`` at ``index`` and ``path`` make in a tree of
    ``size`` leaves; None if the path cannot be one for that index and size
    (RFC 9162 §2.1.3.2: the caller compares the result with the root it trusts)."""
    if not 0 <= index < size:
        return None
    fn, sn, node = index, size - 1, hashed
    for sibling in path:
        if sn == 0:
            return None  # a path longer than the tree is deep
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            # The right edge of a tree that is not perfect: climb past the levels where
            # this node has no sibling.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    return node if sn == 0 else None
