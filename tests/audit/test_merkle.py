"""The Merkle tree against the RFC's own recursive definitions (RFC 6962 §2.1, RFC 9162
§2.1.3), written here as literally as they read: every leaf of every tree up to 64 leaves
proves, and a changed leaf, path, index or size does not; a proof streamed from a links
table, in batches, over positions that skip, is the RFC's path."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from projections.audit import merkle
from projections.audit.links import link_table
from projections.audit.proofs import TreeHeads, inclusion
from projections.audit.receipts import Tree


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]), the RFC's recursion."""
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]), the RFC's recursion."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def sides(m: int, n: int) -> list[bool]:
    """Which side each node of PATH(m, D[n]) is on (True: right), from the leaf up."""
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    return [*sides(m, k), True] if m < k else [*sides(m - k, n - k), False]


def tree(size: int) -> list[bytes]:
    return [i.to_bytes(4, "big") + b"leaf" for i in range(size)]


def test_the_hashes_of_the_smallest_trees() -> None:
    assert merkle.root([]).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    # One empty leaf: SHA-256 of the single byte 0x00.
    assert merkle.root([b""]).hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    assert merkle.root([b"a", b"b"]) == sha(b"\x01" + a + b)


def test_every_leaf_of_every_tree_up_to_64_leaves_proves() -> None:
    for size in range(1, 65):
        leaves = tree(size)
        expected_root = mth(leaves)
        assert merkle.root(leaves) == expected_root
        for index in range(size):
            proof = merkle.audit_path(index, leaves)
            assert proof == path(index, leaves), (size, index)
            hashed = merkle.leaf_hash(leaves[index])
            assert merkle.root_from_path(index, size, hashed, proof) == expected_root


def test_the_frontier_is_the_root_of_every_prefix() -> None:
    leaves, frontier = tree(100), merkle.Frontier()
    for size, leaf in enumerate(leaves, 1):
        frontier.add(leaf)
        assert (frontier.size, frontier.root()) == (size, mth(leaves[:size]))


@given(st.data())
def test_a_changed_leaf_path_index_or_size_fails(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 64), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    leaves = tree(size)
    good_root = mth(leaves)
    proof = path(index, leaves)
    hashed = merkle.leaf_hash(leaves[index])

    def proves(i: int, n: int, h: bytes, p: list[bytes]) -> bool:
        return merkle.root_from_path(i, n, h, p) == good_root

    assert proves(index, size, hashed, proof)
    assert not proves(index, size, merkle.leaf_hash(leaves[index] + b"x"), proof)
    # The leaf's data passed as if it were already a node is not the leaf.
    assert not proves(index, size, sha(b"\x01" + leaves[index]), proof)
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="other")
    if size > 1:
        assert not proves(other, size, hashed, proof)
    # A path does not always pin the size: leaf 0 folds alike in trees of 3 and 4 leaves.
    # That is why a receipt signs the size with the root; here a wrong size fails exactly
    # when its path would have another shape.
    for wrong_size in {size - 1, size + 1, 2 * size, index}:
        if wrong_size != size:
            same_shape = index < wrong_size and sides(index, wrong_size) == sides(index, size)
            assert proves(index, wrong_size, hashed, proof) == same_shape
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="at")
        bit = data.draw(st.integers(0, 255), label="bit")
        changed = bytearray(proof[at])
        changed[bit // 8] ^= 1 << (bit % 8)
        assert not proves(index, size, hashed, [*proof[:at], bytes(changed), *proof[at + 1 :]])
        assert not proves(index, size, hashed, proof[:-1])
    assert not proves(index, size, hashed, [*proof, good_root])


def test_path_ranges_partition_the_other_leaves() -> None:
    for size in range(1, 65):
        for index in range(size):
            covered = sorted(i for s, e in merkle.path_ranges(index, size) for i in range(s, e))
            assert covered == [i for i in range(size) if i != index]


def held_links(positions: list[int]) -> dict[int, bytes]:
    return {p: hashlib.sha256(p.to_bytes(8, "big")).digest() for p in positions}


def test_a_streamed_proof_is_the_rfcs_path_whatever_the_batch() -> None:
    # Positions skip (every other one), and batches end anywhere.
    for size in range(1, 41):
        kept = held_links([2 * i + 1 for i in range(size)])
        table = link_table(cast(Any, SimpleNamespace(links=kept)))
        leaves = list(kept.values())
        for index, position in enumerate(kept):
            found = inclusion(table, position, 2 * size, batch=3)
            assert (found.leaf_index, found.tree_size) == (index, size)
            assert found.path == path(index, leaves) and found.root == mth(leaves)
            assert found.link == kept[position]
            assert found.previous_link == (leaves[index - 1] if index else bytes(32))
        heads = TreeHeads(table, batch=4)
        for upto in range(0, 2 * size + 1, 3):
            below = [link for p, link in kept.items() if p <= upto]
            assert heads.upto(upto) == Tree(len(below), mth(below))
