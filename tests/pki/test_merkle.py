"""RFC 9162 Merkle trees: roots, inclusion and consistency proofs against the RFC's own
recursive definitions, and every kind of wrong proof refused."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pki.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, literally (d holds leaf hashes)."""
    if not d:
        return EMPTY_ROOT
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1, literally."""
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1, literally."""
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(f"event {i}".encode()) for i in range(n)]


def test_known_vectors() -> None:
    """Hashes with the RFC's domain prefixes (a tree without them would differ)."""
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == hashlib.sha256(b"\x00").hexdigest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert MerkleTree([a, b]).root() == node_hash(a, b) != node_hash(b, a)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=70))
def test_roots_match_the_definition(n: int) -> None:
    d = leaves(n)
    tree = MerkleTree(d)
    compact = CompactRange()
    for i in range(n + 1):
        assert tree.root(i) == mth(d[:i]) == compact.root()
        if i < n:
            compact.append(d[i])
    resumed = CompactRange(compact.size, compact.hashes)
    resumed.append(leaf_hash(b"next"))
    assert resumed.root() == mth([*d, leaf_hash(b"next")])


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=40), st.data())
def test_inclusion_proofs(size: int, data: st.DataObject) -> None:
    d = leaves(size + 5)
    tree = MerkleTree(d)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = tree.inclusion_proof(index, size)
    root = tree.root(size)
    assert proof == path(index, d[:size])
    assert verify_inclusion(d[index], index, size, proof, root)
    # every way of lying fails
    assert not verify_inclusion(leaf_hash(b"forged"), index, size, proof, root)
    assert not verify_inclusion(d[index], index, size, proof, tree.root(size + 1))
    if size > 1:
        assert not verify_inclusion(d[index], (index + 1) % size, size, proof, root)
        assert not verify_inclusion(d[index], index, size, proof[:-1], root)
        bent = [*proof]
        bent[0] = bytes(32)
        assert not verify_inclusion(d[index], index, size, bent, root)
    assert not verify_inclusion(d[index], index, size, [*proof, bytes(32)], root)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=40), st.data())
def test_consistency_proofs(size: int, data: st.DataObject) -> None:
    d = leaves(size)
    tree = MerkleTree(d)
    old = data.draw(st.integers(min_value=1, max_value=size))
    proof = tree.consistency_proof(old, size)
    assert proof == subproof(old, d, True)
    old_root, root = tree.root(old), tree.root(size)
    assert verify_consistency(old, old_root, size, root, proof)
    # a fork: the same old size with another history is not consistent
    fork = MerkleTree([*d[: old - 1], leaf_hash(b"rewritten")])
    assert not verify_consistency(old, fork.root(), size, root, proof)
    assert not verify_consistency(old, old_root, size, leaf_hash(b"x"), proof)
    if proof:
        assert not verify_consistency(old, old_root, size, root, proof[:-1])
        assert not verify_consistency(old, old_root, size, root, [bytes(32), *proof[1:]])
    assert not verify_consistency(old, old_root, size, root, [*proof, bytes(32)])


def test_bad_arguments() -> None:
    tree = MerkleTree(leaves(5))
    with pytest.raises(ValueError):
        tree.root(6)
    with pytest.raises(ValueError):
        tree.inclusion_proof(5, 5)
    with pytest.raises(ValueError):
        tree.consistency_proof(0, 5)
    with pytest.raises(ValueError):
        CompactRange(3, [bytes(32)])
    assert not verify_inclusion(bytes(32), 0, 0, [], EMPTY_ROOT)
    assert not verify_consistency(0, EMPTY_ROOT, 5, tree.root(), [])
    assert not verify_inclusion(bytes(32), 0, 2, [b"short"], tree.root())
