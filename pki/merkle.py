"""RFC 9162 (Certificate Transparency 2.0, after RFC 6962) Merkle trees over an append-only log.

The node's audit trail is such a log: one leaf per event. This module is what an inspector
needs to check it without the node's database, so it depends on nothing but ``hashlib``:

- :func:`leaf_hash` and :func:`node_hash`: SHA-256 with the 0x00 / 0x01 domain prefixes;
- :class:`CompactRange`: the right edge of a growing tree (at most log2(n) hashes), enough to
  append leaves and compute the root without keeping the leaves (how checkpoints are made);
- :class:`MerkleTree`: every complete subtree over a list of leaf hashes, from which the root,
  inclusion proofs (RFC 9162 2.1.3) and consistency proofs (2.1.4) of any prefix are taken in
  O(log n) hashes each;
- :func:`verify_inclusion` and :func:`verify_consistency`: the verification algorithms of
  RFC 9162 2.1.3.2 and 2.1.4.2, which return ``False`` (never raise) for any wrong proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "CompactRange",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

#: The root of the empty tree: SHA-256 of the empty string (RFC 9162 2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """MTH of one entry: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The perfect subtrees along the right edge of a tree of ``size`` leaves, largest first.

    Appending a leaf merges equal-sized subtrees like a binary counter; :meth:`root` folds them
    right to left, which is the RFC 9162 root of the whole tree. Serialisable (``size`` and the
    hashes), so the next checkpoint continues from the last one without re-reading old leaves.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count() or any(len(h) != 32 for h in hashes):
            raise ValueError(f"a compact range of {size} leaves has {size.bit_count()} hashes")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash at index ``size``."""
        h = leaf
        size = self.size
        while size & 1:
            h = node_hash(self.hashes.pop(), h)
            size >>= 1
        self.hashes.append(h)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append each leaf hash in order."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """The RFC 9162 Merkle tree hash of the ``size`` leaves appended so far."""
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h


class MerkleTree:
    """All complete subtrees of a list of leaf hashes (about 2n hashes in memory).

    ``levels[i][j]`` is the hash of leaves ``[j * 2**i, (j + 1) * 2**i)``; any prefix's root and
    proofs are computed from them. Built in O(n); every query is O(log n).
    """

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append(
                [node_hash(below[k], below[k + 1]) for k in range(0, len(below) - 1, 2)]
            )

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self.levels[0])

    def _mth(self, lo: int, hi: int) -> bytes:
        """The hash of leaves ``[lo, hi)``; ``lo`` is a multiple of a power of two >= hi - lo,
        as in every range the RFC's recursions ask for."""
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            return self.levels[level][lo >> level]
        k = _split(n)
        return node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))

    def _check(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is outside 0..{self.size}")

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (all by default); ``ValueError`` past the end."""
        size = self.size if size is None else size
        self._check(size)
        return self._mth(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 2.1.3.1, the deepest sibling first."""
        size = self.size if size is None else size
        self._check(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of {size}")
        proof: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                proof.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._mth(lo, lo + k))
                lo = lo + k
        proof.reverse()
        return proof

    def consistency_proof(self, old: int, size: int | None = None) -> list[bytes]:
        """PROOF(old, D[0:size]) of RFC 9162 2.1.4.1; ``ValueError`` unless 0 < old <= size."""
        size = self.size if size is None else size
        self._check(size)
        if not 0 < old <= size:
            raise ValueError(f"no consistency proof from {old} to {size}")
        proof: list[bytes] = []
        lo, hi, m, complete = 0, size, old, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._mth(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            proof.append(self._mth(lo, hi))
        proof.reverse()
        return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: True only when ``proof`` shows leaf hash ``leaf`` at ``index`` in the
    tree of ``size`` leaves whose root is ``root``."""
    if not 0 <= index < size or any(len(p) != 32 for p in proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, old_root: bytes, size: int, root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: True only when ``proof`` shows that the tree (``old_size``,
    ``old_root``) is a prefix of the tree (``size``, ``root``)."""
    if not 0 < old_size <= size or any(len(p) != 32 for p in proof):
        return False
    if old_size == size:
        return not proof and old_root == root
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == root and sn == 0
